// nasctl: the user's command line for the search service (the coordinator's SearchService).
//
//   nasctl --coordinator=localhost:50051 submit --spec=job.json      # prints the job id
//   nasctl submit --device=local-cpu --search_epochs=3 --seed=1      # the spec from flags
//   nasctl list [--tenant=lab]     nasctl status J     nasctl watch J
//   nasctl cancel J                nasctl result J --out=results/J   # writes the result dir
//   nasctl delete J                # a job that ended: it and everything kept of it are removed
//   nasctl -o json status J        # -o json|yaml|table on list, status, watch, queue, result
//   nasctl help submit             # or `nasctl submit --help`: the command's flags and examples
//
// A spec file is JobSpec (proto/nas/search.proto) as JSON; unknown or mistyped fields are
// errors naming the field. Every JobSpec field (but owner) has a flag of its name; flags given on
// the command line override the file (cli/nasctl_spec.h). Exit codes (kUsage below) say how a
// call or a watched job ended: 0 done, 3 failed, 4 cancelled, 5 not found, 6 unauthenticated,
// 7 unavailable; `watch` reconnects after a coordinator restart for --reconnect_for.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/nasctl_output.h"
#include "cli/nasctl_spec.h"
#include "coordinator/search_client.h"

ABSL_FLAG(std::string, coordinator, "",
          "coordinator host:port (default: $NAS_COORDINATOR, else localhost:50051)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM certificates to trust when the coordinator speaks TLS (default: $NAS_TLS_CA)");
ABSL_FLAG(std::string, token_file, "",
          "file holding your bearer token (default: $NAS_TOKEN, else the file $NAS_TOKEN_FILE "
          "names, else none)");
ABSL_FLAG(std::string, output, "table", "read commands: table (default), json or yaml");
ABSL_FLAG(std::string, o, "", "short for --output");
ABSL_FLAG(absl::Duration, reconnect_for, absl::Minutes(5),
          "watch: how long to keep reconnecting once the coordinator is unreachable before "
          "giving up with exit code 7 (0: do not reconnect)");
ABSL_FLAG(absl::Duration, keepalive, absl::Seconds(30),
          "watch: gRPC keepalive ping interval on the watch connection, so that a coordinator "
          "or network gone silent is noticed (0: none). The coordinator accepts a ping every "
          "10 s at most, also between calls");
ABSL_FLAG(bool, dry_run, false, "submit: print the JobSpec that would be sent, send nothing");
ABSL_FLAG(std::string, out, "", "result: result directory (default results/<job>)");
// One flag per JobSpec field (proto/nas/search.proto), named as the field; a flag given on the
// command line overrides --spec's value (cli/nasctl_spec.h).
ABSL_FLAG(std::string, spec, "", "submit: JobSpec JSON file; the flags below override it");
ABSL_FLAG(std::string, space, "", "submit: search-space preset (ignored when space_json is set)");
ABSL_FLAG(std::string, space_json, "",
          "submit: a search-space JSON document, or @FILE to read it from FILE");
ABSL_FLAG(std::string, dataset, "", "submit: data set: fashion-mnist, mnist, cifar10");
ABSL_FLAG(std::string, data_dir, "",
          "submit: the data set's directory on the workers (empty: its default location)");
ABSL_FLAG(std::string, device, "", "submit: latency-service device whose table the job uses");
ABSL_FLAG(double, target_latency_ms, 0,
          "submit: target latency in ms (<= 0: target_fraction x E[lat] at uniform p)");
ABSL_FLAG(double, target_ms, 0, "submit: the same as --target_latency_ms (older name)");
ABSL_FLAG(double, target_fraction, 0, "submit: the target as a fraction of E[lat] (default 0.9)");
ABSL_FLAG(std::string, loss, "", "submit: add#linear (default), mul#log or none");
ABSL_FLAG(double, loss_lambda, 0, "submit: add#linear's lambda (default 0.1)");
ABSL_FLAG(int32_t, warmup_epochs, 0, "submit: warm-up epochs (default 1; -1: none)");
ABSL_FLAG(int32_t, search_epochs, 0, "submit: joint epochs (default 3)");
ABSL_FLAG(int32_t, train_epochs, 0,
          "submit: final training epochs (default 10; -1: no final training)");
