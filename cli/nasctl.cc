// nasctl: the user's command line for the search service (the coordinator's SearchService).
//
//   nasctl --coordinator=localhost:50051 submit --spec=job.json      # prints the job id
//   nasctl submit --device=local-cpu --search_epochs=3 --seed=1      # the spec from flags
//   nasctl list [--tenant=lab]     nasctl status J     nasctl watch J
//   nasctl cancel J                nasctl result J --out=results/J   # writes the result dir
//   nasctl delete J                # a job that ended: it and everything kept of it are removed
//
// A spec file is JobSpec (proto/nas/search.proto) as JSON; unknown or mistyped fields are
// errors naming the field. Flags given on the command line override the file.
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/strings/str_format.h"
#include "coordinator/search_client.h"

ABSL_FLAG(std::string, coordinator, "",
          "coordinator host:port (default: $NAS_COORDINATOR, else localhost:50051)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM certificates to trust when the coordinator speaks TLS (default: $NAS_TLS_CA)");
ABSL_FLAG(std::string, token_file, "",
          "file holding your bearer token (default: $NAS_TOKEN, else the file $NAS_TOKEN_FILE "
          "names, else none)");
ABSL_FLAG(std::string, spec, "", "submit: JobSpec JSON file");
ABSL_FLAG(std::string, space, "", "submit: search-space preset");
ABSL_FLAG(std::string, dataset, "", "submit: data set");
ABSL_FLAG(std::string, device, "", "submit: latency-service device");
ABSL_FLAG(double, target_ms, 0, "submit: target latency (0: 0.9 x E[lat] at uniform p)");
ABSL_FLAG(std::string, loss, "", "submit: add#linear, mul#log or none");
ABSL_FLAG(int, warmup_epochs, 0, "submit: warm-up epochs");
ABSL_FLAG(int, search_epochs, 0, "submit: joint epochs");
ABSL_FLAG(int, train_epochs, 0, "submit: final training epochs");
ABSL_FLAG(int64_t, train_subset, 0, "submit: training images used (0: all)");
ABSL_FLAG(int64_t, test_subset, 0, "submit: test images used (0: all)");
ABSL_FLAG(int64_t, valid_size, 0, "submit: validation images");
ABSL_FLAG(int, parallel_tasks, 0, "submit: weight tasks per round");
ABSL_FLAG(int, chain_steps, 0,
          "submit: with one task per round, weight tasks a worker runs in a row as one chain "
          "(0: the coordinator's default, 8)");
ABSL_FLAG(uint64_t, seed, 0, "submit: seed");
ABSL_FLAG(std::string, tenant, "", "submit/list: tenant");
ABSL_FLAG(int, priority, 0, "submit: priority (higher first)");
ABSL_FLAG(std::string, out, "", "result: result directory (default results/<job>)");

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "nasctl: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
               std::string(s.message()).c_str());
  return 1;
}

// Where a job stands in the queue, when it waits.
std::string Waiting(const nas::JobStatus& s) {
  std::string out;
  if (s.queue_position() > 0) absl::StrAppend(&out, " | queue #", s.queue_position());
  if (s.estimated_start_unix_ms() > 0) {
    absl::StrAppend(&out, " | starts ~",
                    absl::FormatTime("%Y-%m-%d %H:%M UTC",
                                     absl::FromUnixMillis(s.estimated_start_unix_ms()),
                                     absl::UTCTimeZone()));
  }
  if (s.preemptions() > 0) absl::StrAppend(&out, " | preempted ", s.preemptions(), "x");
  if (!s.wait_reason().empty()) absl::StrAppend(&out, " | ", s.wait_reason());
  return out;
}

