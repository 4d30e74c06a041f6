// queue_bench: the shared queue of issue 20 at lab scale - 200 jobs of 20 tenants on 1,000
// simulated workers.
//
// Workloads:
//  - decide: the scheduler alone, in this process (no gRPC, no JobManager): FairShareScheduler
//    and PriorityScheduler::Next over 200 SchedulingJobs of 20 SchedulingTenants (a free worker
//    each call, the pick applied to the jobs and tenants as the JobManager would: the job's
//    task leased, the tenant's held workers and usage up), and FairShareScheduler::Admit over
//    the same 200 jobs; decisions per second;
//  - dispatch: the real `coordinator` binary (a child process on loopback, RocksDB in a temp
//    dir) with 200 jobs of 20 tenants (5 weight tasks a round each: 1,000 tasks for 1,000
//    workers) and 1,000 simulated workers, alternately with identity and fair share ON
//    (--tokens_file: every call with a bearer token; --scheduler=fair-share with a quotas file
//    giving the tenants weights 1-4) and OFF (no tokens file, --scheduler=priority), a fresh
//    coordinator per run; task completions per second;
//  - converge: how long the fair share takes to settle after a tenant arrives: tenant A's jobs
//    alone hold every worker, then tenant B submits; B's share of the worker-seconds over a
//    sliding window (from the coordinator's own ledger, GetQueue's window_worker_hours, polled)
//    until it stays within 5 points of its fair share.
//
// The simulated workers (coordinator/sim_worker.h: the real protocol, no computation) are
// registered workers served by a few threads of this process, each thread cycling through its
// share of them: a worker completes its task and takes the next one in one call (the single
// round trip), then holds that lease until the thread comes back to it (dispatch: at once;
// converge: once --conv_compute_ms has passed). 1,000 workers hold up to
// 1,000 leases at once, as 1,000 machines would; 1,000 threads would not fit two cores.
// Each thread is one gRPC connection. A worker that gets no task asks again after
// --idle_backoff_ms (a real worker long-polls; a thread serving many cannot block on one).
//
//   queue_bench --coordinator_binary build/coordinator/coordinator --pairs 5 --seconds 10
// Prints markdown tables (and writes them to --out when given).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coordinator/scheduler.h"
#include "coordinator/search_client.h"
#include "coordinator/sim_worker.h"
#include "core/latency_table.h"
#include "core/search_space.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, coordinator_binary, "build/coordinator/coordinator", "coordinator to start");
ABSL_FLAG(std::string, workloads, "decide,dispatch,converge",
          "which workloads to run (a subset of decide, dispatch, converge)");
ABSL_FLAG(int, jobs, 200, "jobs (dispatch, decide)");
ABSL_FLAG(int, tenants, 20, "tenants, the jobs spread evenly over them (dispatch, decide)");
ABSL_FLAG(int, workers, 1000, "simulated workers (dispatch)");
ABSL_FLAG(int, threads, 8, "threads serving the simulated workers (dispatch)");
ABSL_FLAG(int, parallel_tasks, 5,
          "weight tasks per round of each job (dispatch): 200 jobs x 5 = 1,000 tasks for 1,000 "
          "workers (with more, the priority policy starves the last jobs: their init tasks "
          "never run)");
ABSL_FLAG(int, batch, 1, "tasks a simulated worker takes per call (dispatch)");
ABSL_FLAG(int, pairs, 5, "ON/OFF pairs of dispatch runs, alternated");
ABSL_FLAG(double, seconds, 10, "measured seconds per dispatch run (after a 3 s warm-up)");
ABSL_FLAG(int, idle_backoff_ms, 20, "a worker that got no task asks again after this");
ABSL_FLAG(bool, sync, true, "coordinator --sync (fsync every round)");
ABSL_FLAG(bool, pipelined_commits, false, "coordinator --pipelined_commits");
ABSL_FLAG(double, decide_seconds, 2, "seconds per scheduler in the decide workload (x3 each)");
ABSL_FLAG(int, conv_workers, 100, "simulated workers in the converge workload");
ABSL_FLAG(int, conv_compute_ms, 200, "how long a task holds its worker (converge)");
ABSL_FLAG(int, conv_jobs, 4, "jobs of each tenant (converge)");
ABSL_FLAG(double, conv_alone_seconds, 10, "tenant A alone this long before B arrives");
ABSL_FLAG(double, conv_window_seconds, 5, "the sliding window B's share is measured over");
ABSL_FLAG(double, conv_hold_seconds, 10,
          "B's share must stay within 5 points this long to count as settled");
ABSL_FLAG(double, conv_timeout_seconds, 90, "give up on a scenario after this long");
ABSL_FLAG(std::string, conv_scenarios, "1:1,1:3,3:1,1:1@0.01",
          "weights A:B, optionally @half_life_hours (default 24, the coordinator's)");