ABSL_FLAG(int32_t, batch_size, 0, "submit: batch size (default 128)");
ABSL_FLAG(double, search_lr, 0, "submit: weight learning rate while searching (default 0.05)");
ABSL_FLAG(double, train_lr, 0, "submit: learning rate of the final training (default 0.1)");
ABSL_FLAG(double, arch_lr, 0, "submit: architecture learning rate (default 0.015)");
ABSL_FLAG(int32_t, arch_every, 0, "submit: an arch step every this many weight steps (default 5)");
ABSL_FLAG(std::string, arch_algo, "", "submit: gradient (default) or rl");
ABSL_FLAG(int64_t, valid_size, 0, "submit: validation images (default 5000)");
ABSL_FLAG(int64_t, train_subset, 0, "submit: training images used (0: all)");
ABSL_FLAG(int64_t, test_subset, 0, "submit: test images used (0: all)");
ABSL_FLAG(uint64_t, seed, 0, "submit: seed");
ABSL_FLAG(std::string, tenant, "",
          "submit: the job's tenant (with authentication, the caller's); list/queue: whose jobs");
ABSL_FLAG(int32_t, priority, 0, "submit: priority (higher runs first)");
ABSL_FLAG(int32_t, parallel_tasks, 0, "submit: weight tasks per round (default 1)");
ABSL_FLAG(int32_t, steps_per_task, 0, "submit: SGD steps per weight task (default 1)");
ABSL_FLAG(bool, no_baseline, false, "submit: skip training the baseline (largest) network");
ABSL_FLAG(double, label_smoothing, 0, "submit: label smoothing (default 0.1)");
ABSL_FLAG(int32_t, profile_threads, 0,
          "submit: threads of the final latency measurement (0: the table's)");
ABSL_FLAG(int32_t, chain_steps, 0,
          "submit: with one task per round, weight tasks a worker runs in a row as one chain "
          "(0: the coordinator's default, 8)");
ABSL_FLAG(int32_t, sampled_paths, 0,
          "submit: paths of the trained supernet evaluated with their inherited weights for the "
          "report's accuracy-latency view (0: the default, 16; -1: none)");
ABSL_FLAG(bool, stream_images, false,
          "submit with --dataset folder: the workers decode each batch as the steps ask for it "
          "instead of every image once into memory (bounded at 4 GiB of pixels)");
ABSL_FLAG(bool, skip_bad_files, false,
          "submit with --dataset folder: leave bad image files out (named in the workers' logs) "
          "instead of failing the job");

