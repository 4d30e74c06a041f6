// dispatch_bench: the coordinator's scheduling capacity and tensor transfer rate, measured
// against the real `coordinator` binary (a child process on loopback, RocksDB in a temp dir)
// with simulated workers (coordinator/sim_worker.h: the real protocol, no computation) as
// threads of this process.
//
// Workloads:
//  - round overhead: one worker, one task per round - acquire, fetch, complete, merge, and the
//    synced RocksDB write of the round; reported as rounds/s and ms per round; once with tiny
//    tensors (the fixed cost) and once with the Fashion-MNIST supernet's real tensor sizes;
//  - dispatch capacity: W workers, T weight tasks per round, tiny tensors: task completions/s
//    (what a fleet of GPU workers would need: 1,000 workers at 200 ms per step = 5,000/s);
//  - tensor transfer: weight tasks of the ImageNet preset with the real byte volume of a path
//    (every candidate's parameters; momentum added on return): MB/s fetched and returned.
//
//   dispatch_bench --coordinator_binary build/coordinator/coordinator --seconds 10
// Prints a markdown table (and writes it to --out when given): rates, the coordinator's and the
// simulated workers' CPU per task, the coordinator's resident memory, and - when the
// coordinator runs on jemalloc (its default build) - its allocations per completed task, a
// count that does not move with the machine's speed (MALLOC_CONF is set for the child).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "coordinator/search_client.h"
#include "coordinator/sim_worker.h"
#include "core/latency_table.h"
#include "core/search_space.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, coordinator_binary, "build/coordinator/coordinator", "coordinator to start");
ABSL_FLAG(double, seconds, 10, "measured seconds per workload");
ABSL_FLAG(std::string, workers, "1,4,16", "simulated worker threads for the capacity workloads");
ABSL_FLAG(std::string, workloads, "overhead,overhead_real,capacity,transfer",
          "which workloads to run (a subset of overhead, overhead_real, capacity, transfer)");
ABSL_FLAG(int, tasks_per_round, 64, "weight tasks per round in the capacity workloads");
ABSL_FLAG(bool, sync, true, "coordinator --sync (fsync every round)");
ABSL_FLAG(bool, pipelined_commits, false,
          "coordinator --pipelined_commits (a round written while the next one runs)");
ABSL_FLAG(int, batch, 8, "tasks a simulated worker takes per AcquireTask and completes per "
          "CompleteTask stream in the capacity workloads");
ABSL_FLAG(bool, single_round_trip, true,
          "workers take tensors inline and the next task with each completion (1 RPC per task); "
          "false: Acquire, FetchTensors, CompleteTask");
