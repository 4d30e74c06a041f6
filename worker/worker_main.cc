// nas_worker: a search worker. Registers with the coordinator, long-polls tasks, fetches only the
// tensors of each task, runs it with LibTorch and returns the result (worker/remote_worker.h).
//
//   nas_worker --coordinator=coordinator:50051 --threads=2 --stats_file=/tmp/worker.jsonl
//
// SIGTERM/SIGINT drains (remote_worker.h): no new task; a search step in progress finishes and
// reports, a final task is handed back to the coordinator, which re-issues it at once.
// Exit status: 0 after SIGTERM/SIGINT or --max_tasks tasks; 2 for bad flags (including
// --device=cuda where LibTorch sees no GPU); 1 for other errors. An unreachable coordinator is
// retried forever.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/marshalling.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "core/malloc_tuning.h"
#include "prometheus/exposer.h"
#include "worker/remote_worker.h"
#include "worker/worker_metrics.h"

ABSL_FLAG(std::string, coordinator, "", "coordinator WorkerGateway address, host:port (required)");
ABSL_FLAG(std::string, name, "", "worker name reported to the coordinator; default hostname-pid");
ABSL_FLAG(std::string, device, "cpu",
          "where tasks compute: cpu, cuda or cuda:N (one worker per GPU); CUDA where LibTorch "
          "sees no GPU is an error at start-up");
ABSL_FLAG(bool, deterministic, false,
          "cuDNN deterministic algorithms, no autotuning (equivalence runs); default: autotuning");
ABSL_FLAG(std::vector<std::string>, latency_device, {},
          "comma-separated latency-table devices this worker measures as (a job's device, e.g. "
          "local-cpu): the final latency measurement of their jobs runs here");
ABSL_FLAG(int, threads, 0, "intra-op threads; 0 uses all cores");
ABSL_FLAG(std::string, stats_file, "", "append one JSON line per task to this file");
ABSL_FLAG(int, metrics_port, -1,
          "serve Prometheus /metrics on this port of every interface (-1: none, 0: pick one, "
          "printed at start)");
ABSL_FLAG(int64_t, max_tasks, 0, "exit after this many tasks; 0 runs until SIGTERM");
ABSL_FLAG(std::string, data_dir, "", "overrides the data directory of every task");
ABSL_FLAG(std::string, token_file, "",
          "file holding the worker's bearer token (role worker in the coordinator's tokens "
          "file); default: $NAS_WORKER_TOKEN, else none");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM certificates to trust when the coordinator speaks TLS (its --tls_cert)");
ABSL_FLAG(std::vector<std::string>, data_roots, {"/usr/share/datasets"},
          "comma-separated folders a job's data_dir may name (it or below, links followed); "
          "other data_dirs fail the task");
ABSL_FLAG(int, loader_threads, 2,
          "decoding threads of each image-folder loader (a job with stream_images has two: "
          "training and validation batches), 1..64");
ABSL_FLAG(int64_t, inline_limit_bytes, 4 << 20,
          "take a task's missing tensors inline (up to this many bytes) and the next task with "
          "each result: one round trip per task; 0: acquire, fetch and complete separately");

ABSL_FLAG(int64_t, cache_mb, 256,
          "tensors kept between tasks (MiB of host memory, least recently used dropped beyond "
          "it), so later tasks fetch only what other workers changed; 0: the last task's only");

namespace {

int g_signal_pipe[2] = {-1, -1};

void OnStopSignal(int sig) {
  unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_signal_pipe[1], &b, 1);
  (void)ignored;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any tensor (core/malloc_tuning.h); said once the flags are read.
  const std::string allocator = nas::TuneMallocForTensors();
  absl::SetProgramUsageMessage(
      "nas_worker --coordinator=HOST:PORT [--threads=N] [--device=cpu|cuda|cuda:N] "
      "[--deterministic] [--stats_file=F]");
  absl::ParseCommandLine(argc, argv);
  std::fprintf(stderr, "nas_worker: %s\n", allocator.c_str());