namespace {

// Exit codes: how a call, or a watched job, ended.
enum ExitCode {
  kExitDone = 0,             // the call succeeded; watch: the job is DONE
  kExitError = 1,            // any other error
  kExitUsage = 2,            // a bad command line
  kExitFailed = 3,           // watch: the job FAILED
  kExitCancelled = 4,        // watch: the job was CANCELLED
  kExitNotFound = 5,         // no such job (or another tenant's)
  kExitUnauthenticated = 6,  // no token, a bad one, or one without the right
  kExitUnavailable = 7,      // the coordinator could not be reached (watch: for --reconnect_for)
};

constexpr char kUsage[] =
    "nasctl [--coordinator=host:port] [-o table|json|yaml] COMMAND [JOB] [flags]\n"
    "\n"
    "commands:\n"
    "  submit            submit a job (--spec FILE and/or a flag per JobSpec field); prints its "
    "id\n"
    "  list              the jobs you may see\n"
    "  queue             the queue: tenants' usage, shares, quotas and active jobs\n"
    "  status JOB        one job's state and progress\n"
    "  watch JOB         follow a job until it ends; the exit code says how it ended\n"
    "  cancel JOB        cancel a job\n"
    "  delete JOB        remove a job that ended and everything kept of it\n"
    "  result JOB        write a finished job's result directory (--out DIR)\n"
    "  help [COMMAND]    this text, or a command's flags and examples (also COMMAND --help)\n"
    "\n"
    "-o/--output table|json|yaml (list, status, watch, queue, result, submit): json is protobuf's\n"
    "JSON mapping with the .proto's field names and every field (status: JobStatus; list:\n"
    "{\"jobs\": [JobStatus...]}; queue: GetQueueReply; watch: one JSON object per line, yaml: one\n"
    "document per status); yaml is the same tree. table (the default) is the text output.\n"
    "\n"
    "exit codes:\n"
    "  0  done: the call succeeded (watch: the job ended DONE)\n"
    "  1  another error\n"
    "  2  usage: a bad command line\n"
    "  3  failed: the watched job ended FAILED\n"
    "  4  cancelled: the watched job ended CANCELLED\n"
    "  5  not found: no such job (another tenant's jobs do not exist for you)\n"
    "  6  unauthenticated: no token, a bad one, or one without the right (PERMISSION_DENIED)\n"
    "  7  unavailable: the coordinator could not be reached (watch: not within --reconnect_for)\n"
    "\n"
    "common flags: --coordinator (default $NAS_COORDINATOR, else localhost:50051), --token_file\n"
    "(default $NAS_TOKEN, else the file $NAS_TOKEN_FILE), --tls_ca (default $NAS_TLS_CA).\n"
    "`nasctl --helpfull` lists every flag.\n";

struct CommandHelp {
  const char* name;
  const char* synopsis;
  const char* text;
  std::vector<const char*> flags;
  const char* examples;
};

const std::vector<CommandHelp>& Commands() {
  static const auto* commands = new std::vector<CommandHelp>{
      {"submit",
       "nasctl submit [--spec FILE] [--FIELD=VALUE ...] [--dry_run] [-o FORMAT]",
       "Submits a job and prints its id (-o json: {\"job_id\": ...}). The spec is --spec's JSON\n"
       "(JobSpec of proto/nas/search.proto; unset fields take `nas search`'s defaults), then\n"
       "every JobSpec field given as a flag of its name. --dry_run prints the JobSpec instead of\n"
       "sending it (as JSON, or -o yaml).",
       {"spec", "dry_run", "output"},
       "  nasctl submit --spec job.json\n"
       "  nasctl submit --spec job.json --seed 7 --priority 5     # flags override the file\n"
       "  nasctl submit --device local-cpu --space fashion-mnist --search_epochs 3 --no_baseline\n"
       "  nasctl submit --space_json @space.json --device pixel1 --target_latency_ms 80\n"
       "  nasctl submit --spec job.json --dry_run -o yaml          # what would be sent\n"},
      {"list",
       "nasctl list [--tenant T] [-o FORMAT]",
       "Lists the jobs you may see (an admin: every tenant's, or --tenant's).",
       {"tenant", "output"},
       "  nasctl list\n"
       "  nasctl list -o json | python3 -c 'import json,sys; "
       "print(len(json.load(sys.stdin)[\"jobs\"]))'\n"},
      {"queue",
       "nasctl queue [--tenant T] [-o FORMAT]",
       "The queue: each tenant's usage, share, fair share, quotas and active jobs (yours; an\n"
       "admin's: every tenant with active jobs).",
       {"tenant", "output"},
       "  nasctl queue\n"
       "  nasctl queue --tenant vision -o yaml\n"},
      {"status",
       "nasctl status JOB [-o FORMAT]",
       "One job's state and progress (-o json: JobStatus, every field).",
       {"output"},
       "  nasctl status J\n"
       "  nasctl status J -o json | python3 -c 'import json,sys; "
       "print(json.load(sys.stdin)[\"state\"])'\n"},
      {"watch",
       "nasctl watch JOB [-o FORMAT] [--reconnect_for D] [--keepalive D]",
       "Prints the job's status each time it changes until the job ends; the exit code says how:\n"
       "0 DONE, 3 FAILED, 4 CANCELLED, 5 not found, 6 unauthenticated, 7 unavailable. The\n"
       "connection sends keepalive pings; when the coordinator goes away (a restart, a broken\n"
       "stream) watch retries with backoff, re-reads the job and follows it again, and gives up\n"
       "with 7 once it could not reach the coordinator for --reconnect_for.",
       {"output", "reconnect_for", "keepalive"},
       "  nasctl watch J && echo done\n"
       "  nasctl watch J -o json | tail -n 1                 # one JobStatus per line\n"
       "  nasctl watch J --reconnect_for 30s; echo \"exit $?\"\n"},
      {"cancel",
       "nasctl cancel JOB",
       "Cancels a job (it ends CANCELLED).",
       {},
       "  nasctl cancel J\n"},
      {"delete",
       "nasctl delete JOB",
       "Removes a job that ended (DONE, FAILED, CANCELLED) and everything the coordinator keeps\n"
       "of it; a job that has not ended must be cancelled first.",
       {},
       "  nasctl cancel J && nasctl delete J\n"},
      {"result",
       "nasctl result JOB [--out DIR] [-o FORMAT]",
       "Writes a finished job's result directory (architecture.json, report.md, weights, ...)\n"
       "and prints report.md (-o json|yaml: JobResult without its documents, with\n"
       "result_directory and the parsed report).",
       {"out", "output"},
       "  nasctl result J --out results/J\n"
       "  nasctl result J -o json | python3 -c 'import json,sys; "
       "print(json.load(sys.stdin)[\"test_accuracy\"])'\n"},
  };
  return *commands;
}

const CommandHelp* FindCommand(const std::string& name) {
  for (const CommandHelp& c : Commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

std::string FlagLine(const std::string& name, bool show_default = true) {
  const absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
  if (f == nullptr) return "";
  std::string def = f->DefaultValue();
  return absl::StrFormat("  --%s%s\n      %s\n", name,
                         def.empty() || !show_default ? "" : absl::StrCat(" (default ", def, ")"),
                         f->Help());
}

void PrintCommandHelp(const CommandHelp& c) {
  std::string out = absl::StrCat("usage: ", c.synopsis, "\n\n", c.text, "\n\nflags:\n");
  for (const char* f : c.flags) absl::StrAppend(&out, FlagLine(f));
  if (std::string(c.name) == "submit") {
    absl::StrAppend(&out,
                    "\nJobSpec fields (each overrides --spec's value; owner is set by the "
                    "coordinator):\n");
    for (const std::string& f : nas::SpecFlagNames()) absl::StrAppend(&out, FlagLine(f, false));
    absl::StrAppend(&out, FlagLine("target_ms", false));
  }
  absl::StrAppend(&out, "\nexamples:\n", c.examples,
                  "\nglobal flags: --coordinator, --token_file, --tls_ca (`nasctl help`).\n");
  std::fputs(out.c_str(), stdout);
}

int ExitCodeFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return kExitDone;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kExitUnauthenticated;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    default:
      return kExitError;
  }
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "nasctl: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
               std::string(s.message()).c_str());
  return ExitCodeFor(s);
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "nasctl: %s\n(`nasctl help` for the commands)\n", message.c_str());
  return kExitUsage;
}