ABSL_FLAG(std::string, out, "", "also write the tables to this file");

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// CPU seconds (user + system) the process has used.
double CpuSeconds(pid_t pid) {
  std::string text = Slurp(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(text.substr(close + 2), ' ');
  if (fields.size() < 13) return 0;
  return (std::stod(fields[11]) + std::stod(fields[12])) / sysconf(_SC_CLK_TCK);
}

// Allocations the coordinator asked jemalloc for over its life (from the statistics it printed
// into `log` at exit); nullopt when it printed none (not on jemalloc).
std::optional<double> CoordinatorAllocations(const std::string& log) {
  std::string text = Slurp(log);
  size_t start = text.find("{\"jemalloc\"");
  size_t end = text.rfind('}');
  if (start == std::string::npos || end == std::string::npos || end < start) return std::nullopt;
  auto j = nlohmann::json::parse(text.substr(start, end - start + 1), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  const auto& merged = j["jemalloc"]["stats.arenas"]["merged"];
  if (!merged.contains("small") || !merged.contains("large")) return std::nullopt;
  return merged["small"].value("nrequests", 0.0) + merged["large"].value("nrequests", 0.0);
}

std::string TenantName(int t) { return absl::StrFormat("t%02d", t); }
std::string UserToken(int t) { return absl::StrFormat("tok-user-%02d-0123456789", t); }
const char kAdminToken[] = "tok-admin-0123456789";
const char kWorkerToken[] = "tok-worker-012345678";

// The tokens file: a user of each tenant, an admin, the workers' credential.
void WriteTokens(const std::string& path, const std::vector<std::string>& tenants) {
  std::ofstream f(path);
  for (size_t t = 0; t < tenants.size(); ++t) {
    f << UserToken(static_cast<int>(t)) << " user" << t << " " << tenants[t] << "\n";
  }
  f << kAdminToken << " root lab admin\n" << kWorkerToken << " sim lab worker\n";
}

// ---------------------------------------------------------------------------------------------
// The coordinator, a child process.

struct CoordinatorOptions {
  bool identity = false;    // a tokens file
  std::string scheduler;    // fair-share or priority
  std::string quotas_json;  // written to a quotas file when not empty
  std::vector<std::string> tenants;
};

class Coordinator {
 public:
  ~Coordinator() { Stop(); }
  bool Start(const std::string& dir, const CoordinatorOptions& o) {
    dir_ = dir;
    fs::create_directories(dir);
    nas::LatencyTable table(nas::LatencyTableInfo{"bench", "synthetic", 1, 1, "", "synthetic"});
    auto space = nas::SearchSpace::Preset("fashion-mnist");
    if (!space.ok()) return false;
    for (const std::string& k : space->AllLayerKeys()) {
      if (!table.Contains(k)) (void)table.Insert(k, nas::LatencyEntry{1, 0.1, 0});
    }
    if (!table.Save(dir + "/table.json").ok()) return false;
    std::vector<std::string> args = {
        absl::GetFlag(FLAGS_coordinator_binary),
        "--port=0",
        "--address=127.0.0.1",
        "--metrics_port=-1",
        "--db=" + dir + "/db",
        "--latency_table=" + dir + "/table.json",
        absl::StrCat("--sync=", absl::GetFlag(FLAGS_sync) ? "true" : "false"),
        absl::StrCat("--pipelined_commits=",
                     absl::GetFlag(FLAGS_pipelined_commits) ? "true" : "false"),
        "--scheduler=" + o.scheduler};
    if (o.identity) {
      WriteTokens(dir + "/tokens", o.tenants);
      args.push_back("--tokens_file=" + dir + "/tokens");
    }
    if (!o.quotas_json.empty()) {
      std::ofstream(dir + "/quotas.json") << o.quotas_json;
      args.push_back("--quotas_file=" + dir + "/quotas.json");
    }
    log_ = dir + "/coordinator.log";
    pid_ = fork();
    if (pid_ == 0) {
      for (int fd = 3; fd < 1024; ++fd) close(fd);
      // A coordinator on jemalloc prints its allocator's counters (JSON) to the log at exit.
      setenv("MALLOC_CONF", "stats_print:true,stats_print_opts:J", 1);
      freopen(log_.c_str(), "w", stdout);
      freopen(log_.c_str(), "a", stderr);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      std::string text = Slurp(log_);
      size_t at = text.find("listening on port ");
      if (at != std::string::npos) {
        target_ = absl::StrCat("127.0.0.1:", std::atoi(text.c_str() + at + 18));
        return true;
      }
      usleep(50000);
    }
    std::fprintf(stderr, "coordinator did not start; see %s\n", log_.c_str());
    return false;
  }
  // Stops it; its allocations over its life when it is on jemalloc.
  std::optional<double> Stop() {
    if (pid_ <= 0) return std::nullopt;
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    std::optional<double> allocs = CoordinatorAllocations(log_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
    return allocs;
  }
  pid_t pid() const { return pid_; }
  const std::string& target() const { return target_; }
  const std::string& log() const { return log_; }

 private:
  std::string dir_, log_, target_;
  pid_t pid_ = -1;
};

// ---------------------------------------------------------------------------------------------
// The simulated workers: `workers` registered workers served by `threads` threads.

class WorkerPool {
 public:
  struct Options {
    std::string target;
    std::string token;
    int workers = 1000;
    int threads = 8;
    int batch = 1;
    absl::Duration compute = absl::ZeroDuration();
    absl::Duration idle_backoff = absl::Milliseconds(20);
  };
  explicit WorkerPool(Options o) : o_(std::move(o)) {}
  ~WorkerPool() { Stop(); }
  void Start() {
    for (int t = 0; t < o_.threads; ++t) threads_.emplace_back([this, t] { Loop(t); });
  }
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }
  int64_t tasks() const { return tasks_.load(); }
  int64_t idle() const { return idle_.load(); }
  int64_t errors() const { return errors_.load(); }
  int registered() const { return registered_.load(); }

 private:
  void Loop(int t) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetInt("grpc.use_local_subchannel_pool", 1);  // one connection per thread
    auto channel = grpc::CreateCustomChannel(o_.target, grpc::InsecureChannelCredentials(), args);
    std::vector<std::unique_ptr<nas::SimWorker>> ws;
    for (int i = t; i < o_.workers; i += o_.threads) {
      auto w = std::make_unique<nas::SimWorker>(channel);
      w->set_token(o_.token);
      w->set_single_round_trip(true);
      w->set_batch(o_.batch);
      w->set_train_batches(1 << 20);  // what an init task reports: epochs that never end
      absl::Status s = w->Register(absl::StrCat("sim-", i));
      if (!s.ok()) {
        Error(absl::StrCat("register: ", s.ToString()));
        continue;
      }
      ++registered_;
      ws.push_back(std::move(w));
    }
    const auto compute = absl::ToChronoNanoseconds(o_.compute);
    const auto backoff = absl::ToChronoNanoseconds(o_.idle_backoff);
    std::vector<Clock::time_point> ready(ws.size(), Clock::now());
    while (!stop_.load()) {
      Clock::time_point next = Clock::now() + std::chrono::milliseconds(50);
      for (size_t k = 0; k < ws.size() && !stop_.load(); ++k) {
        Clock::time_point now = Clock::now();
        if (ready[k] <= now) {
          auto ran = ws[k]->RunSome(absl::ZeroDuration());
          now = Clock::now();
          if (!ran.ok()) {
            Error(ran.status().ToString());
            ready[k] = now + std::chrono::milliseconds(100);
          } else if (*ran > 0) {
            tasks_ += *ran;
            ready[k] = now + compute;
          } else {
            ++idle_;
            ready[k] = now + backoff;
          }
        }
        next = std::min(next, ready[k]);
      }
      std::this_thread::sleep_until(next);
    }
  }
  void Error(const std::string& what) {
    if (errors_.fetch_add(1) < 5) std::fprintf(stderr, "simulated worker: %s\n", what.c_str());
  }

  const Options o_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> tasks_{0}, idle_{0}, errors_{0};
  std::atomic<int> registered_{0};
  std::vector<std::thread> threads_;
};

nas::JobSpec BenchSpec(int parallel_tasks) {
  nas::JobSpec spec;
  spec.set_space("fashion-mnist");
  spec.set_device("bench");
  spec.set_batch_size(1);
  spec.set_warmup_epochs(100);  // with 2^20 batches an epoch: weight rounds for ever
  spec.set_search_epochs(1);
  spec.set_parallel_tasks(parallel_tasks);
  spec.set_chain_steps(1);
  return spec;
}

std::unique_ptr<nas::SearchClient> Client(const std::string& target, const std::string& token) {
  nas::SearchClientOptions o;
  o.token = token;
  auto c = nas::SearchClient::Connect(target, o);
  if (!c.ok()) {
    std::fprintf(stderr, "connect: %s\n", c.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*c);
}

// Waits until every job of the queue is RUNNING past its first round.
bool AwaitRunning(nas::SearchClient& admin, int jobs, double timeout_s) {
  auto t0 = Clock::now();
  while (Since(t0) < timeout_s) {
    auto q = admin.Queue("");
    if (q.ok()) {
      int running = 0;
      for (const auto& t : q->tenants()) {
        for (const auto& j : t.jobs()) running += j.state() == "RUNNING" && j.round() >= 1;
      }
      if (running >= jobs) return true;
    }
    usleep(200000);
  }
  return false;
}

// Worker-seconds each tenant used in the quota window so far, by name (GetQueue).
std::map<std::string, double> WindowSeconds(nas::SearchClient& admin) {
  std::map<std::string, double> out;
  auto q = admin.Queue("");
  if (!q.ok()) return out;
  for (const auto& t : q->tenants()) out[t.tenant()] = t.window_worker_hours() * 3600;
  return out;
}

// Rounds the jobs have finished, summed over every job (GetQueue).
int64_t Rounds(nas::SearchClient& admin) {
  int64_t n = 0;
  auto q = admin.Queue("");
  if (!q.ok()) return 0;
  for (const auto& t : q->tenants()) {
    for (const auto& j : t.jobs()) n += j.round();
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// decide

struct DecideRow {
  std::string policy, call;
  int64_t calls = 0;
  double seconds = 0;
  int64_t idle = 0;  // Next calls that found no job (every task leased; the jobs re-armed)
};

// Next over `jobs` jobs of `tenants` tenants, each job with `tasks` tasks a round; a pick
// leases one of the job's tasks and charges its tenant; once every task is leased the leases
// end and a new round of every job is queued. tasks <= 0: every job always has a queued task
// (every call compares all of them).
DecideRow DecideNext(const nas::Scheduler& s, int njobs, int ntenants, int tasks, double seconds) {
  std::vector<std::string> ids, names;
  for (int t = 0; t < ntenants; ++t) names.push_back(TenantName(t));
  for (int i = 0; i < njobs; ++i) ids.push_back(absl::StrFormat("j%06d", i));
  std::vector<nas::SchedulingTenant> tenants(ntenants);
  std::mt19937 rng(7);
  for (int t = 0; t < ntenants; ++t) {
    tenants[t].name = names[t];
    tenants[t].weight = 1 + t % 4;
    tenants[t].decayed_seconds = std::uniform_real_distribution<double>(0, 1e4)(rng);
    tenants[t].max_running_jobs = njobs / ntenants;
    tenants[t].worker_hours_per_window = 1e6;
  }
  std::vector<nas::SchedulingJob> jobs(njobs);
  std::vector<int> left(njobs, tasks);
  for (int i = 0; i < njobs; ++i) {
    nas::SchedulingJob& j = jobs[i];
    j.job_id = ids[i];
    j.tenant_index = i % ntenants;
    j.tenant = names[j.tenant_index];
    j.priority = 0;
    j.submitted_unix_ms = 1'000'000 + i;
    j.queued_since_unix_ms = j.submitted_unix_ms;
    j.admitted = true;
    j.has_queued_task = true;
    j.device = "bench";
  }
  nas::SchedulingInput in;
  in.jobs = jobs;
  in.tenants = tenants;
  in.worker.worker_id = "w1-1";
  in.now_unix_ms = 2'000'000;
  DecideRow row{std::string(s.name()),
                tasks > 0 ? absl::StrCat("Next (", tasks, " tasks a round per job)")
                          : "Next (every job has a task waiting)"};
  auto t0 = Clock::now();
  int64_t sink = 0;
  while (true) {
    for (int k = 0; k < 1000; ++k) {
      ++in.now_unix_ms;
      int d = s.Next(in).job;
      ++row.calls;
      if (d < 0) {  // every task leased: the leases end, every job queues a new round
        ++row.idle;
        for (int i = 0; i < njobs; ++i) {
          left[i] = tasks;
          jobs[i].has_queued_task = true;
        }
        for (nas::SchedulingTenant& t : tenants) t.workers_held = 0;
        continue;
      }
      sink += d;
      nas::SchedulingTenant& t = tenants[jobs[d].tenant_index];
      ++t.workers_held;
      t.decayed_seconds += 1;  // ShareSeconds: a held lease counts a mean lease at once
      if (tasks > 0 && --left[d] == 0) jobs[d].has_queued_task = false;
    }
    row.seconds = Since(t0);
    if (row.seconds >= seconds) break;
  }
  if (sink == 42) std::printf(" ");  // keeps the picks observable
  return row;
}

// Admit over the same jobs (all admitted: each tenant's max_running_jobs is its job count) and
// with `queued` jobs of each tenant over its quota (they wait, with a reason each).
DecideRow DecideAdmit(const nas::Scheduler& s, int njobs, int ntenants, int queued,
                      double seconds) {
  std::vector<std::string> ids, names;
  for (int t = 0; t < ntenants; ++t) names.push_back(TenantName(t));
  for (int i = 0; i < njobs; ++i) ids.push_back(absl::StrFormat("j%06d", i));
  std::vector<nas::SchedulingTenant> tenants(ntenants);
  for (int t = 0; t < ntenants; ++t) {
    tenants[t].name = names[t];
    tenants[t].weight = 1 + t % 4;
    tenants[t].decayed_seconds = 100.0 * t;
    tenants[t].max_running_jobs = njobs / ntenants - queued;
    tenants[t].worker_hours_per_window = 1e6;
  }
  std::vector<nas::SchedulingJob> jobs(njobs);
  for (int i = 0; i < njobs; ++i) {
    nas::SchedulingJob& j = jobs[i];
    j.job_id = ids[i];
    j.tenant_index = i % ntenants;
    j.tenant = names[j.tenant_index];
    j.priority = i % 3;
    j.submitted_unix_ms = 1'000'000 + i;
    j.queued_since_unix_ms = j.submitted_unix_ms;
    j.admitted = (i / ntenants) < njobs / ntenants - queued;
    j.has_queued_task = true;
  }
  nas::SchedulingInput in;
  in.jobs = jobs;
  in.tenants = tenants;
  in.now_unix_ms = 2'000'000;
  DecideRow row{std::string(s.name()),
                queued == 0 ? "Admit (all admitted)"
                            : absl::StrCat("Admit (", queued, " of each tenant's jobs wait)")};
  auto t0 = Clock::now();
  size_t sink = 0;
  while (true) {
    for (int k = 0; k < 100; ++k) {
      ++in.now_unix_ms;
      std::vector<nas::Admission> plan = s.Admit(in);
      sink += plan.size() + plan.back().reason.size();
      ++row.calls;
    }
    row.seconds = Since(t0);
    if (row.seconds >= seconds) break;
  }
  if (sink == 42) std::printf(" ");
  return row;
}

std::string RunDecide() {
  const int njobs = absl::GetFlag(FLAGS_jobs), ntenants = absl::GetFlag(FLAGS_tenants);
  const int tasks = absl::GetFlag(FLAGS_parallel_tasks);
  const double secs = absl::GetFlag(FLAGS_decide_seconds);
  nas::FairShareScheduler fair;
  nas::PriorityScheduler prio;
  // Three alternated rounds of each; the median rate.
  std::map<std::string, std::vector<DecideRow>> runs;
  std::vector<std::string> order;
  for (int r = 0; r < 3; ++r) {
    std::vector<DecideRow> rows = {DecideNext(fair, njobs, ntenants, tasks, secs),
                                   DecideNext(prio, njobs, ntenants, tasks, secs),
                                   DecideNext(fair, njobs, ntenants, 0, secs / 2),
                                   DecideNext(prio, njobs, ntenants, 0, secs / 2),
                                   DecideAdmit(fair, njobs, ntenants, 0, secs / 2),
                                   DecideAdmit(fair, njobs, ntenants, 2, secs / 2)};
    for (DecideRow& row : rows) {
      std::string key = row.policy + " " + row.call;
      if (r == 0) order.push_back(key);
      runs[key].push_back(std::move(row));
    }
  }
  std::string table = absl::StrFormat(
      "Scheduler alone (in-process, no gRPC): %d jobs of %d tenants (weights 1-4), %d tasks a "
      "round each; 3 alternated runs of %.1f s (the first two rows) or %.1f s each; median. A Next "
      "call is one decision (which job's task goes to a free worker); an Admit call decides for "
      "every job\n\n"
      "| policy | call | calls | ns per call | calls/s | runs (calls/s) |\n"
      "|---|---|---:|---:|---:|---|\n",
      njobs, ntenants, tasks, secs, secs / 2);
  for (const std::string& key : order) {
    std::vector<double> rates;
    int64_t calls = 0;
    for (const DecideRow& r : runs[key]) {
      rates.push_back(r.calls / r.seconds);
      calls += r.calls;
    }
    std::vector<std::string> each;
    for (double x : rates) each.push_back(absl::StrFormat("%.3g", x));
    const DecideRow& first = runs[key][0];
    double rate = Median(rates);
    absl::StrAppendFormat(&table, "| %s | %s | %d | %.0f | %.3g | %s |\n", first.policy, first.call,
                          calls, 1e9 / rate, rate, absl::StrJoin(each, " / "));
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// dispatch

struct DispatchRun {
  bool on = false;
  int64_t tasks = 0;
  double seconds = 0;
  double coordinator_cpu = 0, workers_cpu = 0;
  int64_t idle = 0, errors = 0;
  int64_t rounds = 0;
  std::optional<double> allocs_per_task;
  bool ok = false;
};

std::string QuotasJson(const std::vector<std::string>& tenants, int jobs_per_tenant) {
  nlohmann::json t = nlohmann::json::object();
  for (size_t i = 0; i < tenants.size(); ++i) {
    t[tenants[i]] = {{"weight", 1 + i % 4},
                     {"max_running_jobs", jobs_per_tenant},
                     {"worker_hours_per_window", 1e6}};
  }
  return nlohmann::json({{"tenants", t}}).dump();
}

DispatchRun RunDispatch(bool on, int index) {
  DispatchRun run;
  run.on = on;
  const int njobs = absl::GetFlag(FLAGS_jobs), ntenants = absl::GetFlag(FLAGS_tenants);
  std::vector<std::string> tenants;
  for (int t = 0; t < ntenants; ++t) tenants.push_back(TenantName(t));
  CoordinatorOptions co;
  co.tenants = tenants;
  co.identity = on;
  co.scheduler = on ? "fair-share" : "priority";
  if (on) co.quotas_json = QuotasJson(tenants, (njobs + ntenants - 1) / ntenants);
  Coordinator c;
  std::string dir =
      (fs::temp_directory_path() / absl::StrCat("queue_bench_", getpid(), "_", index)).string();
  if (!c.Start(dir, co)) return run;
  // Submissions, each tenant's jobs by its own user (ON; OFF: the spec names the tenant).
  std::vector<std::unique_ptr<nas::SearchClient>> users;
  for (int t = 0; t < ntenants; ++t) users.push_back(Client(c.target(), on ? UserToken(t) : ""));
  auto admin = Client(c.target(), on ? kAdminToken : "");
  auto t_submit = Clock::now();
  for (int i = 0; i < njobs; ++i) {
    nas::JobSpec spec = BenchSpec(absl::GetFlag(FLAGS_parallel_tasks));
    spec.set_tenant(tenants[i % ntenants]);
    auto id = users[i % ntenants]->Submit(spec);
    if (!id.ok()) {
      std::fprintf(stderr, "submit: %s\n", id.status().ToString().c_str());
      return run;
    }
  }
  WorkerPool::Options po;
  po.target = c.target();
  po.token = on ? kWorkerToken : "";
  po.workers = absl::GetFlag(FLAGS_workers);
  po.threads = absl::GetFlag(FLAGS_threads);
  po.batch = absl::GetFlag(FLAGS_batch);
  po.idle_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_idle_backoff_ms));
  WorkerPool pool(po);
  auto setup = Clock::now();
  pool.Start();
  std::fprintf(stderr, "  %d jobs submitted in %.1f s\n", njobs, Since(t_submit));
  if (!AwaitRunning(*admin, njobs, 120)) {
    std::string log = Slurp(c.log());
    std::fprintf(stderr, "the jobs did not all start; the coordinator's log ends:\n%s\n",
                 log.substr(log.size() > 2000 ? log.size() - 2000 : 0).c_str());
    return run;
  }
  std::fprintf(stderr, "  every job running %.1f s after the workers started (%d registered)\n",
               Since(setup), pool.registered());
  std::this_thread::sleep_for(std::chrono::seconds(3));  // warm-up
  int64_t rounds0 = Rounds(*admin);
  int64_t tasks0 = pool.tasks(), idle0 = pool.idle();
  double cpu0 = CpuSeconds(c.pid()), self0 = CpuSeconds(getpid());
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds)));
  run.seconds = Since(t0);
  run.tasks = pool.tasks() - tasks0;
  run.idle = pool.idle() - idle0;
  run.coordinator_cpu = CpuSeconds(c.pid()) - cpu0;
  run.workers_cpu = CpuSeconds(getpid()) - self0;
  run.rounds = Rounds(*admin) - rounds0;
  pool.Stop();
  run.errors = pool.errors();
  int64_t all_tasks = pool.tasks();
  admin.reset();
  users.clear();
  std::optional<double> allocs = c.Stop();
  if (allocs.has_value() && all_tasks > 0) run.allocs_per_task = *allocs / all_tasks;
  run.ok = true;
  return run;
}

std::string RunDispatchPairs() {
  std::vector<DispatchRun> runs;
  const int pairs = absl::GetFlag(FLAGS_pairs);
  for (int p = 0; p < pairs; ++p) {
    for (bool on : {true, false}) {
      DispatchRun r = RunDispatch(on, static_cast<int>(runs.size()));
      std::fprintf(stderr, "dispatch %s: %.0f tasks/s\n", on ? "ON" : "OFF",
                   r.seconds > 0 ? r.tasks / r.seconds : 0);
      runs.push_back(r);
    }
  }
  std::string table = absl::StrFormat(
      "Dispatch through the coordinator %s (sync %s, %s commits): %d jobs of %d tenants, %d "
      "weight tasks a round each; %d simulated workers on %d threads (%d task%s per call, 1 "
      "RPC per task); ON = tokens file + --scheduler=fair-share + quotas file (weights 1-4), "
      "OFF = no tokens file, --scheduler=priority; a fresh coordinator per run, %.0f s measured "
      "after a 3 s warm-up, ON and OFF alternated\n\n"
      "| run | identity + fair share | tasks/s | coordinator CPU us/task | simulated workers' "
      "CPU us/task | idle replies per task | rounds/s | coordinator allocations per task "
      "(whole run) |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
      absl::GetFlag(FLAGS_coordinator_binary), absl::GetFlag(FLAGS_sync) ? "on" : "off",
      absl::GetFlag(FLAGS_pipelined_commits) ? "pipelined" : "synced", absl::GetFlag(FLAGS_jobs),
      absl::GetFlag(FLAGS_tenants), absl::GetFlag(FLAGS_parallel_tasks),
      absl::GetFlag(FLAGS_workers), absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_batch),
      absl::GetFlag(FLAGS_batch) == 1 ? "" : "s", absl::GetFlag(FLAGS_seconds));
  std::vector<double> on_rates, off_rates, ratios, on_cpu, off_cpu, on_allocs, off_allocs;
  for (size_t i = 0; i < runs.size(); ++i) {
    const DispatchRun& r = runs[i];
    if (!r.ok) {
      absl::StrAppendFormat(&table, "| %d | %s | failed | | | | | |\n", i + 1, r.on ? "ON" : "OFF");
      continue;
    }
    double rate = r.tasks / r.seconds;
    double cpu = r.tasks > 0 ? 1e6 * r.coordinator_cpu / r.tasks : 0;
    (r.on ? on_rates : off_rates).push_back(rate);
    (r.on ? on_cpu : off_cpu).push_back(cpu);
    if (r.allocs_per_task.has_value())
      (r.on ? on_allocs : off_allocs).push_back(*r.allocs_per_task);
    if (!r.on && i > 0 && runs[i - 1].on && runs[i - 1].ok) {
      ratios.push_back((runs[i - 1].tasks / runs[i - 1].seconds) / rate);
    }
    absl::StrAppendFormat(
        &table, "| %d | %s | %.0f | %.0f | %.0f | %.3f | %.0f | %s |\n", i + 1, r.on ? "ON" : "OFF",
        rate, cpu, r.tasks > 0 ? 1e6 * r.workers_cpu / r.tasks : 0,
        r.tasks > 0 ? static_cast<double>(r.idle) / r.tasks : 0, r.rounds / r.seconds,
        r.allocs_per_task.has_value() ? absl::StrFormat("%.0f", *r.allocs_per_task) : "-");
    if (r.errors > 0)
      absl::StrAppendFormat(&table, "|   | (%d worker errors) | | | | | | |\n", r.errors);
  }
  double on = Median(on_rates), off = Median(off_rates);
  absl::StrAppendFormat(
      &table,
      "\nmedian tasks/s: ON %.0f, OFF %.0f; ON/OFF %.3f (overhead %.1f%%); median of the "
      "pairs' ON/OFF ratios %.3f; coordinator CPU per task, median: ON %.0f us, OFF %.0f us "
      "(%+.1f%%); coordinator allocations per task, median: ON %.0f, OFF %.0f (%+.1f%%)\n",
      on, off, off > 0 ? on / off : 0, off > 0 ? 100 * (1 - on / off) : 0, Median(ratios),
      Median(on_cpu), Median(off_cpu),
      Median(off_cpu) > 0 ? 100 * (Median(on_cpu) / Median(off_cpu) - 1) : 0, Median(on_allocs),
      Median(off_allocs),
      Median(off_allocs) > 0 ? 100 * (Median(on_allocs) / Median(off_allocs) - 1) : 0);
  return table;
}

