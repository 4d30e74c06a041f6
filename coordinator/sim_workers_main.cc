// sim_workers: N simulated workers (sim_worker.h: the real gateway protocol, no computation) in
// one process, for the queue's integration tests and load tests with more workers than the
// machine could run as real ones. Each "computes" a task for --compute_ms. Runs until SIGTERM
// or SIGINT; a worker that loses the coordinator (a restart) registers again and goes on.
//
//   sim_workers --coordinator=127.0.0.1:50053 --workers=8 --compute_ms=20 --token_file=F
#include <csignal>
#include <cstdio>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "coordinator/sim_worker.h"
#include "latency_service/grpc_tls.h"

ABSL_FLAG(std::string, coordinator, "localhost:50051", "the coordinator's worker gateway");
ABSL_FLAG(int, workers, 4, "simulated workers (threads)");
ABSL_FLAG(int, compute_ms, 0, "how long each task holds its worker");
ABSL_FLAG(std::string, token_file, "", "the workers' credential (first line of the file)");
ABSL_FLAG(std::string, tls_ca, "", "PEM certificates to trust (TLS)");
ABSL_FLAG(std::string, name, "sim", "worker name prefix");

namespace {
absl::Notification* g_stop = nullptr;
void OnSignal(int) {
  if (g_stop != nullptr && !g_stop->HasBeenNotified()) g_stop->Notify();
}
}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_workers);
  if (n < 1 || n > 10000) {
    std::fprintf(stderr, "sim_workers: --workers must be in [1, 10000], got %d\n", n);
    return 2;
  }
  std::string token;
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    std::ifstream f(absl::GetFlag(FLAGS_token_file));
    if (!std::getline(f, token)) {
      std::fprintf(stderr, "sim_workers: --token_file: cannot read %s\n",
                   absl::GetFlag(FLAGS_token_file).c_str());
      return 2;
    }
    token = std::string(absl::StripAsciiWhitespace(token));
  }
  auto creds = nas::ChannelCredentialsFor(absl::GetFlag(FLAGS_tls_ca));
  if (!creds.ok()) {
    std::fprintf(stderr, "sim_workers: %s\n", std::string(creds.status().message()).c_str());
    return 2;
  }
  absl::Notification stop;
  g_stop = &stop;
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      grpc::ChannelArguments args;
      args.SetInt("grpc.use_local_subchannel_pool", 1);
      auto channel =
          grpc::CreateCustomChannel(absl::GetFlag(FLAGS_coordinator), *creds, args);
      std::unique_ptr<nas::SimWorker> w;
      while (!stop.HasBeenNotified()) {
        if (w == nullptr) {
          w = std::make_unique<nas::SimWorker>(channel);
          w->set_token(token);
          w->set_compute_time(absl::Milliseconds(absl::GetFlag(FLAGS_compute_ms)));
          if (!w->Register(absl::StrCat(absl::GetFlag(FLAGS_name), "-", i)).ok()) {
            w.reset();
            stop.WaitForNotificationWithTimeout(absl::Milliseconds(200));
            continue;
          }
        }
        auto ran = w->RunOne(absl::Milliseconds(500));
        if (!ran.ok()) {
          // A refused result (its lease ended) is the coordinator's business; a lost
          // coordinator or an unknown worker id (a restart): register again.
          if (ran.status().code() != absl::StatusCode::kFailedPrecondition &&
              ran.status().code() != absl::StatusCode::kInvalidArgument) {
            w.reset();
          }
          stop.WaitForNotificationWithTimeout(absl::Milliseconds(100));
        }
      }
    });
  }
  std::printf("sim_workers: %d worker(s) on %s\n", n, absl::GetFlag(FLAGS_coordinator).c_str());
  std::fflush(stdout);
  stop.WaitForNotification();
  for (std::thread& t : threads) t.join();
  return 0;
}