ABSL_FLAG(std::string, out, "", "also write the table to this file");

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Coordinator {
  pid_t pid = -1;
  std::string target;
  ~Coordinator() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

int FreePortHint() { return 20000 + (getpid() * 7 + static_cast<int>(time(nullptr))) % 30000; }

// Starts the coordinator with a synthetic table for every preset (device "bench").
bool StartCoordinator(const std::string& dir, Coordinator* c) {
  nas::LatencyTable table(nas::LatencyTableInfo{"bench", "synthetic", 1, 1, "", "synthetic"});
  for (const std::string& preset : {"fashion-mnist", "proxyless-imagenet"}) {
    auto space = nas::SearchSpace::Preset(preset);
    if (!space.ok()) return false;
    for (const std::string& k : space->AllLayerKeys()) {
      if (!table.Contains(k)) (void)table.Insert(k, nas::LatencyEntry{1, 0.1, 0});
    }
  }
  std::string table_path = dir + "/table.json";
  if (!table.Save(table_path).ok()) return false;
  int port = FreePortHint();
  std::string log = dir + "/coordinator.log";
  c->pid = fork();
  if (c->pid == 0) {
    for (int fd = 3; fd < 1024; ++fd) close(fd);  // e.g. a flock the bench runs under
    // A coordinator on jemalloc prints its allocator's counters (JSON) to the log at exit.
    setenv("MALLOC_CONF", "stats_print:true,stats_print_opts:J", 1);
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    std::string bin = absl::GetFlag(FLAGS_coordinator_binary);
    execl(bin.c_str(), bin.c_str(), ("--port=" + std::to_string(port)).c_str(),
          "--address=127.0.0.1", "--metrics_port=-1", ("--db=" + dir + "/db").c_str(),
          ("--latency_table=" + table_path).c_str(),
          absl::GetFlag(FLAGS_sync) ? "--sync=true" : "--sync=false",
          absl::GetFlag(FLAGS_pipelined_commits) ? "--pipelined_commits=true"
                                                 : "--pipelined_commits=false",
          nullptr);
    _exit(127);
  }
  c->target = absl::StrCat("127.0.0.1:", port);
  for (int i = 0; i < 100; ++i) {
    std::ifstream f(log);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (text.find("listening on port") != std::string::npos) return true;
    usleep(100000);
  }
  std::fprintf(stderr, "coordinator did not start; see %s\n", log.c_str());
  return false;
}

std::shared_ptr<grpc::Channel> Channel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  // One connection per worker thread, like separate worker processes.
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

// CPU seconds (user + system) the process has used.
double CpuSeconds(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(text.substr(close + 2), ' ');
  if (fields.size() < 13) return 0;
  return (std::stod(fields[11]) + std::stod(fields[12])) / sysconf(_SC_CLK_TCK);
}

// Resident memory of the process now and its peak so far (MB, from /proc/<pid>/status).
std::pair<double, double> ResidentMb(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  double rss = 0, hwm = 0;
  std::string line;
  while (std::getline(f, line)) {
    double kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %lf kB", &kb) == 1) rss = kb / 1024;
    if (std::sscanf(line.c_str(), "VmHWM: %lf kB", &kb) == 1) hwm = kb / 1024;
  }
  return {rss, hwm};
}

// Allocations the coordinator asked jemalloc for over its life (small and large requests, from
// the statistics it printed into `log` at exit); nullopt when it printed none (not on jemalloc).
std::optional<double> CoordinatorAllocations(const std::string& log) {
  std::ifstream f(log);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t start = text.find("{\"jemalloc\"");
  size_t end = text.rfind('}');
  if (start == std::string::npos || end == std::string::npos || end < start) return std::nullopt;
  auto j = nlohmann::json::parse(text.substr(start, end - start + 1), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  const auto& merged = j["jemalloc"]["stats.arenas"]["merged"];
  if (!merged.contains("small") || !merged.contains("large")) return std::nullopt;
  return merged["small"].value("nrequests", 0.0) + merged["large"].value("nrequests", 0.0);
}

struct Row {
  std::string workload;
  int workers = 0;
  int tasks_per_round = 0;
  int64_t tasks = 0;
  int64_t rounds = 0;
  double seconds = 0;
  double fetched_mb = 0;
  double coordinator_cpu = 0;  // seconds
  double coordinator_rss_mb = 0;  // at the end of the row
  double workers_cpu = 0;         // seconds, this process (the simulated workers)
  int batch = 1;
};

// Submits a job and runs `workers` simulated workers for `seconds` after init.
Row Run(const std::string& target, pid_t pid, const std::string& workload,
        const std::string& space, int workers, int tasks_per_round, int floats, double seconds,
        int batch = 1) {
  Row row{workload, workers, tasks_per_round};
  row.batch = batch;
  auto client = nas::SearchClient::Connect(target);
  nas::JobSpec spec;
  spec.set_space(space);
  spec.set_device("bench");
  spec.set_batch_size(1);
  spec.set_warmup_epochs(100);
  spec.set_search_epochs(1);
  spec.set_parallel_tasks(tasks_per_round);
  // A round is one task (the cost measured per round): no chains of weight tasks.
  spec.set_chain_steps(1);
  auto job = (*client)->Submit(spec);
  if (!job.ok()) {
    std::fprintf(stderr, "submit: %s\n", job.status().ToString().c_str());
    return row;
  }
  // Init through one worker (not timed).
  {
    nas::SimWorker w(Channel(target), floats);
    w.set_train_batches(1 << 20);
    if (!w.Register("init").ok()) return row;
    while (true) {
      auto ran = w.RunOne(absl::Milliseconds(200));
      if (!ran.ok()) {
        std::fprintf(stderr, "init: %s\n", ran.status().ToString().c_str());
        return row;
      }
      if (*ran) break;
    }
  }
  int64_t round0 = (*client)->Get(*job)->round();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> tasks{0}, bytes{0};
  std::vector<std::thread> threads;
  auto t0 = Clock::now();
  double cpu0 = CpuSeconds(pid);
  double self0 = CpuSeconds(getpid());
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      nas::SimWorker w(Channel(target), floats);
      w.set_single_round_trip(absl::GetFlag(FLAGS_single_round_trip));
      w.set_batch(batch);
      if (!w.Register(absl::StrCat("sim-", i)).ok()) return;
      while (!stop.load()) {
        auto ran = w.RunSome(absl::Milliseconds(100));
        if (!ran.ok()) {
          std::fprintf(stderr, "worker %d: %s\n", i, ran.status().ToString().c_str());
          return;
        }
        tasks.fetch_add(*ran);
      }
      bytes.fetch_add(w.bytes_fetched());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  row.seconds = Since(t0);
  row.coordinator_cpu = CpuSeconds(pid) - cpu0;
  row.workers_cpu = CpuSeconds(getpid()) - self0;
  row.coordinator_rss_mb = ResidentMb(pid).first;
  row.tasks = tasks.load();
  row.rounds = (*client)->Get(*job)->round() - round0;
  row.fetched_mb = bytes.load() / 1e6;
  (void)(*client)->Cancel(*job);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string dir = (fs::temp_directory_path() / absl::StrCat("dispatch_bench_", getpid())).string();
  fs::create_directories(dir);
  Coordinator coordinator;
  if (!StartCoordinator(dir, &coordinator)) return 1;
  double seconds = absl::GetFlag(FLAGS_seconds);
  std::vector<Row> rows;
  std::vector<std::string> workloads = absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',');
  auto wanted = [&](absl::string_view w) {
    return std::find(workloads.begin(), workloads.end(), w) != workloads.end();
  };
  if (wanted("overhead")) {
    rows.push_back(Run(coordinator.target, coordinator.pid, "round overhead (fashion-mnist)",
                       "fashion-mnist", 1, 1, 4, seconds));
  }
  // The same with every tensor at its real size: what a one-worker search pays per round on
  // top of its steps (the path's weights, momentum and BN statistics out and back, merged and
  // committed).
  if (wanted("overhead_real")) {
    rows.push_back(Run(coordinator.target, coordinator.pid,
                       "round overhead, real tensor bytes (fashion-mnist)", "fashion-mnist", 1, 1,
                       0, seconds));
  }
  std::vector<std::string> capacity_workers;  // worker counts of the capacity workloads
  if (wanted("capacity")) capacity_workers = absl::StrSplit(absl::GetFlag(FLAGS_workers), ',');
  for (const std::string& w : capacity_workers) {
    int n = std::stoi(w);
    rows.push_back(Run(coordinator.target, coordinator.pid, "dispatch capacity (fashion-mnist)", "fashion-mnist",
                       n, absl::GetFlag(FLAGS_tasks_per_round), 4, seconds));
    if (absl::GetFlag(FLAGS_batch) > 1) {
      rows.push_back(Run(coordinator.target, coordinator.pid, "dispatch capacity (fashion-mnist)",
                         "fashion-mnist", n, absl::GetFlag(FLAGS_tasks_per_round), 4, seconds,
                         absl::GetFlag(FLAGS_batch)));
    }
  }
  if (wanted("transfer")) {
    rows.push_back(Run(coordinator.target, coordinator.pid, "tensor transfer (ImageNet path)",
                       "proxyless-imagenet", 1, 1, 0, seconds));
  }

  std::string table = absl::StrFormat(
      "coordinator %s (sync %s, %s commits), simulated workers as threads of one process (%s), "
      "%.0f s "
      "each\n\n"
      "| workload | workers | tasks per call | tasks/round | tasks done | tasks/s | rounds/s | "
      "ms/round | fetched MB/s | coordinator CPU us/task | tasks/s per coordinator core | "
      "coordinator RSS MB | simulated workers' CPU us/task |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
      absl::GetFlag(FLAGS_coordinator_binary), absl::GetFlag(FLAGS_sync) ? "on" : "off",
      absl::GetFlag(FLAGS_pipelined_commits) ? "pipelined" : "synced",
      absl::GetFlag(FLAGS_single_round_trip) ? "1 RPC per task: tensors inline, next task with "
                                               "each completion"
                                             : "3 RPCs per task",
      seconds);
  for (const Row& r : rows) {
    double rps = r.seconds > 0 ? r.rounds / r.seconds : 0;
    double us = r.tasks > 0 ? 1e6 * r.coordinator_cpu / r.tasks : 0;
    absl::StrAppendFormat(
        &table,
        "| %s | %d | %d | %d | %d | %.0f | %.1f | %.2f | %.1f | %.0f | %.0f | %.0f | %.0f |\n",
        r.workload, r.workers, r.batch, r.tasks_per_round, r.tasks,
        r.seconds > 0 ? r.tasks / r.seconds : 0, rps, rps > 0 ? 1000 / rps : 0,
        r.seconds > 0 ? r.fetched_mb / r.seconds : 0, us, us > 0 ? 1e6 / us : 0,
        r.coordinator_rss_mb, r.tasks > 0 ? 1e6 * r.workers_cpu / r.tasks : 0);
  }
  absl::StrAppendFormat(&table, "\ncoordinator peak RSS: %.0f MB\n",
                        ResidentMb(coordinator.pid).second);
  if (coordinator.pid > 0) {
    kill(coordinator.pid, SIGTERM);
    waitpid(coordinator.pid, nullptr, 0);
    coordinator.pid = -1;
  }
  // A count, not a time: it does not move with this VM's speed. Every workload of the run
  // (and each one's init task) is in it.
  int64_t tasks = 0;
  for (const Row& r : rows) tasks += r.tasks;
  std::optional<double> allocs = CoordinatorAllocations(dir + "/coordinator.log");
  if (allocs.has_value() && tasks > 0) {
    absl::StrAppendFormat(&table,
                          "coordinator allocations per completed task (jemalloc's count over "
                          "the whole run): %.0f\n",
                          *allocs / static_cast<double>(tasks));
  } else {
    absl::StrAppend(&table,
                    "coordinator allocations: not counted (the coordinator is not on "
                    "jemalloc)\n");
  }
  std::printf("%s", table.c_str());
  if (!absl::GetFlag(FLAGS_out).empty()) std::ofstream(absl::GetFlag(FLAGS_out)) << table;
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