std::string Line(const nas::JobStatus& s) {
  return absl::StrFormat(
      "%-8s %-9s %-7s round %d (written %d) steps %d/%d arch %d loss %.3f "
      "val %.1f%% E[lat] %.3f ms (target %.3f)%s%s",
      s.job_id(), s.state(), s.phase(), s.round(), s.committed_round(), s.weight_steps(),
      s.total_weight_steps(), s.arch_steps(), s.train_loss(), 100 * s.val_accuracy(),
      s.expected_latency_ms(), s.target_latency_ms(), s.degraded() ? " DEGRADED" : "",
      s.message().empty() ? "" : absl::StrCat(" - ", s.message())) +
         Waiting(s);
}

absl::StatusOr<nas::JobSpec> SpecFromFlags() {
  nas::JobSpec spec;
  if (!absl::GetFlag(FLAGS_spec).empty()) {
    std::ifstream f(absl::GetFlag(FLAGS_spec));
    std::stringstream ss;
    ss << f.rdbuf();
    if (!f)
      return absl::NotFoundError(absl::StrCat("--spec: cannot read ", absl::GetFlag(FLAGS_spec)));
    auto st = google::protobuf::util::JsonStringToMessage(ss.str(), &spec);
    if (!st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--spec ", absl::GetFlag(FLAGS_spec), ": ", st.ToString()));
    }
  }
  if (!absl::GetFlag(FLAGS_space).empty()) spec.set_space(absl::GetFlag(FLAGS_space));
  if (!absl::GetFlag(FLAGS_dataset).empty()) spec.set_dataset(absl::GetFlag(FLAGS_dataset));
  if (!absl::GetFlag(FLAGS_device).empty()) spec.set_device(absl::GetFlag(FLAGS_device));
  if (absl::GetFlag(FLAGS_target_ms) > 0)
    spec.set_target_latency_ms(absl::GetFlag(FLAGS_target_ms));
  if (!absl::GetFlag(FLAGS_loss).empty()) spec.set_loss(absl::GetFlag(FLAGS_loss));
  if (absl::GetFlag(FLAGS_warmup_epochs) != 0)
    spec.set_warmup_epochs(absl::GetFlag(FLAGS_warmup_epochs));
  if (absl::GetFlag(FLAGS_search_epochs) != 0)
    spec.set_search_epochs(absl::GetFlag(FLAGS_search_epochs));
  if (absl::GetFlag(FLAGS_train_epochs) != 0)
    spec.set_train_epochs(absl::GetFlag(FLAGS_train_epochs));
  if (absl::GetFlag(FLAGS_train_subset) != 0)
    spec.set_train_subset(absl::GetFlag(FLAGS_train_subset));
  if (absl::GetFlag(FLAGS_test_subset) != 0) spec.set_test_subset(absl::GetFlag(FLAGS_test_subset));
  if (absl::GetFlag(FLAGS_valid_size) != 0) spec.set_valid_size(absl::GetFlag(FLAGS_valid_size));
  if (absl::GetFlag(FLAGS_parallel_tasks) != 0)
    spec.set_parallel_tasks(absl::GetFlag(FLAGS_parallel_tasks));
  if (absl::GetFlag(FLAGS_chain_steps) != 0) spec.set_chain_steps(absl::GetFlag(FLAGS_chain_steps));
  if (absl::GetFlag(FLAGS_seed) != 0) spec.set_seed(absl::GetFlag(FLAGS_seed));
  if (!absl::GetFlag(FLAGS_tenant).empty()) spec.set_tenant(absl::GetFlag(FLAGS_tenant));
  if (absl::GetFlag(FLAGS_priority) != 0) spec.set_priority(absl::GetFlag(FLAGS_priority));
  return spec;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "nasctl [--coordinator=host:port] <submit|list|queue|status J|watch J|cancel J|delete J|"
      "result J> [flags]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  std::string cmd = args[1];
  std::string job = args.size() > 2 ? args[2] : "";
  std::string coordinator = absl::GetFlag(FLAGS_coordinator);
  if (coordinator.empty()) {
    const char* env = std::getenv("NAS_COORDINATOR");
    coordinator = env != nullptr && *env != '\0' ? env : "localhost:50051";
  }
  nas::SearchClientOptions client_options;
  auto token = nas::ClientToken(absl::GetFlag(FLAGS_token_file));
  if (!token.ok()) return Fail(token.status());
  client_options.token = *token;
  client_options.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  if (const char* ca = std::getenv("NAS_TLS_CA"); client_options.tls_ca.empty() && ca != nullptr) {
    client_options.tls_ca = ca;
  }
  auto client = nas::SearchClient::Connect(coordinator, client_options);
  if (!client.ok()) return Fail(client.status());
  nas::SearchClient& c = **client;
  if (cmd == "submit") {
    auto spec = SpecFromFlags();
    if (!spec.ok()) return Fail(spec.status());
    auto id = c.Submit(*spec);
    if (!id.ok()) return Fail(id.status());
    std::printf("%s\n", id->c_str());
    return 0;
  }
  if (cmd == "list") {
    auto jobs = c.List(absl::GetFlag(FLAGS_tenant));
    if (!jobs.ok()) return Fail(jobs.status());
    for (const nas::JobStatus& s : *jobs) std::printf("%s\n", Line(s).c_str());
    return 0;
  }
  if (cmd == "queue") {
    auto q = c.Queue(absl::GetFlag(FLAGS_tenant));
    if (!q.ok()) return Fail(q.status());
    std::printf("policy %s, %d live worker(s)\n", q->policy().c_str(), q->live_workers());
    auto limit = [](double v) { return v > 0 ? absl::StrCat(v) : std::string("-"); };
    for (const nas::TenantQueue& t : q->tenants()) {
      std::printf(
          "\ntenant %s: weight %g, usage %.1f worker-s (share %.1f%%, fair share %.1f%%), "
          "workers %d/%s, jobs running %d/%s queued %d, window %.2f/%s worker-h\n",
          t.tenant().c_str(), t.weight(), t.usage_worker_seconds(), 100 * t.share(),
          100 * t.fair_share(), t.workers_held(), limit(t.max_workers()).c_str(), t.running_jobs(),
          limit(t.max_running_jobs()).c_str(), t.queued_jobs(), t.window_worker_hours(),
          limit(t.worker_hours_per_window()).c_str());
      for (const nas::JobStatus& s : t.jobs()) {
        std::printf("  %-20s %-9s prio %d workers %d%s\n", s.job_id().c_str(), s.state().c_str(),
                    s.priority(), s.workers_held(), Waiting(s).c_str());
      }
    }
    return 0;
  }
  if (job.empty()) {
    std::fprintf(stderr, "nasctl %s: a job id is required\n", cmd.c_str());
    return 2;
  }
  if (cmd == "status") {
    auto s = c.Get(job);
    if (!s.ok()) return Fail(s.status());
    std::printf("%s\n", Line(*s).c_str());
    return 0;
  }
  if (cmd == "watch") {
    absl::Status s = c.Watch(job, [](const nas::JobStatus& st) {
      std::printf("%s\n", Line(st).c_str());
      std::fflush(stdout);
      return true;
    });
    return s.ok() ? 0 : Fail(s);
  }
  if (cmd == "cancel") {
    absl::Status s = c.Cancel(job);
    return s.ok() ? 0 : Fail(s);
  }
  if (cmd == "delete") {
    absl::Status s = c.Delete(job);
    return s.ok() ? 0 : Fail(s);
  }
  if (cmd == "result") {
    auto r = c.Result(job);
    if (!r.ok()) return Fail(r.status());
    std::string out =
        absl::GetFlag(FLAGS_out).empty() ? "results/" + job : absl::GetFlag(FLAGS_out);
    auto md = nas::WriteResultDirectory(c, *r, out);
    if (!md.ok()) return Fail(md.status());
    std::printf("%s\nresult directory: %s\n", md->c_str(), out.c_str());
    return 0;
  }
  std::fprintf(stderr, "nasctl: unknown command \"%s\"\n", cmd.c_str());
  return 2;
}
