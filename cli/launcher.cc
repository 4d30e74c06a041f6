#include "cli/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/search_client.h"
#include "core/json_fields.h"
#include "core/status_macros.h"
#include "latency_service/latency_client.h"
#include "worker/progress.h"

namespace nas {

namespace fs = std::filesystem;

namespace {

// A child process whose stdout and stderr go to a log file; SIGTERM (then SIGKILL) on
// destruction.
class Child {
 public:
  static absl::StatusOr<std::unique_ptr<Child>> Start(const std::vector<std::string>& argv,
                                                      const std::string& log) {
    if (!fs::exists(argv[0])) {
      return absl::NotFoundError(absl::StrCat(argv[0], ": binary not found (build it first)"));
    }
    pid_t pid = fork();
    if (pid < 0) return absl::InternalError("fork failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);             // the local service ends with its launcher
      for (int fd = 3; fd < 1024; ++fd) close(fd);  // no inherited locks or sockets
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    auto c = std::unique_ptr<Child>(new Child());
    c->pid_ = pid;
    c->log_ = log;
    c->name_ = fs::path(argv[0]).filename();
    return c;
  }
  ~Child() { Stop(); }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  bool Alive() {
    if (pid_ <= 0) return false;
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  // The first match of `pattern`'s group 1 in the log, waiting up to `timeout`.
  absl::StatusOr<int> WaitForPort(const std::string& pattern, absl::Duration timeout) {
    std::regex re(pattern);
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::ifstream f(log_);
      std::stringstream ss;
      ss << f.rdbuf();
      std::smatch m;
      std::string text = ss.str();
      if (std::regex_search(text, m, re)) return std::stoi(m[1]);
      if (!Alive()) {
        return absl::UnavailableError(
            absl::StrCat(name_, " exited during start-up; see ", log_, ":\n", text));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return absl::DeadlineExceededError(absl::StrCat(name_, " did not start; see ", log_));
  }

 private:
  Child() = default;
  pid_t pid_ = -1;
  std::string log_, name_;
};

std::string SelfDir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

std::string FindBinary(const std::string& bin_dir, const std::string& sub,
                       const std::string& name) {
  std::vector<fs::path> candidates;
  if (!bin_dir.empty()) {
    candidates = {fs::path(bin_dir) / sub / name, fs::path(bin_dir) / name};
  } else {
    fs::path self = SelfDir();
    candidates = {self.parent_path() / sub / name, self / name};
  }
  for (const fs::path& c : candidates) {
    if (fs::exists(c)) return c.string();
  }
  return candidates[0].string();
}

// 32 hex digits from the kernel's random source.
absl::StatusOr<std::string> RandomToken() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char b[16];
  if (!in.read(reinterpret_cast<char*>(b), sizeof(b))) {
    return absl::UnavailableError("/dev/urandom: cannot read a token");
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(b), sizeof(b)));
}

// Writes `text` to a new file readable by this user only.
absl::Status WritePrivateFile(const std::string& path, const std::string& text) {
  std::error_code ec;
  fs::remove(path, ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create"));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::close(fd) == 0 && ok;
  if (!ok) return absl::DataLossError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> FollowJob(const std::string& coordinator,
                                      const SearchClientOptions& client_options,
                                      const std::string& job_id, const std::string& out_dir,
                                      bool progress) {
  NAS_ASSIGN_OR_RETURN(std::unique_ptr<SearchClient> client,
                       SearchClient::Connect(coordinator, client_options));
  ProgressBar bar(progress);
  std::string shown;
  JobStatus last;
  absl::Time started = absl::Now();
  for (int attempt = 0;; ++attempt) {
    absl::Status s = client->Watch(job_id, [&](const JobStatus& st) {
      last = st;
      std::string phase = st.state() == "RUNNING" ? st.phase() : st.state();
      if (st.state() == "FINAL") phase = "final training";
      if (phase != shown) {
        if (!shown.empty()) bar.Finish("");
        shown = phase;
        int64_t total = st.state() == "RUNNING" ? st.total_weight_steps()
                        : st.state() == "FINAL" ? st.final_total()
                                                : 0;
        bar.Start(phase, total);
      }
      if (st.state() == "RUNNING") {
        bar.Update(
            st.weight_steps(),
            absl::StrFormat("round %d epoch %d loss %.3f val %s E[lat] %.3fms "
                            "(target %.3f) H %.2f",
                            st.round(), st.epoch() + 1, st.train_loss(),
                            st.arch_steps() > 0 ? absl::StrFormat("%.1f%%", 100 * st.val_accuracy())
                                                : std::string("-"),
                            st.expected_latency_ms(), st.target_latency_ms(), st.arch_entropy()));
      } else if (st.state() == "FINAL") {
        bar.Update(st.final_done(),
                   absl::StrFormat("%d/%d networks trained", st.final_done(), st.final_total()));
      } else if (!st.message().empty()) {
        bar.Log(absl::StrCat(st.job_id(), ": ", st.message()));
      }
      return true;
    });
    if (last.state() == "DONE" || last.state() == "FAILED" || last.state() == "CANCELLED") break;
    if (!s.ok() && attempt > 600) return s;
    absl::SleepFor(absl::Seconds(1));  // stream broke (coordinator restart): watch again
  }
  if (!shown.empty()) bar.Finish(last.state());
  if (last.state() != "DONE") {
    return absl::AbortedError(
        absl::StrCat("job ", job_id, " ended ", last.state(), ": ", last.message()));
  }
  NAS_ASSIGN_OR_RETURN(JobResult result, client->Result(job_id));
  NAS_ASSIGN_OR_RETURN(std::string md, WriteResultDirectory(*client, result, out_dir));
  absl::StrAppend(
      &md, "\ntime: ", absl::FormatDuration(absl::Trunc(absl::Now() - started, absl::Seconds(1))),
      " (job ", job_id, " on ", coordinator, ")\n");
  std::ofstream(out_dir + "/report.md", std::ios::app)
      << "\ntime: " << absl::FormatDuration(absl::Trunc(absl::Now() - started, absl::Seconds(1)))
      << "\n";
  return md;
}

absl::StatusOr<std::string> RunLocalService(const LaunchOptions& o) {
  if (o.table_path.empty()) return absl::InvalidArgumentError("table_path: required");
  if (o.workers < 1) return absl::InvalidArgumentError("workers: must be at least 1");
  std::error_code ec;
  fs::create_directories(o.out_dir + "/logs", ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(o.out_dir, ": ", ec.message()));
  std::string logs = o.out_dir + "/logs";

  // Latency service with this machine's table, which only its own random writer token may
  // replace (for latency_ctl put against it: --token_file=<out>/logs/latency-writer-token).
  NAS_ASSIGN_OR_RETURN(std::string writer_token, RandomToken());
  const std::string writer_tokens_file = logs + "/latency-tokens";
  NAS_RETURN_IF_ERROR(
      WritePrivateFile(writer_tokens_file,
                       absl::StrCat("# the local latency service's writer (nas search --workers)\n",
                                    writer_token, " local default writer\n")));
  NAS_RETURN_IF_ERROR(WritePrivateFile(logs + "/latency-writer-token", writer_token + "\n"));
  NAS_ASSIGN_OR_RETURN(auto latency,
                       Child::Start({FindBinary(o.bin_dir, "latency_service", "latency_server"),
                                     "--port=0", "--metrics_port=-1", "--address=127.0.0.1",
                                     absl::StrCat("--writer_tokens_file=", writer_tokens_file),
                                     absl::StrCat("--table_dir=", o.out_dir, "/latency-tables")},
                                    logs + "/latency_server.log"));
  NAS_ASSIGN_OR_RETURN(int lport,
                       latency->WaitForPort(R"(listening on [0-9.]+:([0-9]+))", absl::Seconds(60)));
  std::string ltarget = absl::StrCat("127.0.0.1:", lport);
  {
    LatencyClientOptions writer;
    writer.token = writer_token;
    NAS_ASSIGN_OR_RETURN(std::unique_ptr<LatencyClient> lc,
                         LatencyClient::Connect(ltarget, writer));
    std::ifstream f(o.table_path);
    std::stringstream ss;
    ss << f.rdbuf();
    if (!f) return absl::NotFoundError(absl::StrCat(o.table_path, ": cannot read"));
    NAS_RETURN_IF_ERROR(lc->PutTableJson(ss.str(), /*merge=*/false).status());
  }

  // Its own credentials: a user token (admin of the local coordinator) for this process and a
  // worker credential for its workers, random, in files only this user can read.
  NAS_ASSIGN_OR_RETURN(std::string user_token, RandomToken());
  NAS_ASSIGN_OR_RETURN(std::string worker_token, RandomToken());
  const std::string tokens_file = logs + "/tokens";
  const std::string worker_token_file = logs + "/worker-token";
  NAS_RETURN_IF_ERROR(WritePrivateFile(
      tokens_file,
      absl::StrCat("# the local coordinator's tokens (nas search --workers)\n", user_token,
                   " local default admin\n", worker_token, " local-worker default worker\n")));
  NAS_RETURN_IF_ERROR(WritePrivateFile(worker_token_file, worker_token + "\n"));
  // For nasctl against this coordinator: NAS_TOKEN_FILE=<out>/logs/user-token nasctl ...
  NAS_RETURN_IF_ERROR(WritePrivateFile(logs + "/user-token", user_token + "\n"));
  SearchClientOptions client_options;
  client_options.token = user_token;

  NAS_ASSIGN_OR_RETURN(
      auto coordinator,
      Child::Start(
          {FindBinary(o.bin_dir, "coordinator", "coordinator"), "--port=0", "--address=127.0.0.1",
           absl::StrCat("--tokens_file=", tokens_file), "--metrics_port=-1",
           absl::StrCat("--db=", o.out_dir, "/coordinator-db"),
           absl::StrCat("--latency_service=", ltarget), absl::StrCat("--lease_ms=", o.lease_ms),
           absl::StrCat("--sync=", o.sync ? "true" : "false"),
           absl::StrCat("--pipelined_commits=", o.pipelined_commits ? "true" : "false")},
          logs + "/coordinator.log"));
  NAS_ASSIGN_OR_RETURN(
      int cport, coordinator->WaitForPort(R"(listening on port ([0-9]+))", absl::Seconds(60)));
  std::string ctarget = absl::StrCat("127.0.0.1:", cport);

  int cores = static_cast<int>(std::thread::hardware_concurrency());
  int threads = o.threads_per_worker > 0 ? o.threads_per_worker : std::max(1, cores / o.workers);
  std::vector<std::unique_ptr<Child>> workers;
  for (int i = 0; i < o.workers; ++i) {
    NAS_ASSIGN_OR_RETURN(
        auto w,
        Child::Start(
            {FindBinary(o.bin_dir, "worker", "nas_worker"), absl::StrCat("--coordinator=", ctarget),
             absl::StrCat("--threads=", threads), absl::StrCat("--name=local-", i),
             absl::StrCat("--loader_threads=", o.loader_threads),
             absl::StrCat("--token_file=", worker_token_file),
             // This machine is the table's device: the final latency is measured here.
             absl::StrCat("--latency_device=", o.spec.device()),
             // The local user's own data_dir is a root of their workers.
             absl::StrCat("--data_roots=/usr/share/datasets",
                          o.spec.data_dir().empty() ? "" : "," + o.spec.data_dir()),
             absl::StrCat("--stats_file=", logs, "/worker-", i, ".tasks.jsonl")},
            absl::StrCat(logs, "/worker-", i, ".log")));
    workers.push_back(std::move(w));
  }
  NAS_ASSIGN_OR_RETURN(std::unique_ptr<SearchClient> client,
                       SearchClient::Connect(ctarget, client_options));
  NAS_RETURN_IF_ERROR(client->WaitForReady(absl::Seconds(30)));
  NAS_ASSIGN_OR_RETURN(std::string job, client->Submit(o.spec));
  if (o.progress) {
    std::fprintf(stderr,
                 "local service: latency service %s, coordinator %s, %d worker(s) x %d "
                 "thread(s); job %s; logs in %s\n",
                 ltarget.c_str(), ctarget.c_str(), o.workers, threads, job.c_str(), logs.c_str());
  }
  absl::StatusOr<std::string> md = FollowJob(ctarget, client_options, job, o.out_dir, o.progress);
  for (auto& w : workers) w->Stop();
  coordinator->Stop();
  latency->Stop();
  return md;
}

}  // namespace nas
