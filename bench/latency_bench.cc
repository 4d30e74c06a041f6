// latency_bench: load generator for the latency service, in its own process, over loopback.
//
// Starts `latency_server` as a child process (or uses --server host:port), fetches the
// pixel1-tflite table's keys, then for each workload runs --threads client threads that call
// Query back to back for --seconds and reports keys answered per second and the p50/p99 call
// latency. Workloads: batched (--batch keys per call) and unbatched (1 key per call), each with
// measured keys only and with a share of predicted keys (answered from the per-device cache
// after their first call).
//
//   latency_bench --server_binary build/latency_service/latency_server --seconds 5
// Prints a markdown table (and writes it to --out when given).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/latency_table.h"
#include "latency_service/latency_client.h"

ABSL_FLAG(std::string, server, "", "host:port of a running server; empty: start --server_binary");
ABSL_FLAG(std::string, server_binary, "", "latency_server to start on 127.0.0.1 (a free port)");
ABSL_FLAG(std::string, device, "pixel1-tflite", "device whose table the keys come from");
ABSL_FLAG(int, threads, 2, "client threads, each with one call in flight");
ABSL_FLAG(int, batch, 1000, "keys per call of the batched workloads");
ABSL_FLAG(double, seconds, 5, "measured seconds per workload (after 1 s of warm-up)");
ABSL_FLAG(double, predicted_share, 0.1, "share of predicted keys in the mixed workloads");
ABSL_FLAG(std::string, out, "", "also write the table to this file");