// ---------------------------------------------------------------------------------------------
// converge

struct Scenario {
  double weight_a = 1, weight_b = 1;
  double half_life_hours = 0;  // 0: the coordinator's default (24 h)
};

std::string RunConverge() {
  std::vector<Scenario> scenarios;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_conv_scenarios), ',')) {
    Scenario x;
    std::vector<std::string> hl = absl::StrSplit(s, '@');
    std::vector<std::string> w = absl::StrSplit(hl[0], ':');
    x.weight_a = std::stod(w.at(0));
    x.weight_b = std::stod(w.at(1));
    if (hl.size() > 1) x.half_life_hours = std::stod(hl[1]);
    scenarios.push_back(x);
  }
  const int workers = absl::GetFlag(FLAGS_conv_workers);
  const int njobs = absl::GetFlag(FLAGS_conv_jobs);
  const double compute_s = absl::GetFlag(FLAGS_conv_compute_ms) / 1000.0;
  const double window = absl::GetFlag(FLAGS_conv_window_seconds);
  const double hold = absl::GetFlag(FLAGS_conv_hold_seconds);
  // Each tenant's jobs together want twice the workers: enough work each.
  const int parallel = std::max(1, 2 * workers / njobs);
  std::string table = absl::StrFormat(
      "Fair share after a tenant arrives: %d simulated workers, each task holding its worker "
      "%.0f ms; tenants A and B with %d jobs of %d weight tasks a round each (each tenant "
      "alone wants %d workers); A alone for %.0f s, then B submits. B's share = its fraction "
      "of the worker-seconds used in the last %.0f s (since B's arrival when shorter), from "
      "the coordinator's ledger, polled every 0.25 s; settled = within 5 points of its fair "
      "share and staying there for %.0f s\n\n"
      "| weights A:B | half-life | B's fair share | A's usage when B arrives (worker-s) | B's "
      "peak share | A's share while B catches up | **settled after** | B's rounds (mean per "
      "job) until settled | task lengths until settled |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
      workers, compute_s * 1000, njobs, parallel, njobs * parallel,
      absl::GetFlag(FLAGS_conv_alone_seconds), window, hold);
  int index = 1000;
  for (const Scenario& sc : scenarios) {
    CoordinatorOptions co;
    co.tenants = {"a", "b"};
    co.identity = true;
    co.scheduler = "fair-share";
    nlohmann::json q = {
        {"tenants", {{"a", {{"weight", sc.weight_a}}}, {"b", {{"weight", sc.weight_b}}}}}};
    if (sc.half_life_hours > 0) q["half_life_hours"] = sc.half_life_hours;
    co.quotas_json = q.dump();
    Coordinator c;
    std::string dir =
        (fs::temp_directory_path() / absl::StrCat("queue_bench_", getpid(), "_", index++)).string();
    std::string label = absl::StrFormat("%g:%g", sc.weight_a, sc.weight_b);
    std::string hl = sc.half_life_hours > 0 ? absl::StrFormat("%g s", sc.half_life_hours * 3600)
                                            : "24 h (default)";
    if (!c.Start(dir, co)) {
      absl::StrAppendFormat(&table, "| %s | %s | failed to start | | | | | | |\n", label, hl);
      continue;
    }
    auto a = Client(c.target(), UserToken(0));
    auto b = Client(c.target(), UserToken(1));
    auto admin = Client(c.target(), kAdminToken);
    for (int i = 0; i < njobs; ++i) (void)a->Submit(BenchSpec(parallel));
    WorkerPool::Options po;
    po.target = c.target();
    po.token = kWorkerToken;
    po.workers = workers;
    po.threads = std::max(1, std::min(8, workers / 25));
    po.compute = absl::Seconds(compute_s);
    po.idle_backoff = absl::Milliseconds(absl::GetFlag(FLAGS_idle_backoff_ms));
    WorkerPool pool(po);
    pool.Start();
    AwaitRunning(*admin, njobs, 60);
    std::this_thread::sleep_for(
        std::chrono::duration<double>(absl::GetFlag(FLAGS_conv_alone_seconds)));
    double a_usage = WindowSeconds(*admin)["a"];
    for (int i = 0; i < njobs; ++i) (void)b->Submit(BenchSpec(parallel));
    const double fair = sc.weight_b / (sc.weight_a + sc.weight_b);
    struct Sample {
      double t, a, b;  // seconds since B's arrival; cumulative worker-seconds
      double b_rounds;
    };
    std::vector<Sample> samples;
    auto t0 = Clock::now();
    std::optional<double> last_out_end;  // the first in-band sample after the last one out
    double last_violation = 0, peak = 0;
    std::optional<double> settled_rounds;
    double a_share_catchup_sum = 0;
    int a_share_catchup_n = 0;
    bool settled = false;
    while (Since(t0) < absl::GetFlag(FLAGS_conv_timeout_seconds)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      auto reply = admin->Queue("");
      if (!reply.ok()) continue;
      Sample s{Since(t0), 0, 0, 0};
      int bj = 0;
      for (const auto& t : reply->tenants()) {
        double used = t.window_worker_hours() * 3600;
        if (t.tenant() == "a") s.a = used;
        if (t.tenant() == "b") {
          s.b = used;
          for (const auto& j : t.jobs()) {
            s.b_rounds += j.round();
            ++bj;
          }
        }
      }
      if (bj > 0) s.b_rounds /= bj;
      samples.push_back(s);
      // The window's start: the last sample at or before t - window (B's arrival at the most).
      Sample base{0, a_usage, 0, 0};
      for (const Sample& x : samples) {
        if (x.t <= s.t - window) base = x;
      }
      double da = s.a - base.a, db = s.b - base.b;
      if (da + db <= 0) continue;
      double share = db / (da + db);
      peak = std::max(peak, share);
      bool in_band = std::abs(share - fair) <= 0.05;
      if (!in_band) {
        last_violation = s.t;
        last_out_end.reset();
        settled_rounds.reset();
        if (share > fair) {  // B catching up
          a_share_catchup_sum += 1 - share;
          ++a_share_catchup_n;
        }
      } else if (!last_out_end.has_value()) {
        last_out_end = s.t;
        settled_rounds = s.b_rounds;
      }
      if (last_out_end.has_value() && s.t - last_violation >= hold) {
        settled = true;
        break;
      }
    }
    pool.Stop();
    a.reset();
    b.reset();
    admin.reset();
    c.Stop();
    absl::StrAppendFormat(
        &table, "| %s | %s | %.0f%% | %.0f | %.0f%% | %s | **%s** | %s | %s |\n", label, hl,
        100 * fair, a_usage, 100 * peak,
        a_share_catchup_n > 0
            ? absl::StrFormat("%.0f%%", 100 * a_share_catchup_sum / a_share_catchup_n)
            : "-",
        settled ? absl::StrFormat("%.1f s", *last_out_end)
                : absl::StrFormat("not within %.0f s", absl::GetFlag(FLAGS_conv_timeout_seconds)),
        settled && settled_rounds.has_value() ? absl::StrFormat("%.1f", *settled_rounds) : "-",
        settled ? absl::StrFormat("%.0f", *last_out_end / compute_s) : "-");
    std::fprintf(stderr, "converge %s: %s\n", label.c_str(),
                 settled ? absl::StrFormat("%.1f s", *last_out_end).c_str() : "not settled");
  }
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::vector<std::string> workloads = absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',');
  auto wanted = [&](absl::string_view w) {
    return std::find(workloads.begin(), workloads.end(), w) != workloads.end();
  };
  std::string out;
  auto emit = [&](const std::string& table) {
    std::printf("%s\n", table.c_str());
    std::fflush(stdout);
    out += table + "\n";
  };
  if (wanted("decide")) emit(RunDecide());
  if (wanted("dispatch")) emit(RunDispatchPairs());
  if (wanted("converge")) emit(RunConverge());
  if (!absl::GetFlag(FLAGS_out).empty()) std::ofstream(absl::GetFlag(FLAGS_out)) << out;
  return 0;
}