// Where a job stands in the queue, when it waits.
std::string Waiting(const nas::JobStatus& s) {
  std::string out;
  if (s.queue_position() > 0) absl::StrAppend(&out, " | queue #", s.queue_position());
  if (s.estimated_start_unix_ms() > 0) {
    absl::StrAppend(
        &out, " | starts ~",
        absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::FromUnixMillis(s.estimated_start_unix_ms()),
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

// Prints a message as json or yaml; the exit code.
int Print(const google::protobuf::Message& m, nas::OutputFormat f) {
  auto text = nas::FormatMessage(m, f);
  if (!text.ok()) return Fail(text.status());
  std::fputs(text->c_str(), stdout);
  return kExitDone;
}

// The names of the flags given on the command line (--name, --name=v, -name v, --noname).
std::set<std::string> FlagsGiven(int argc, char** argv) {
  std::set<std::string> names;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    a = a.substr(a[1] == '-' ? 2 : 1);
    a = a.substr(0, a.find('='));
    names.insert(a);
    if (a.rfind("no", 0) == 0) names.insert(a.substr(2));  // --nono_baseline
  }
  return names;
}

// The JobSpec from --spec and the JobSpec flags given on the command line.
absl::StatusOr<nas::JobSpec> SpecFromFlags(const std::set<std::string>& given) {
  std::map<std::string, std::string> overrides;
  for (const std::string& name : nas::SpecFlagNames()) {
    if (given.count(name) == 0) continue;
    overrides[name] = absl::FindCommandLineFlag(name)->CurrentValue();
  }
  if (given.count("target_ms") > 0 && given.count("target_latency_ms") == 0) {
    overrides["target_latency_ms"] = absl::FindCommandLineFlag("target_ms")->CurrentValue();
  }
  return nas::BuildJobSpec(absl::GetFlag(FLAGS_spec), overrides);
}

bool Ended(const nas::JobStatus& s) {
  return s.state() == "DONE" || s.state() == "FAILED" || s.state() == "CANCELLED";
}

int EndCode(const nas::JobStatus& s) {
  if (s.state() == "FAILED") return kExitFailed;
  if (s.state() == "CANCELLED") return kExitCancelled;
  return kExitDone;
}

// A broken stream or an unreachable coordinator: worth another try.
bool Transient(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

// `nasctl watch`: follows the job across coordinator restarts; the exit code says how it ended.
int Watch(nas::SearchClient& c, const std::string& job, nas::OutputFormat format,
          absl::Duration reconnect_for) {
  std::string last_shown;
  nas::JobStatus last;
  auto show = [&](const nas::JobStatus& s) {
    last = s;
    std::string key = s.SerializeAsString();
    if (key == last_shown) return;  // the same status again after a reconnect
    last_shown = key;
    if (format == nas::OutputFormat::kTable) {
      std::printf("%s\n", Line(s).c_str());
    } else {
      auto v = nas::MessageToJsonValue(s);
      if (!v.ok()) return;
      if (format == nas::OutputFormat::kJson) {
        std::printf("%s\n",
                    v->dump(-1, ' ', false, nas::OrderedJson::error_handler_t::replace).c_str());
      } else {
        std::printf("---\n%s", nas::JsonToYaml(*v).c_str());
      }
    }
    std::fflush(stdout);
  };
  const absl::Duration kFirstBackoff = absl::Milliseconds(100);
  const absl::Duration kMaxBackoff = absl::Seconds(2);
  absl::Duration backoff = kFirstBackoff;
  absl::Time give_up = absl::Now() + reconnect_for;
  bool reconnecting = false;
  while (true) {
    absl::Status s;
    if (reconnecting) {  // re-read the job: it may have ended while we were away
      auto g = c.Get(job);
      s = g.status();
      if (g.ok()) {
        std::fprintf(stderr, "nasctl: watch %s: reconnected\n", job.c_str());
        reconnecting = false;
        backoff = kFirstBackoff;
        give_up = absl::Now() + reconnect_for;
        show(*g);
        if (Ended(*g)) return EndCode(*g);
      }
    }
    if (s.ok()) {
      bool got = false;
      s = c.Watch(job, [&](const nas::JobStatus& st) {
        got = true;
        show(st);
        return true;
      });
      if (got && Ended(last)) return EndCode(last);
      if (got) {
        backoff = kFirstBackoff;
        give_up = absl::Now() + reconnect_for;
      }
      if (s.ok()) s = absl::UnavailableError("the watch stream ended before the job did");
    }
    if (!Transient(s)) return Fail(s);
    if (absl::Now() + backoff > give_up) {
      std::fprintf(stderr, "nasctl: watch %s: gave up reconnecting after %s\n", job.c_str(),
                   absl::FormatDuration(reconnect_for).c_str());
      Fail(s);
      return kExitUnavailable;
    }
    if (!reconnecting) {
      std::fprintf(stderr, "nasctl: watch %s: %s: %s; reconnecting (for up to %s)\n", job.c_str(),
                   absl::StatusCodeToString(s.code()).c_str(), std::string(s.message()).c_str(),
                   absl::FormatDuration(reconnect_for).c_str());
      reconnecting = true;
    }
    absl::SleepFor(backoff);
    backoff = std::min(2 * backoff, kMaxBackoff);
  }
}

// `nasctl result -o json|yaml`: JobResult without its documents, plus where they were written
// and the parsed report.
int PrintResultSummary(const nas::JobResult& r, const std::string& dir, nas::OutputFormat f) {
  nas::JobResult summary = r;
  for (auto* field : {summary.mutable_report_json(), summary.mutable_architecture_json(),
                      summary.mutable_network_json(), summary.mutable_space_json(),
                      summary.mutable_latency_table_json(), summary.mutable_spec_json(),
                      summary.mutable_report_html()}) {
    field->clear();
  }
  summary.clear_history();
  auto v = nas::MessageToJsonValue(summary);
  if (!v.ok()) return Fail(v.status());
  for (const char* documents : {"report_json", "architecture_json", "network_json", "space_json",
                                "latency_table_json", "spec_json", "history", "report_html"}) {
    v->erase(documents);
  }
  (*v)["result_directory"] = dir;
  nas::OrderedJson report =
      nas::OrderedJson::parse(r.report_json(), nullptr, /*allow_exceptions=*/false);
  if (!report.is_discarded()) (*v)["report"] = report;
  std::fputs(nas::FormatJson(*v, f).c_str(), stdout);
  return kExitDone;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // --help / -h after a command (or `nasctl help CMD`) is the command's help, not absl's list of
  // every flag; --helpfull stays absl's.
  bool want_help = false;
  std::vector<char*> kept;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-help") == 0 ||
                  std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--h") == 0)) {
      want_help = true;
      continue;
    }
    kept.push_back(argv[i]);
  }
  const std::set<std::string> given = FlagsGiven(argc, argv);
  std::vector<char*> args = absl::ParseCommandLine(static_cast<int>(kept.size()), kept.data());
  std::string cmd = args.size() > 1 ? args[1] : "";
  if (cmd == "help") {
    want_help = true;
    cmd = args.size() > 2 ? args[2] : "";
  }
  if (want_help) {
    if (cmd.empty()) {
      std::fputs(kUsage, stdout);
      return kExitDone;
    }
    const CommandHelp* c = FindCommand(cmd);
    if (c == nullptr) return Usage(absl::StrCat("unknown command \"", cmd, "\""));
    PrintCommandHelp(*c);
    return kExitDone;
  }
  if (cmd.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  if (FindCommand(cmd) == nullptr) return Usage(absl::StrCat("unknown command \"", cmd, "\""));
  std::string job = args.size() > 2 ? args[2] : "";
  std::string output = given.count("o") > 0 ? absl::GetFlag(FLAGS_o) : absl::GetFlag(FLAGS_output);
  auto format = nas::ParseOutputFormat(output);
  if (!format.ok()) return Usage(std::string(format.status().message()));

  if (cmd == "submit" && absl::GetFlag(FLAGS_dry_run)) {
    auto spec = SpecFromFlags(given);
    if (!spec.ok()) return Fail(spec.status());
    return Print(*spec, *format == nas::OutputFormat::kYaml ? *format : nas::OutputFormat::kJson);
  }
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
  if (cmd == "watch") {
    client_options.keepalive_time = absl::GetFlag(FLAGS_keepalive);
    client_options.max_reconnect_backoff = absl::Seconds(1);
  }
  auto client = nas::SearchClient::Connect(coordinator, client_options);
  if (!client.ok()) return Fail(client.status());
  nas::SearchClient& c = **client;
  if (cmd == "submit") {
    auto spec = SpecFromFlags(given);
    if (!spec.ok()) return Fail(spec.status());
    auto id = c.Submit(*spec);
    if (!id.ok()) return Fail(id.status());
    if (*format != nas::OutputFormat::kTable) {
      nas::SubmitJobReply reply;
      reply.set_job_id(*id);
      return Print(reply, *format);
    }
    std::printf("%s\n", id->c_str());
    return kExitDone;
  }
  if (cmd == "list") {
    auto jobs = c.List(absl::GetFlag(FLAGS_tenant));
    if (!jobs.ok()) return Fail(jobs.status());
    if (*format != nas::OutputFormat::kTable) {
      nas::ListJobsReply reply;
      for (const nas::JobStatus& s : *jobs) *reply.add_jobs() = s;
      return Print(reply, *format);
    }
    for (const nas::JobStatus& s : *jobs) std::printf("%s\n", Line(s).c_str());
    return kExitDone;
  }
  if (cmd == "queue") {
    auto q = c.Queue(absl::GetFlag(FLAGS_tenant));
    if (!q.ok()) return Fail(q.status());
    if (*format != nas::OutputFormat::kTable) return Print(*q, *format);
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
    return kExitDone;
  }
  if (job.empty()) return Usage(absl::StrCat(cmd, ": a job id is required"));
  if (cmd == "status") {
    auto s = c.Get(job);
    if (!s.ok()) return Fail(s.status());
    if (*format != nas::OutputFormat::kTable) return Print(*s, *format);
    std::printf("%s\n", Line(*s).c_str());
    return kExitDone;
  }
  if (cmd == "watch") return Watch(c, job, *format, absl::GetFlag(FLAGS_reconnect_for));
  if (cmd == "cancel") {
    absl::Status s = c.Cancel(job);
    return s.ok() ? kExitDone : Fail(s);
  }
  if (cmd == "delete") {
    absl::Status s = c.Delete(job);
    return s.ok() ? kExitDone : Fail(s);
  }
  // result
  auto r = c.Result(job);
  if (!r.ok()) return Fail(r.status());
  std::string out = absl::GetFlag(FLAGS_out).empty() ? "results/" + job : absl::GetFlag(FLAGS_out);
  auto md = nas::WriteResultDirectory(c, *r, out);
  if (!md.ok()) return Fail(md.status());
  if (*format != nas::OutputFormat::kTable) return PrintResultSummary(*r, out, *format);
  std::printf("%s\nresult directory: %s\n", md->c_str(), out.c_str());
  return kExitDone;
}