namespace {

struct Result {
  std::string name;
  int batch = 0;
  double keys_per_s = 0;
  double calls_per_s = 0;
  double p50_us = 0, p99_us = 0;
  int64_t calls = 0;
};

pid_t child = -1;

// Starts the server binary and reads its "listening on ADDRESS:PORT" line.
std::string SpawnServer(const std::string& binary) {
  int fds[2];
  if (pipe(fds) != 0) return "";
  child = fork();
  if (child == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(binary.c_str(), binary.c_str(), "--address=127.0.0.1", "--port=0", "--metrics_port=-1",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char c;
  while (read(fds[0], &c, 1) == 1) {
    out.push_back(c);
    size_t at = out.find("listening on ");
    if (c == '\n' && at != std::string::npos) {
      std::string line = out.substr(at + 13);
      size_t colon = line.find(':');
      size_t end = line.find_first_of(",\n");
      return absl::StrCat("127.0.0.1:", line.substr(colon + 1, end - colon - 1));
    }
  }
  return "";
}

Result Run(const std::string& target, const std::string& name, const std::string& device,
           const std::vector<std::string>& pool, int batch, int threads, double seconds) {
  std::atomic<bool> measuring{false}, stop{false};
  std::vector<std::vector<double>> lat_us(threads);
  std::vector<int64_t> keys_done(threads, 0);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto client = nas::LatencyClient::Connect(target).value();
      std::vector<std::string> keys(batch);
      std::vector<nas::LayerLatency> answers;
      size_t next = static_cast<size_t>(t) * 7919;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < batch; ++i) keys[i] = pool[next++ % pool.size()];
        auto start = std::chrono::steady_clock::now();
        absl::Status s = client->Query(device, keys, &answers);
        auto end = std::chrono::steady_clock::now();
        if (!s.ok()) {
          std::fprintf(stderr, "latency_bench: %s\n", s.ToString().c_str());
          std::exit(1);
        }
        if (measuring.load(std::memory_order_relaxed)) {
          lat_us[t].push_back(std::chrono::duration<double, std::micro>(end - start).count());
          keys_done[t] += batch;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  measuring = true;
  auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  for (auto& w : workers) w.join();
  std::vector<double> all;
  int64_t keys = 0;
  for (int t = 0; t < threads; ++t) {
    all.insert(all.end(), lat_us[t].begin(), lat_us[t].end());
    keys += keys_done[t];
  }
  std::sort(all.begin(), all.end());
  Result r;
  r.name = name;
  r.batch = batch;
  r.calls = static_cast<int64_t>(all.size());
  r.keys_per_s = keys / elapsed;
  r.calls_per_s = all.size() / elapsed;
  if (!all.empty()) {
    r.p50_us = all[all.size() / 2];
    r.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string target = absl::GetFlag(FLAGS_server);
  if (target.empty()) {
    if (absl::GetFlag(FLAGS_server_binary).empty()) {
      std::fprintf(stderr, "latency_bench: give --server or --server_binary\n");
      return 2;
    }
    target = SpawnServer(absl::GetFlag(FLAGS_server_binary));
    if (target.empty()) {
      std::fprintf(stderr, "latency_bench: the server did not start\n");
      return 1;
    }
  }
  const std::string device = absl::GetFlag(FLAGS_device);
  auto client = nas::LatencyClient::Connect(target).value();
  absl::StatusOr<std::string> json = client->GetTableJson(device);
  if (!json.ok()) {
    std::fprintf(stderr, "latency_bench: %s\n", json.status().ToString().c_str());
    return 1;
  }
  nas::LatencyTable table = nas::LatencyTable::ParseJson(*json).value();
  std::vector<std::string> measured;
  for (const auto& [k, e] : table.entries()) measured.push_back(k);
  // Mixed pool: measured keys plus MBConv keys of other widths, which the predictor answers.
  std::vector<std::string> mixed = measured;
  const int n_pred = static_cast<int>(measured.size() * absl::GetFlag(FLAGS_predicted_share) /
                                      (1 - absl::GetFlag(FLAGS_predicted_share)));
  for (int i = 0; i < n_pred; ++i) {
    int c = 8 * (3 + i);
    mixed.push_back(absl::StrCat("expanded_conv-input:28x28x", c, "-output:28x28x", c, "-expand:",
                                 3 + i % 4, "-kernel:", 3 + 2 * (i % 3), "-stride:1-idskip:1"));
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  std::vector<Result> results = {
      Run(target, "batched, measured keys", device, measured, batch, threads, seconds),
      Run(target, "batched, mixed keys", device, mixed, batch, threads, seconds),
      Run(target, "unbatched, measured keys", device, measured, 1, threads, seconds),
      Run(target, "unbatched, mixed keys", device, mixed, 1, threads, seconds),
  };
  std::string table_md = absl::StrFormat(
      "| workload | keys/call | client threads | calls | keys/s | calls/s | p50 call (us) | "
      "p99 call (us) |\n|---|---|---|---|---|---|---|---|\n");
  for (const Result& r : results) {
    absl::StrAppendFormat(&table_md, "| %s | %d | %d | %d | %.0f | %.0f | %.0f | %.0f |\n", r.name,
                          r.batch, threads, r.calls, r.keys_per_s, r.calls_per_s, r.p50_us,
                          r.p99_us);
  }
  // What the numbers ran on: CPU model, cores, and how busy the machine was.
  std::string cpu = "unknown CPU";
  {
    std::ifstream info("/proc/cpuinfo");
    std::string line;
    while (std::getline(info, line)) {
      if (line.rfind("model name", 0) == 0) {
        cpu = line.substr(line.find(':') + 2);
        break;
      }
    }
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  absl::StrAppendFormat(&table_md,
                        "\nmachine: %s, %u cores; load average after the run %.2f %.2f %.2f; "
                        "%.0f s per workload after 1 s warm-up\n",
                        cpu, std::thread::hardware_concurrency(), load[0], load[1], load[2],
                        seconds);
  std::printf("%s", table_md.c_str());
  if (!absl::GetFlag(FLAGS_out).empty()) std::ofstream(absl::GetFlag(FLAGS_out)) << table_md;
  if (child > 0) {
    kill(child, SIGTERM);
    waitpid(child, nullptr, 0);
  }
  return 0;
}