  nas::RemoteWorkerOptions o;
  o.coordinator = absl::GetFlag(FLAGS_coordinator);
  o.name = absl::GetFlag(FLAGS_name);
  o.device = absl::GetFlag(FLAGS_device);
  o.deterministic = absl::GetFlag(FLAGS_deterministic);
  o.latency_devices = absl::GetFlag(FLAGS_latency_device);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.stats_file = absl::GetFlag(FLAGS_stats_file);
  o.max_tasks = absl::GetFlag(FLAGS_max_tasks);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.data_roots = absl::GetFlag(FLAGS_data_roots);
  o.loader_threads = absl::GetFlag(FLAGS_loader_threads);
  o.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  if (const std::string f = absl::GetFlag(FLAGS_token_file); !f.empty()) {
    std::ifstream in(f);
    if (!std::getline(in, o.token)) {
      std::fprintf(stderr, "nas_worker: --token_file %s: cannot read a token\n", f.c_str());
      return 2;
    }
    o.token = std::string(absl::StripAsciiWhitespace(o.token));
  } else if (const char* t = std::getenv("NAS_WORKER_TOKEN"); t != nullptr) {
    o.token = std::string(absl::StripAsciiWhitespace(t));
  }
  o.inline_limit_bytes = absl::GetFlag(FLAGS_inline_limit_bytes);
  o.cache_bytes = absl::GetFlag(FLAGS_cache_mb) * (int64_t{1} << 20);

  // Metrics first: a port that cannot be had is a start-up error, like a bad flag.
  nas::WorkerMetrics metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  if (const int port = absl::GetFlag(FLAGS_metrics_port); port >= 0) {
    if (port > 65535) {
      std::fprintf(stderr, "nas_worker: --metrics_port=%d: not a port (0-65535, -1: none)\n", port);
      return 2;
    }
    auto e = metrics.Expose("0.0.0.0:" + std::to_string(port));
    if (!e.ok()) {
      std::fprintf(stderr, "nas_worker: %s\n", e.status().ToString().c_str());
      return 2;
    }
    exposer = *std::move(e);
    std::vector<int> ports = exposer->GetListeningPorts();
    std::fprintf(stderr, "nas_worker: metrics on port %d\n", ports.empty() ? port : ports[0]);
    o.metrics = &metrics;
    metrics.SetInfo(o.device, false);
    metrics.SetMemory(nas::ProcessResidentBytes(), -1, -1);
  }

  // SIGINT/SIGTERM write to a pipe that a thread waits on (LibTorch and gRPC start threads of
  // their own, some before main, so masking the signals is not enough).
  if (pipe(g_signal_pipe) != 0) {
    std::perror("nas_worker: pipe");
    return 1;
  }
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  absl::StatusOr<std::unique_ptr<nas::RemoteWorker>> worker = nas::RemoteWorker::Create(o);
  if (!worker.ok()) {
    std::fprintf(stderr, "nas_worker: %s\n", worker.status().ToString().c_str());
    bool flag_error = worker.status().code() == absl::StatusCode::kInvalidArgument ||
                      worker.status().code() == absl::StatusCode::kFailedPrecondition;
    return flag_error ? 2 : 1;
  }
  nas::RemoteWorker* w = worker->get();
  // Detached: it may still wait when Run() returns after --max_tasks; exit ends it.
  std::thread([w, m = o.metrics, device = o.device] {
    unsigned char sig = 0;
    ssize_t n;
    do {
      n = read(g_signal_pipe[0], &sig, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1) {
      std::fprintf(stderr, "nas_worker: signal %d, stopping\n", sig);
      if (m != nullptr) m->SetInfo(device, /*draining=*/true);
      w->Stop();
    }
  }).detach();

  absl::Status s = w->Run();
  if (!s.ok()) {
    std::fprintf(stderr, "nas_worker: %s\n", s.ToString().c_str());
    return 1;
  }
  std::fflush(stderr);
  // Skip destructors: the signal thread may still hold `w`.
  std::_Exit(0);
}
