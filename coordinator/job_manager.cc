#include "coordinator/job_manager.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/commit_pipeline.h"
#include "coordinator/job_spec.h"
#include "coordinator/lease_table.h"
#include "coordinator/metrics.h"
#include "coordinator/param_store.h"
#include "coordinator/scheduler.h"
#include "coordinator/tenant_ledger.h"
#include "core/architecture.h"
#include "core/json_fields.h"
#include "core/param_names.h"
#include "core/search_defaults.h"
#include "core/path_sample.h"
#include "core/report_html.h"
#include "core/search_driver.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "nas/coordinator.pb.h"
#include "proto/task_label.h"
#include "proto/tensor_codec.h"

namespace nas {

namespace {

int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

bool ValidJobState(const std::string& s) {
  return s == "QUEUED" || s == "PREPARING" || s == "RUNNING" || s == "FINAL" || s == "DONE" ||
         s == "FAILED" || s == "CANCELLED";
}

// One line on stderr, timestamped: the coordinator's operational log.
void Log(const std::string& message) {
  absl::FPrintF(stderr, "%s coordinator: %s\n",
                absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::Now(), absl::UTCTimeZone()), message);
}

// `n` characters of [a-z0-9] from a generator seeded by the operating system (absl::BitGen:
// Randen, a cryptographic-strength generator): ids and lease ids that cannot be guessed.
std::string RandomSuffix(int n) {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out(n, ' ');
  absl::MutexLock lock(&mu);
  for (char& c : out) c = kAlphabet[absl::Uniform<size_t>(*gen, 0, sizeof(kAlphabet) - 1)];
  return out;
}

bool Terminal(const std::string& s) { return s == "DONE" || s == "FAILED" || s == "CANCELLED"; }

}  // namespace

struct JobManager::Lease {
  // Lease id and deadline set while leased. Its tensor list is kept apart (`listed`) and added
  // to the copy a worker is handed: a round's tasks list ~230 tensors each, and building that
  // list once instead of building and then copying it halves the coordinator's allocations
  // for it.
  Task task;
  std::vector<TensorListing> listed;  // Task.tensors, in order
  LeaseSlot slot;                     // queued, leased (to whom, until when), done
  // Tensors the task may fetch and return: views of the keys of its job's store (stable: a
  // store entry is never erased while a task lists it).
  absl::flat_hash_set<absl::string_view> names;
  std::optional<CompletedTask> result;
};

struct JobManager::Job {
  JobRecord rec;
  SearchSpace space;
  LatencyTable table;
  LatencyModel latency;
  std::optional<SearchDriver> driver;
  // The parameter store: tensors, versions, owner groups, the changed set.
  ParamStore params;
  enum class Stage { kNone, kInit, kWeights, kArch, kFinal } stage = Stage::kNone;
  std::vector<Lease> tasks;
  // The tasks of the round just merged, with what is left of their results: freed by the
  // thread that completed the round once it has released the lock, not by the round's planning
  // while every worker waits (~25,000 small messages a round of 64 tasks). Only destroyed,
  // never read: their `listed` views may outlive the store keys they name (params.Clear).
  std::vector<Lease> retired;
  void RetireTasks() {
    if (retired.empty()) {
      retired.swap(tasks);
    } else {
      for (Lease& l : tasks) retired.push_back(std::move(l));
    }
    tasks.clear();
  }
  std::vector<WeightTaskSpec> wspecs;
  std::vector<ArchTaskSpec> aspecs;
  std::vector<std::string> history;
  // Preparation (latency fetch) retries.
  bool degraded = false;
  bool preparing = false;
  absl::Time next_try = absl::InfinitePast();
  absl::Duration backoff = absl::ZeroDuration();
  int64_t change = 0;            // bumped on every visible change
  int64_t committed_round = 0;   // the last round written (JobStatus.committed_round)
  int64_t steps_in_metrics = 0;  // weight steps counted in nas_weight_steps_total so far
  std::string persisted_record;  // the record as last written to the store
  // Deletion: set while the job is removed from the store (nothing new starts on it); threads
  // waiting in AwaitCommits with the job (it is erased only at 0); after a failed store delete,
  // when retention tries it again.
  bool deleting = false;
  mutable int awaiting_commits = 0;
  absl::Time retry_delete_at = absl::InfinitePast();
  int64_t weight_steps() const { return driver ? driver->weight_steps() : 0; }
  // The queue.
  int tenant_index = 0;      // in the ledger
  std::string resume_state;  // QUEUED: the state it continues in once admitted
  bool yielding = false;     // preempted: goes QUEUED at its round boundary
  int queue_position = 0;    // QUEUED: 1 = its tenant's next to be admitted
  int64_t estimated_start_ms = 0;
  bool AtRoundBoundary() const {
    if (stage == Stage::kArch || preparing) return false;
    for (const Lease& l : tasks) {
      if (l.slot.state != LeaseSlot::State::kQueued) return false;
    }
    return true;
  }
  int WorkersHeld() const {
    int n = 0;
    for (const Lease& l : tasks) n += l.slot.state == LeaseSlot::State::kLeased ? 1 : 0;
    return n;
  }
};

struct JobManager::Ticker {
  std::thread thread;
};

namespace {

RoundGauges GaugesOf(const SearchDriver& d, const JobRecord& rec) {
  return {d.ema_loss(), d.last_arch_accuracy(), d.ExpectedLatency(), rec.target_latency_ms(),
          d.alpha().MeanEntropy()};
}

void RecordRound(CoordinatorMetrics* metrics, const std::string& job_id, double commit_seconds,
                 const RoundGauges& g) {
  if (metrics == nullptr) return;
  metrics->Round(job_id, commit_seconds, g.train_loss, g.val_accuracy, g.expected_ms, g.target_ms,
                 g.entropy, g.weight_steps);
}

}  // namespace

JobManager::JobManager(CheckpointStore* store, LatencyProvider* latency, JobManagerOptions options)
    : store_(store),
      latency_(latency),
      options_(std::move(options)),
      scheduler_(options_.scheduler == "priority"
                     ? std::unique_ptr<Scheduler>(std::make_unique<PriorityScheduler>())
                     : std::unique_ptr<Scheduler>(std::make_unique<FairShareScheduler>())) {}

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(CheckpointStore* store,
                                                               LatencyProvider* latency,
                                                               JobManagerOptions options) {
  std::unique_ptr<JobManager> m(new JobManager(store, latency, std::move(options)));
  NAS_ASSIGN_OR_RETURN(m->incarnation_, store->NextIncarnation());
  {
    const JobManagerOptions& o = m->options_;
    LeaseTable::Options lo;
    lo.lease = o.lease;
    lo.heartbeat = o.heartbeat;
    lo.worker_timeout = o.worker_timeout;
    lo.forget_worker_after = o.forget_worker_after;
    lo.max_workers = o.max_workers;
    lo.clock = o.clock;
    absl::MutexLock lock(&m->mu_);
    m->leases_ = std::make_unique<LeaseTable>(std::move(lo), m->incarnation_);
    QuotaConfig defaults;
    m->ledger_ = std::make_unique<TenantLedger>(defaults.half_life, defaults.window);
    m->RefreshQuotas();
  }
  {
    // The usage as last written; a store from before the queue has none.
    absl::StatusOr<std::string> usage = store->GetTenantUsage();
    absl::MutexLock lock(&m->mu_);
    if (usage.ok()) {
      absl::Status s = m->ledger_->Restore(*usage, "stored tenants' usage");
      if (!s.ok()) {
        // Usage only steers the fair share: start from zero rather than refuse to start.
        Log(absl::StrCat("the stored tenants' usage is unreadable (", s.message(),
                         "); the fair share starts from zero usage"));
      }
      m->usage_version_ = m->ledger_->version();
    } else if (usage.status().code() != absl::StatusCode::kNotFound) {
      return usage.status();
    }
  }
  NAS_RETURN_IF_ERROR(m->Recover());
  {
    absl::MutexLock lock(&m->mu_);
    m->RunAdmission();
    int active = 0;
    for (const auto& [id, j] : m->jobs_) active += Terminal(j->rec.state()) ? 0 : 1;
    Log(absl::StrCat("incarnation ", m->incarnation_, ": recovered ", m->jobs_.size(), " job(s), ",
                     active, " active",
                     m->recovery_failures_ > 0
                         ? absl::StrCat(", ", m->recovery_failures_,
                                        " FAILED in recovery (their messages say why)")
                         : ""));
  }
  if (m->options_.pipelined_commits) {
    CommitPipeline::Options po;
    po.store = store;
    po.mu = &m->mu_;
    po.changed = &m->changed_;
    po.on_written = [self = m.get()](const CommitPipeline::Written& w) { self->OnWritten(w); };
    auto pipeline = std::make_unique<CommitPipeline>(std::move(po));
    absl::MutexLock lock(&m->mu_);
    m->commits_ = std::move(pipeline);
  }
  m->ticker_ = std::make_unique<Ticker>();
  JobManager* self = m.get();
  m->ticker_->thread = std::thread([self] {
    for (int64_t tick = 0;; ++tick) {
      {
        absl::MutexLock lock(&self->mu_);
        if (self->stopping_) return;
      }
      self->Tick();
      // The store's footprint once a second (scrapes are seconds apart), outside the job lock:
      // it asks RocksDB and lists the store's directory.
      if (self->options_.metrics != nullptr && tick % 10 == 0) {
        CheckpointStore::Footprint f = self->store_->footprint();
        self->options_.metrics->SetCheckpointFootprint(static_cast<double>(f.tensor_memtable_bytes),
                                                       static_cast<double>(f.wal_bytes));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  return m;
}

void JobManager::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  changed_.SignalAll();
}

JobManager::~JobManager() {
  Stop();
  if (ticker_ && ticker_->thread.joinable()) ticker_->thread.join();
  // The writer finishes what was queued before it stops (its reports need the jobs).
  commits_.reset();
}

void JobManager::OnWritten(const CommitPipeline::Written& w) {
  Job* j = FindJob(w.job_id);
  if (j == nullptr) return;
  if (!w.status.ok()) {
    Log(absl::StrCat("job ", j->rec.job_id(), ": checkpoint of round ", w.round,
                     " failed: ", w.status.message()));
    if (!Terminal(j->rec.state())) {
      Fail(*j, absl::StrCat("checkpoint of round ", w.round, ": ", w.status.message()));
    }
  } else {
    j->committed_round = std::max(j->committed_round, w.round);
    ++j->change;
    RecordRound(options_.metrics, j->rec.job_id(), w.seconds, w.gauges);
  }
}

void JobManager::AwaitCommits(const Job& job) {
  if (commits_ == nullptr) return;
  ++job.awaiting_commits;
  commits_->Await(job.rec.job_id());
  --job.awaiting_commits;
}

JobManager::Job* JobManager::FindJob(const std::string& id) const {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

absl::Status JobManager::PersistRecord(Job& job) {
  AwaitCommits(job);
  ++job.change;
  changed_.SignalAll();
  std::string record = job.rec.SerializeAsString();
  NAS_RETURN_IF_ERROR(store_->PutJob(job.rec.job_id(), record));
  job.persisted_record = std::move(record);
  return absl::OkStatus();
}

void JobManager::Fail(Job& job, const std::string& message) {
  job.rec.set_state("FAILED");
  job.rec.set_message(message);
  const absl::Time now = options_.clock();
  job.rec.set_finished_unix_ms(UnixMs(now));
  for (Lease& l : job.tasks) {
    Charge(job, l.slot, now);
    leases_->Release(l.task.lease_id());
  }
  job.tasks.clear();
  job.stage = Job::Stage::kNone;
  job.yielding = false;
  absl::Status s = PersistRecord(job);
  // The in-memory state is authoritative until the next restart, which fails the job again.
  if (!s.ok()) Log(absl::StrCat("job ", job.rec.job_id(), ": cannot store FAILED: ", s.message()));
  UpdateGauges();
}

// ---------------------------------------------------------------------------------------------
// Recovery

absl::Status JobManager::Recover() {
  // The list itself must be whole: a store that cannot say which jobs it holds is an error
  // (naming the file), never a start with fewer jobs.
  NAS_ASSIGN_OR_RETURN(auto records, store_->ListJobs());
  absl::MutexLock lock(&mu_);
  int failed = 0;
  for (auto& [id, bytes] : records) {
    auto job = std::make_unique<Job>();
    Job& j = *job;
    uint64_t n = 0;
    // "j<number>" (stores before the random suffix) or "j<number>-<suffix>".
    absl::string_view digits = absl::string_view(id).substr(1);
    digits = digits.substr(0, digits.find('-'));
    if (absl::SimpleAtoi(digits, &n)) next_job_ = std::max(next_job_, n);
    jobs_[id] = std::move(job);
    if (!j.rec.ParseFromString(bytes) || j.rec.job_id() != id || !ValidJobState(j.rec.state())) {
      // Kept in memory as FAILED, its stored bytes left as they are for whoever investigates.
      j.rec.Clear();
      j.rec.set_job_id(id);
      j.rec.set_state("FAILED");
      j.rec.set_message(absl::StrCat("recovery: the stored job record (", bytes.size(),
                                     " bytes) is corrupt; it was left in the store as it is"));
      Log(absl::StrCat("job ", id, ": ", j.rec.message()));
      ++failed;
      continue;
    }
    j.persisted_record = bytes;
    j.tenant_index = ledger_->Index(j.rec.spec().tenant());
    absl::Status s = RecoverJob(j);
    if (!s.ok()) {
      std::string why = absl::StrCat("recovery: ", s.message());
      Log(absl::StrCat("job ", id, ": ", why, " (marked FAILED; the other jobs recover)"));
      j.params.Clear();
      j.driver.reset();
      Fail(j, why);
      ++failed;
    }
  }
  recovery_failures_ = failed;
  UpdateGauges();
  return absl::OkStatus();
}

absl::Status JobManager::RecoverJob(Job& j) {
  if (j.rec.state() != "QUEUED") return RecoverAdmitted(j);
  // A waiting job: restored as far as it got (nothing, or its last committed round, its next
  // round planned), then waits again.
  j.rec.set_state(j.rec.latency_table_json().empty() ? "PREPARING" : "RUNNING");
  NAS_RETURN_IF_ERROR(RecoverAdmitted(j));
  if (!Terminal(j.rec.state())) {
    j.resume_state = j.rec.state();
    j.rec.set_state("QUEUED");
  }
  return absl::OkStatus();
}

absl::Status JobManager::RecoverAdmitted(Job& j) {
  const std::string& id = j.rec.job_id();
  const std::string state = j.rec.state();
  if (Terminal(state) && state != "DONE") return absl::OkStatus();
  NAS_ASSIGN_OR_RETURN(j.space, JobSearchSpace(j.rec.spec()));
  if (state == "PREPARING" || j.rec.latency_table_json().empty()) {
    j.rec.set_state("PREPARING");
    return absl::OkStatus();
  }
  auto table = LatencyTable::ParseJson(j.rec.latency_table_json());
  if (!table.ok()) {
    return absl::DataLossError(absl::StrCat("stored latency table: ", table.status().message()));
  }
  j.table = *table;
  NAS_ASSIGN_OR_RETURN(j.latency, BuildLatencyModel(j.space, j.table));
  NAS_ASSIGN_OR_RETURN(std::vector<std::string> events, store_->Events(id));
  j.history = events;
  if (state == "DONE") return absl::OkStatus();
  auto committed = store_->GetSearchState(id);
  if (!committed.ok()) {
    if (committed.status().code() != absl::StatusCode::kNotFound) return committed.status();
    // Preparation finished but init never committed: build the supernet again.
    j.history.clear();
    return StartSearch(j);
  }
  NAS_ASSIGN_OR_RETURN(std::vector<TensorBlob> tensors, store_->LoadTensors(id));
  for (TensorBlob& t : tensors) j.params.Put(std::make_shared<const TensorBlob>(std::move(t)));
  NAS_ASSIGN_OR_RETURN(SearchPlan plan, PlanOf(j));
  NAS_ASSIGN_OR_RETURN(SearchDriver d, SearchDriver::Create(plan));
  NAS_RETURN_IF_ERROR(d.RestoreState(committed->second));
  j.driver = std::move(d);
  j.steps_in_metrics = j.driver->weight_steps();
  j.committed_round = committed->first;
  if (j.driver->done()) {
    PlanFinalStage(j);
    // Every final training finished before the crash: only the result was not written.
    if (j.tasks.empty()) NAS_RETURN_IF_ERROR(FinishJob(j));
  } else {
    j.rec.set_state("RUNNING");
    PlanWeightStage(j);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Users

absl::StatusOr<std::string> JobManager::Submit(const JobSpec& raw) {
  NAS_ASSIGN_OR_RETURN(JobSpec spec, NormalizeJobSpec(raw));
  NAS_ASSIGN_OR_RETURN(SearchSpace space, JobSearchSpace(spec));
  absl::MutexLock lock(&mu_);
  // Numbers come from a counter the store keeps, so an id is never handed out twice, even if
  // the job records of a damaged store were lost.
  NAS_ASSIGN_OR_RETURN(next_job_, store_->NextJobNumber(next_job_ + 1));
  auto job = std::make_unique<Job>();
  // The number never repeats; the suffix makes the id impossible to guess from another's.
  std::string id = absl::StrFormat("j%06d-%s", next_job_, RandomSuffix(10));
  job->rec.set_job_id(id);
  *job->rec.mutable_spec() = spec;
  job->rec.set_state("QUEUED");
  job->resume_state = "PREPARING";
  job->rec.set_submitted_unix_ms(UnixMs(options_.clock()));
  job->rec.set_queued_since_unix_ms(job->rec.submitted_unix_ms());
  job->tenant_index = ledger_->Index(spec.tenant());
  job->rec.set_space_json(space.ToJson());
  job->space = std::move(space);
  Job& j = *job;
  NAS_RETURN_IF_ERROR(store_->PutJob(id, j.rec.SerializeAsString()));
  j.persisted_record = j.rec.SerializeAsString();
  jobs_[id] = std::move(job);
  RunAdmission();
  UpdateGauges();
  changed_.SignalAll();
  return id;
}

JobStatus JobManager::StatusOf(const Job& j) const {
  JobStatus s;
  s.set_job_id(j.rec.job_id());
  s.set_state(j.rec.state());
  s.set_message(j.rec.message());
  s.set_degraded(j.degraded);
  s.set_tenant(j.rec.spec().tenant());
  s.set_owner(j.rec.spec().owner());
  s.set_priority(j.rec.spec().priority());
  s.set_submitted_unix_ms(j.rec.submitted_unix_ms());
  s.set_target_latency_ms(j.rec.target_latency_ms());
  if (j.driver) {
    const SearchDriver& d = *j.driver;
    s.set_round(d.round());
    s.set_train_loss(d.ema_loss());
    s.set_val_accuracy(d.last_arch_accuracy());
    s.set_expected_latency_ms(d.ExpectedLatency());
    s.set_arch_entropy(d.alpha().MeanEntropy());
    s.set_phase(SearchDriver::PhaseName(d.phase()));
    s.set_epoch(d.epoch());
    s.set_weight_steps(d.weight_steps());
    s.set_total_weight_steps(d.total_weight_steps());
    s.set_arch_steps(d.arch_steps());
    s.set_committed_round(j.committed_round);
  }
  int total = j.rec.spec().train_epochs() < 0 ? 0 : (j.rec.spec().no_baseline() ? 1 : 2);
  s.set_final_total(total);
  s.set_final_done(j.rec.final_reports_size());
  s.set_preemptions(j.rec.preemptions());
  s.set_workers_held(j.WorkersHeld());
  if (j.rec.state() == "QUEUED") {
    s.set_queue_position(j.queue_position);
    s.set_wait_reason(j.rec.wait_reason());
    s.set_estimated_start_unix_ms(j.estimated_start_ms);
  } else if (j.yielding) {
    s.set_wait_reason(j.rec.wait_reason());
  } else if (!Terminal(j.rec.state()) && s.workers_held() == 0 && !j.tasks.empty() &&
             j.tasks.front().slot.state == LeaseSlot::State::kQueued) {
    s.set_wait_reason("share: every worker it may use is busy; its tasks wait for the next free one");
  }
  return s;
}

absl::StatusOr<JobStatus> JobManager::Get(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  const Job* j = FindJob(job_id);
  if (j == nullptr) return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
  return StatusOf(*j);
}

std::vector<JobStatus> JobManager::List(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  std::vector<JobStatus> out;
  for (const auto& [id, j] : jobs_) {
    if (tenant.empty() || j->rec.spec().tenant() == tenant) out.push_back(StatusOf(*j));
  }
  return out;
}

absl::StatusOr<JobStatus> JobManager::WaitForChange(const std::string& job_id,
                                                    const JobStatus& last,
                                                    absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const Job* j = FindJob(job_id);
    if (j == nullptr) return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
    JobStatus now = StatusOf(*j);
    if (now.state() != last.state() || now.round() != last.round() ||
        now.committed_round() != last.committed_round() ||
        now.weight_steps() != last.weight_steps() || now.degraded() != last.degraded() ||
        now.final_done() != last.final_done() || now.message() != last.message() ||
        now.queue_position() != last.queue_position() ||
        now.wait_reason() != last.wait_reason() || now.preemptions() != last.preemptions()) {
      return now;
    }
    if (stopping_) return absl::UnavailableError("the coordinator is shutting down");
    if (changed_.WaitWithDeadline(&mu_, deadline)) return now;
  }
}

absl::Status JobManager::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Job* j = FindJob(job_id);
  if (j == nullptr) return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
  if (Terminal(j->rec.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " already ended (", j->rec.state(), ")"));
  }
  const absl::Time now = options_.clock();
  for (Lease& l : j->tasks) {
    Charge(*j, l.slot, now);
    leases_->Release(l.task.lease_id());
  }
  j->tasks.clear();
  j->stage = Job::Stage::kNone;
  j->yielding = false;
  j->rec.set_state("CANCELLED");
  j->rec.set_finished_unix_ms(UnixMs(now));
  NAS_RETURN_IF_ERROR(PersistRecord(*j));
  RunAdmission();
  UpdateGauges();
  return absl::OkStatus();
}

absl::StatusOr<JobResult> JobManager::Result(const std::string& job_id) const {
  {
    absl::MutexLock lock(&mu_);
    const Job* j = FindJob(job_id);
    if (j == nullptr) return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
    if (j->rec.state() != "DONE") {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is ", j->rec.state(),
                       j->rec.message().empty() ? "" : absl::StrCat(" (", j->rec.message(), ")"),
                       "; its result exists once it is DONE"));
    }
  }
  NAS_ASSIGN_OR_RETURN(std::string bytes, store_->GetResult(job_id));
  JobResult r;
  if (!r.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("job ", job_id, ": stored result is corrupt"));
  }
  return r;
}

absl::StatusOr<std::string> JobManager::Artifact(const std::string& job_id,
                                                 const std::string& name) const {
  auto t = store_->GetTensor(job_id, kArtifactPrefix + name);
  if (!t.ok()) {
    return absl::NotFoundError(absl::StrCat("name: job ", job_id, " has no artifact '", name, "'"));
  }
  return t->data();
}

// ---------------------------------------------------------------------------------------------
// Preparation: latencies, then the init task.

void JobManager::Prepare(const std::string& job_id) {
  std::string device;
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    Job* j = FindJob(job_id);
    if (j == nullptr || j->rec.state() != "PREPARING" || j->preparing) return;
    j->preparing = true;
    device = j->rec.spec().device();
    keys = j->space.AllLayerKeys();
  }
  absl::StatusOr<LatencyTable> table =
      latency_ != nullptr ? latency_->Fetch(device, keys)
                          : absl::UnavailableError("no latency service configured");
  absl::MutexLock lock(&mu_);
  Job* j = FindJob(job_id);
  if (j == nullptr) return;
  j->preparing = false;
  if (j->rec.state() != "PREPARING") return;
  if (!table.ok()) {
    absl::StatusCode c = table.status().code();
    if (c == absl::StatusCode::kUnavailable || c == absl::StatusCode::kDeadlineExceeded ||
        c == absl::StatusCode::kInternal || c == absl::StatusCode::kUnknown) {
      j->backoff = j->backoff == absl::ZeroDuration()
                       ? options_.latency_retry_initial
                       : std::min(options_.latency_retry_max, j->backoff * 2);
      j->next_try = options_.clock() + j->backoff;
      j->degraded = true;
      j->rec.set_message(absl::StrCat("degraded: latency service unavailable (",
                                      table.status().message(), "); retrying in ",
                                      absl::FormatDuration(j->backoff)));
      ++j->change;
      changed_.SignalAll();
      UpdateGauges();
      return;
    }
    Fail(*j, absl::StrCat("latency service: ", table.status().message()));
    return;
  }
  j->degraded = false;
  j->rec.set_message("");
  j->table = *table;
  auto model = BuildLatencyModel(j->space, j->table);
  if (!model.ok()) {
    Fail(*j, std::string(model.status().message()));
    return;
  }
  j->latency = *model;
  j->rec.set_latency_table_json(j->table.ToJson());
  double target = j->rec.spec().target_latency_ms();
  if (target <= 0) {
    ArchParams uniform(j->space.CandidatesPerEdge());
    target = j->rec.spec().target_fraction() * j->latency.Expected(uniform);
  }
  j->rec.set_target_latency_ms(target);
  auto loss = JobLoss(j->rec.spec(), target);
  absl::Status v = loss.ok() ? loss->Validate() : loss.status();
  if (!v.ok()) {
    Fail(*j, std::string(v.message()));
    return;
  }
  absl::Status s = StartSearch(*j);
  if (!s.ok()) Fail(*j, std::string(s.message()));
  UpdateGauges();
}

absl::StatusOr<SearchPlan> JobManager::PlanOf(const Job& j) {
  const JobSpec& s = j.rec.spec();
  SearchPlan plan = SearchPlan::ForSpace(j.space);
  plan.warmup_epochs = std::max(0, s.warmup_epochs());
  plan.search_epochs = s.search_epochs();
  plan.train_batches = j.rec.train_size() / s.batch_size();
  plan.valid_batches = j.rec.valid_size() / s.batch_size();
  plan.arch_every = s.arch_every();
  plan.search_lr = s.search_lr();
  plan.steps_per_task = s.steps_per_task();
  plan.arch_algo = s.arch_algo();
  plan.adam.lr = s.arch_lr();
  NAS_ASSIGN_OR_RETURN(plan.loss, JobLoss(s, j.rec.target_latency_ms()));
  plan.latency = j.latency;
  plan.seed = s.seed();
  return plan;
}

absl::Status JobManager::StartSearch(Job& j) {
  j.rec.set_state("RUNNING");
  j.stage = Job::Stage::kInit;
  j.tasks.clear();
  Lease l = NewTask(j);  // no driver yet: round 0, no batch seeds
  l.task.mutable_init()->set_seed(j.rec.spec().seed());
  j.tasks.push_back(std::move(l));
  return PersistRecord(j);
}

// ---------------------------------------------------------------------------------------------
// Planning

namespace {

void FillData(const JobSpec& s, const SearchDriver* d, DataSpec* data) {
  data->set_dataset(s.dataset());
  data->set_data_dir(s.data_dir());
  data->set_train_subset(s.train_subset());
  data->set_test_subset(s.test_subset());
  data->set_valid_size(s.valid_size());
  data->set_split_seed(s.seed());
  data->set_batch_size(s.batch_size());
  data->set_augment_pad(2);
  data->set_augment_hflip(true);
  data->set_stream_images(s.stream_images());
  data->set_skip_bad_files(s.skip_bad_files());
  if (d != nullptr) {
    data->set_train_seed(d->train_seed());
    data->set_valid_seed(d->valid_seed());
  }
}

std::vector<std::vector<bool>> Keep(const SearchSpace& space, const std::vector<int>& a,
                                    const std::vector<int>& b = {}) {
  std::vector<std::vector<bool>> keep;
  for (int e = 0; e < space.num_edges(); ++e) {
    keep.emplace_back(space.edges()[e].candidates.size(), false);
    for (const std::vector<int>* v : {&a, &b}) {
      if (e < static_cast<int>(v->size())) keep[e][(*v)[e]] = true;
    }
  }
  return keep;
}

// keep |= more.
void KeepAlso(std::vector<std::vector<bool>>& keep, const std::vector<std::vector<bool>>& more) {
  for (size_t e = 0; e < more.size(); ++e) {
    for (size_t c = 0; c < more[e].size(); ++c) keep[e][c] = keep[e][c] || more[e][c];
  }
}

// The final_reports key of an eval task's accuracies (not a network: no weights, no artifact).
constexpr absl::string_view kEvalLabelPrefix = "paths/";

}  // namespace

JobManager::Lease JobManager::NewTask(const Job& j) {
  Lease l;
  Task& t = l.task;
  t.set_job_id(j.rec.job_id());
  if (j.driver) t.set_round(j.driver->round());
  t.set_space_json(j.rec.space_json());
  FillData(j.rec.spec(), j.driver ? &*j.driver : nullptr, t.mutable_data());
  return l;
}

void JobManager::ListTensors(Job& j, const std::vector<std::vector<bool>>& keep, bool momentum,
                             Lease& l) {
  j.params.List(j.space, keep, momentum, [&l](const ParamStore::Entry& e) {
    l.names.insert(absl::string_view(e.first));
    l.listed.push_back({e.first, e.second.blob->version()});
  });
}

void JobManager::PlanWeightStage(Job& j) {
  j.stage = Job::Stage::kWeights;
  j.RetireTasks();
  j.aspecs.clear();
  const JobSpec& spec = j.rec.spec();
  // A spec from before chains has chain_steps 0: one task per round.
  const int chain = spec.parallel_tasks() == 1 ? std::max(1, spec.chain_steps()) : 1;
  if (chain > 1) {
    // One task: the first spec, then the rest as its chain; it lists every path's tensors.
    j.wspecs = j.driver->PlanWeightTasks(chain, /*stop_at_arch=*/true);
    if (!j.wspecs.empty()) {
      Lease l = NewTask(j);
      WeightTask* wt = l.task.mutable_weight();
      std::vector<std::vector<bool>> keep = Keep(j.space, {});
      for (size_t i = 0; i < j.wspecs.size(); ++i) {
        const WeightTaskSpec& w = j.wspecs[i];
        if (i == 0) {
          for (int c : w.path) wt->add_path(c);
          for (int64_t b : w.batches) wt->add_batches(b);
          for (double lr : w.lrs) wt->add_lrs(lr);
        } else {
          WeightStep* step = wt->add_chain();
          for (int c : w.path) step->add_path(c);
          for (int64_t b : w.batches) step->add_batches(b);
          for (double lr : w.lrs) step->add_lrs(lr);
        }
        KeepAlso(keep, Keep(j.space, w.path));
      }
      wt->set_data_epoch(j.wspecs[0].data_epoch);
      wt->set_label_smoothing(spec.label_smoothing());
      ListTensors(j, keep, /*momentum=*/true, l);
      j.tasks.push_back(std::move(l));
    }
  } else {
    j.wspecs = j.driver->PlanWeightTasks(spec.parallel_tasks());
  }
  for (size_t i = 0; chain == 1 && i < j.wspecs.size(); ++i) {
    const WeightTaskSpec& w = j.wspecs[i];
    Lease l = NewTask(j);
    WeightTask* wt = l.task.mutable_weight();
    for (int c : w.path) wt->add_path(c);
    wt->set_data_epoch(w.data_epoch);
    for (int64_t b : w.batches) wt->add_batches(b);
    for (double lr : w.lrs) wt->add_lrs(lr);
    wt->set_label_smoothing(spec.label_smoothing());
    ListTensors(j, Keep(j.space, w.path), /*momentum=*/true, l);
    j.tasks.push_back(std::move(l));
  }
  // A tensor that one task alone lists comes back from that task alone (a result with a tensor
  // its task does not list is refused), and the merge keeps a single copy as sent. Counted by
  // the address of the name's store key (one key per tensor), not by hashing the name.
  absl::InlinedVector<std::vector<TensorListing>*, 8> listings;
  for (Lease& l : j.tasks) listings.push_back(&l.listed);
  ParamStore::MarkSoleWriters(absl::MakeSpan(listings));
  changed_.SignalAll();
}

void JobManager::PlanFinalStage(Job& j) {
  j.rec.set_state("FINAL");
  j.stage = Job::Stage::kFinal;
  j.tasks.clear();
  std::vector<int> derived = j.driver->alpha().Argmax();
  j.rec.clear_derived();
  for (int c : derived) j.rec.add_derived(c);
  Log(absl::StrCat("job ", j.rec.job_id(), ": search done at round ", j.driver->round(),
                   ", derived ", Architecture{j.space.name(), derived}.ToString(j.space)));
  const JobSpec& s = j.rec.spec();
  std::vector<std::pair<std::string, std::vector<int>>> nets;
  if (s.train_epochs() >= 0) {
    nets.push_back({"derived", derived});
    if (!s.no_baseline()) nets.push_back({"baseline", j.space.LargestChoices()});
  }
  // Paths of the trained supernet evaluated with their inherited weights (the report's
  // accuracy-latency view), in groups: the same paths after a restart (seeded by the job). They
  // go first: short, and unlike a final task they need no worker of the job's device.
  if (s.sampled_paths() >= 0) {
    std::vector<SampledPath> paths =
        PathsToEvaluate(j.space, j.driver->alpha(), s.sampled_paths(), s.seed());
    for (size_t first = 0; first < paths.size(); first += kPathsPerEvalTask) {
      const std::string label = absl::StrCat(kEvalLabelPrefix, first / kPathsPerEvalTask);
      if (j.rec.final_reports().count(label) > 0) continue;  // finished before a restart
      Lease l = NewTask(j);
      EvalTask* ev = l.task.mutable_eval();
      ev->set_label(label);
      ev->set_batch_size(s.batch_size());
      std::vector<std::vector<bool>> keep = Keep(j.space, {});
      for (size_t i = first; i < std::min(paths.size(), first + kPathsPerEvalTask); ++i) {
        PathChoices* pc = ev->add_paths();
        for (int c : paths[i].choices) pc->add_choices(c);
        KeepAlso(keep, Keep(j.space, paths[i].choices));
      }
      ListTensors(j, keep, /*momentum=*/false, l);
      j.tasks.push_back(std::move(l));
    }
  }
  for (const auto& [label, choices] : nets) {
    if (j.rec.final_reports().count(label) > 0) continue;  // finished before a restart
    Lease l = NewTask(j);
    FinalTask* f = l.task.mutable_final();
    f->set_label(label);
    for (int c : choices) f->add_choices(c);
    f->set_epochs(s.train_epochs());
    f->set_lr(s.train_lr());
    f->set_label_smoothing(s.label_smoothing());
    f->set_seed(s.seed() + 17);
    // Measured as the table was profiled, so that predicted and measured latency compare.
    f->set_profile_batch_size(std::max(1, j.table.info().batch_size));
    f->set_profile_threads(s.profile_threads() > 0 ? s.profile_threads()
                                                   : std::max(1, j.table.info().threads));
    j.tasks.push_back(std::move(l));
  }
  changed_.SignalAll();
}

// ---------------------------------------------------------------------------------------------
// Workers

absl::StatusOr<RegisterWorkerReply> JobManager::RegisterWorker(const RegisterWorkerRequest& r) {
  NAS_RETURN_IF_ERROR(ValidateName("name", r.name(), JobSpecLimits::kMaxDeviceBytes, ":+"));
  NAS_RETURN_IF_ERROR(ValidateName("device", r.device(), JobSpecLimits::kMaxDeviceBytes, ":+"));
  constexpr int kMaxLatencyDevices = 16;
  if (r.latency_devices_size() > kMaxLatencyDevices) {
    return absl::InvalidArgumentError(absl::StrCat("latency_devices: ", r.latency_devices_size(),
                                                   " devices, more than the limit of ",
                                                   kMaxLatencyDevices));
  }
  for (const std::string& d : r.latency_devices()) {
    if (d.empty()) return absl::InvalidArgumentError("latency_devices: an empty device name");
    NAS_RETURN_IF_ERROR(
        ValidateName("latency_devices", d, JobSpecLimits::kMaxDeviceBytes, ":+"));
  }
  absl::MutexLock lock(&mu_);
  NAS_ASSIGN_OR_RETURN(
      RegisterWorkerReply reply,
      leases_->Register(r.name(), r.device(),
                        {r.latency_devices().begin(), r.latency_devices().end()}));
  UpdateGauges();
  return reply;
}

JobManager::Lease* JobManager::CurrentLease(const std::string& lease_id, Job** job) const {
  const std::string* job_id = leases_->JobOf(lease_id);
  Job* j = job_id == nullptr ? nullptr : FindJob(*job_id);
  if (j == nullptr) return nullptr;
  Lease* l = LeaseTable::FindLeased(j->tasks, lease_id);
  if (l != nullptr && job != nullptr) *job = j;
  return l;
}

absl::StatusOr<HeartbeatReply> JobManager::Heartbeat(const HeartbeatRequest& r) {
  absl::MutexLock lock(&mu_);
  NAS_RETURN_IF_ERROR(leases_->Heartbeat(r.worker_id()));
  HeartbeatReply reply;
  if (r.lease_id().empty()) return reply;
  Lease* l = CurrentLease(r.lease_id(), nullptr);
  if (l != nullptr && l->slot.worker_id == r.worker_id()) {
    leases_->Extend(l->slot);
    l->task.set_deadline_unix_ms(UnixMs(l->slot.deadline));
    reply.set_lease_valid(true);
  }
  return reply;
}

absl::StatusOr<std::optional<Task>> JobManager::Acquire(const std::string& worker_id,
                                                        absl::Duration wait) {
  absl::MutexLock lock(&mu_);
  absl::Time deadline = absl::Now() + wait;
  while (true) {
    NAS_ASSIGN_OR_RETURN(const LeaseTable::Worker* worker, leases_->Touch(worker_id));
    const absl::Time now = options_.clock();
    DescribeForScheduler(now, /*admitted_only=*/true);
    SchedulingInput in;
    in.jobs = scratch_jobs_;
    in.tenants = scratch_tenants_;
    in.worker = {worker->id, worker->latency_devices};
    in.now_unix_ms = UnixMs(now);
    SchedulingDecision decision = scheduler_->Next(in);
    std::vector<Lease*>& first_queued = scratch_tasks_;
    if (decision.job >= 0 && first_queued[decision.job] != nullptr) {
      Lease& l = *first_queued[decision.job];
      l.task.set_lease_id(leases_->Grant(l.slot, l.task.job_id(), worker_id));
      ledger_->Grant(scratch_job_ptrs_[decision.job]->tenant_index, l.slot.granted);
      l.task.set_deadline_unix_ms(UnixMs(l.slot.deadline));
      std::optional<Task> out(l.task);
      out->mutable_tensors()->Reserve(static_cast<int>(l.listed.size()));
      for (const TensorListing& r : l.listed) {
        TensorRef* t = out->add_tensors();
        t->set_name(r.name.data(), r.name.size());
        t->set_version(r.version);
        t->set_sole_writer(r.sole_writer);
      }
      return out;
    }
    if (stopping_) return absl::UnavailableError("the coordinator is shutting down");
    if (changed_.WaitWithDeadline(&mu_, deadline)) return std::optional<Task>();
  }
}

absl::StatusOr<std::vector<std::shared_ptr<const TensorBlob>>> JobManager::Fetch(
    const std::string& lease_id, const std::vector<std::string>& names) {
  absl::MutexLock lock(&mu_);
  Job* j = nullptr;
  Lease* lease = CurrentLease(lease_id, &j);
  if (lease == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease_id: '", lease_id, "' is not current (expired, re-issued or unknown)"));
  }
  std::vector<std::shared_ptr<const TensorBlob>> out;
  out.reserve(names.size());
  for (const std::string& n : names) {
    const ParamStore::Stored* t = j->params.Find(n);
    if (t == nullptr || lease->names.count(n) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("names: '", n, "' is not a tensor of lease ", lease_id));
    }
    out.push_back(t->blob);
  }
  return out;
}

absl::Status JobManager::Validate(const Job& j, const Lease& l, const CompletedTask& r) const {
  const TaskOutcome& o = r.outcome;
  absl::flat_hash_set<absl::string_view> seen;
  seen.reserve(r.tensors.size());
  for (const TensorBlob& b : r.tensors) {
    NAS_RETURN_IF_ERROR(CheckTensorBlob(b, "tensors"));
    if (!seen.insert(b.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat("tensors: '", b.name(), "' twice"));
    }
  }
  if (!std::isfinite(o.loss()) || !(o.accuracy() >= 0) || o.accuracy() > 1) {
    return absl::InvalidArgumentError("outcome: loss must be finite and accuracy in [0, 1]");
  }
  auto check_known = [&](const TensorBlob& b, bool allow_new_momentum) {
    return j.params.CheckReturned(b, l.names, allow_new_momentum);
  };
  switch (l.task.kind_case()) {
    case Task::kInit:
      if (o.train_size() <= 0 || o.valid_size() < 0) {
        return absl::InvalidArgumentError("outcome.train_size: must be positive");
      }
      if (r.tensors.empty()) return absl::InvalidArgumentError("tensors: init returned none");
      for (const TensorBlob& b : r.tensors) {
        if (absl::StartsWith(b.name(), kMomentumPrefix) || b.dtype() == "bytes") {
          return absl::InvalidArgumentError(
              absl::StrCat("tensors: '", b.name(), "' is not a supernet tensor"));
        }
      }
      return absl::OkStatus();
    case Task::kWeight: {
      const int chain = l.task.weight().chain_size();
      if (o.chain_losses_size() != chain || o.chain_accuracies_size() != chain) {
        return absl::InvalidArgumentError(
            absl::StrCat("outcome.chain_losses/chain_accuracies: expected ", chain,
                         " values each (one per further task of the chain), got ",
                         o.chain_losses_size(), " and ", o.chain_accuracies_size()));
      }
      for (int i = 0; i < chain; ++i) {
        if (!std::isfinite(o.chain_losses(i)) || !(o.chain_accuracies(i) >= 0) ||
            o.chain_accuracies(i) > 1) {
          return absl::InvalidArgumentError(
              absl::StrCat("outcome.chain_losses/chain_accuracies[", i,
                           "]: loss must be finite and accuracy in [0, 1]"));
        }
      }
      for (const TensorBlob& b : r.tensors) NAS_RETURN_IF_ERROR(check_known(b, true));
      for (absl::string_view n : l.names) {
        if (!absl::StartsWith(n, kMomentumPrefix) && seen.count(n) == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("tensors: the weight task's tensor '", n, "' is missing"));
        }
      }
      return absl::OkStatus();
    }
    case Task::kArch: {
      for (const TensorBlob& b : r.tensors) {
        if (absl::StartsWith(b.name(), kMomentumPrefix)) {
          return absl::InvalidArgumentError("tensors: an arch task returns no momentum");
        }
        NAS_RETURN_IF_ERROR(check_known(b, false));
      }
      if (!l.task.arch().rl()) {
        int n = j.space.num_edges();
        if (o.gate_grads_size() != 2 * n) {
          return absl::InvalidArgumentError(absl::StrCat("outcome.gate_grads: expected ", 2 * n,
                                                         " values (2 per edge), got ",
                                                         o.gate_grads_size()));
        }
        for (double g : o.gate_grads()) {
          if (!std::isfinite(g))
            return absl::InvalidArgumentError("outcome.gate_grads: not finite");
        }
      }
      return absl::OkStatus();
    }
    case Task::kFinal: {
      auto report = ParseJson(o.report_json(), "outcome.report_json");
      if (!report.ok() || !report->is_object()) {
        return absl::InvalidArgumentError("outcome.report_json: not a JSON object");
      }
      // <label>.pt, and <label>.onnx from a worker that exports it (an older one does not).
      const std::string pt = l.task.final().label() + ".pt";
      const std::string onnx = l.task.final().label() + ".onnx";
      bool has_pt = false, has_onnx = false;
      for (const TensorBlob& t : r.tensors) {
        bool is_pt = t.name() == pt, is_onnx = t.name() == onnx;
        if ((!is_pt && !is_onnx) || t.dtype() != "bytes" || (is_pt && has_pt) ||
            (is_onnx && has_onnx)) {
          return absl::InvalidArgumentError(
              absl::StrCat("tensors: a final task returns '", pt, "' and optionally '", onnx,
                           "', each once with dtype bytes; got '", t.name(), "' (", t.dtype(), ")"));
        }
        has_pt = has_pt || is_pt;
        has_onnx = has_onnx || is_onnx;
      }
      if (!has_pt) {
        return absl::InvalidArgumentError(absl::StrCat("tensors: a final task returns '", pt, "'"));
      }
      return absl::OkStatus();
    }
    case Task::kEval: {
      if (!r.tensors.empty()) return absl::InvalidArgumentError("tensors: an eval task returns none");
      const int n = l.task.eval().paths_size();
      if (o.path_accuracies_size() != n) {
        return absl::InvalidArgumentError(absl::StrCat("outcome.path_accuracies: expected ", n,
                                                       " values (one per path), got ",
                                                       o.path_accuracies_size()));
      }
      for (double a : o.path_accuracies()) {
        if (!(a >= 0 && a <= 1)) {
          return absl::InvalidArgumentError(
              absl::StrCat("outcome.path_accuracies: ", a, " is not in [0, 1]"));
        }
      }
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("task: unknown kind");
  }
}

absl::Status JobManager::Complete(CompletedTask result) {
  std::vector<Lease> retired;  // destroyed after the lock is released (Job::retired)
  absl::MutexLock lock(&mu_);
  const std::string lease_id = result.outcome.lease_id();
  Job* j = nullptr;
  Lease* lease = CurrentLease(lease_id, &j);
  if (lease == nullptr) {
    if (options_.metrics != nullptr) options_.metrics->Task("unknown", "refused");
    Log(absl::StrCat("refused the result of lease ", lease_id, ": not current"));
    return absl::FailedPreconditionError(absl::StrCat(
        "lease_id: '", lease_id,
        "' is not current (expired and re-issued, already completed, or from before a restart); "
        "result refused"));
  }
  const std::string kind = TaskKind(lease->task);
  if (!result.outcome.error().empty()) {
    if (options_.metrics != nullptr) options_.metrics->Task(kind, "failed");
    Log(absl::StrCat("job ", j->rec.job_id(), ": ", kind, " task failed on worker ",
                     lease->slot.worker_id, ": ", result.outcome.error()));
    Fail(*j, absl::StrCat(kind, " task on worker ", lease->slot.worker_id,
                          " failed: ", result.outcome.error()));
    RunAdmission();
    return absl::OkStatus();
  }
  absl::Status v = Validate(*j, *lease, result);
  if (!v.ok()) {
    if (options_.metrics != nullptr) options_.metrics->Task(kind, "refused");
    Log(absl::StrCat("refused the result of lease ", lease_id, ": ", v.message()));
    return v;
  }
  if (options_.metrics != nullptr) {
    double bytes = 0;
    for (const TensorBlob& b : result.tensors) bytes += static_cast<double>(b.data().size());
    options_.metrics->TensorBytes("returned", bytes);
    options_.metrics->Task(kind, "ok");
  }
  if (lease->task.has_final()) {
    // Where the latency was measured: on a worker of the job's device, or (none registered)
    // on another machine, which the report must say.
    auto report = ParseJson(result.outcome.report_json(), "outcome.report_json");
    const LeaseTable::Worker* w = leases_->FindWorker(lease->slot.worker_id);
    if (report.ok() && w != nullptr) {
      const std::string& device = j->rec.spec().device();
      (*report)["measured_on"] = {{"worker", w->name},
                                  {"worker_id", w->id},
                                  {"latency_devices", w->latency_devices},
                                  {"is_job_device", w->Measures(device)}};
      if (!w->Measures(device)) {
        Log(absl::StrCat("job ", j->rec.job_id(), ": no worker measures as '", device,
                         "'; the ", lease->task.final().label(),
                         " network's latency was measured on worker ", w->name,
                         " and its report says so"));
      }
      result.outcome.set_report_json(report->dump());
    }
  }
  Charge(*j, lease->slot, options_.clock());
  leases_->Finish(lease->slot, lease_id);
  lease->result = std::move(result);
  bool all = std::all_of(j->tasks.begin(), j->tasks.end(),
                         [](const Lease& l) { return l.slot.state == LeaseSlot::State::kDone; });
  if (all) {
    absl::Status s = AdvanceStage(*j);
    if (!s.ok()) Fail(*j, std::string(s.message()));
    retired.swap(j->retired);
    if (Terminal(j->rec.state())) {
      RunAdmission();  // its running slot is free
    } else {
      MaybeYield(*j);
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Stages

absl::Status JobManager::AdvanceStage(Job& j) {
  // Merges the tensors of every finished task: averaged where several returned the same name.
  // A tensor that one task returned is moved into the store as it came (the results are not
  // read again), so a one-worker round copies no tensor bytes here.
  auto merge = [&]() {
    absl::InlinedVector<std::vector<TensorBlob>*, 8> returned;
    for (Lease& l : j.tasks) returned.push_back(&l.result->tensors);
    j.params.MergeReturned(absl::MakeSpan(returned));
  };
  switch (j.stage) {
    case Job::Stage::kInit: {
      const TaskOutcome& o = j.tasks[0].result->outcome;
      j.rec.set_train_size(o.train_size());
      j.rec.set_valid_size(o.valid_size());
      NAS_ASSIGN_OR_RETURN(SearchPlan plan, PlanOf(j));
      NAS_ASSIGN_OR_RETURN(SearchDriver d, SearchDriver::Create(plan));
      j.params.Clear();
      merge();
      j.driver = std::move(d);
      j.history.clear();
      j.rec.set_search_started_unix_ms(UnixMs(options_.clock()));
      NAS_RETURN_IF_ERROR(CommitRound(j, {j.driver->HistoryLine("init", 0, 0)}));
      PlanWeightStage(j);
      return absl::OkStatus();
    }
    case Job::Stage::kWeights: {
      merge();
      std::vector<WeightTaskResult> results;
      for (const Lease& l : j.tasks) {
        const TaskOutcome& o = l.result->outcome;
        results.push_back({o.loss(), o.accuracy()});
        for (int i = 0; i < o.chain_losses_size(); ++i) {
          results.push_back({o.chain_losses(i), o.chain_accuracies(i)});
        }
      }
      NAS_RETURN_IF_ERROR(j.driver->ApplyWeightResults(results));
      j.aspecs = j.driver->PlanArchTasks();
      if (j.aspecs.empty()) break;
      j.stage = Job::Stage::kArch;
      j.RetireTasks();
      for (const ArchTaskSpec& a : j.aspecs) {
        Lease l = NewTask(j);
        ArchTask* at = l.task.mutable_arch();
        at->set_rl(a.rl);
        std::vector<int> act, oth;
        for (const PairSample& p : a.pairs) {
          at->add_active(p.active);
          at->add_other(p.other);
          act.push_back(p.active);
          oth.push_back(p.other);
        }
        for (int c : a.path) at->add_path(c);
        at->set_valid_epoch(a.valid_epoch);
        at->set_valid_batch(a.valid_batch);
        ListTensors(j, a.rl ? Keep(j.space, a.path) : Keep(j.space, act, oth),
                    /*momentum=*/false, l);
        j.tasks.push_back(std::move(l));
      }
      ++j.change;
      changed_.SignalAll();
      return absl::OkStatus();
    }
    case Job::Stage::kArch: {
      std::vector<std::string> lines;
      // Validate every result against alpha before applying any (ApplyArchResult validates too).
      merge();
      for (size_t i = 0; i < j.tasks.size(); ++i) {
        const TaskOutcome& o = j.tasks[i].result->outcome;
        ArchTaskResult r;
        r.ce = o.loss();
        r.accuracy = o.accuracy();
        for (int e = 0; e + 1 < o.gate_grads_size(); e += 2) {
          r.gate_grads.push_back({o.gate_grads(e), o.gate_grads(e + 1)});
        }
        NAS_ASSIGN_OR_RETURN(std::string line, j.driver->ApplyArchResult(j.aspecs[i], r));
        lines.push_back(std::move(line));
      }
      NAS_RETURN_IF_ERROR(CommitRound(j, std::move(lines)));
      return absl::OkStatus();
    }
    case Job::Stage::kFinal: {
      for (Lease& l : j.tasks) {
        if (l.task.has_eval()) {
          Json acc = Json::array();
          for (double a : l.result->outcome.path_accuracies()) acc.push_back(a);
          (*j.rec.mutable_final_reports())[l.task.eval().label()] = acc.dump();
          continue;
        }
        (*j.rec.mutable_final_reports())[l.task.final().label()] = l.result->outcome.report_json();
        for (const TensorBlob& t : l.result->tensors) {  // <label>.pt [and <label>.onnx]
          TensorBlob b = t;
          b.set_name(kArtifactPrefix + b.name());
          b.set_version(1);
          b.set_total_bytes(b.data().size());
          j.params.PutChanged(std::make_shared<const TensorBlob>(std::move(b)));
        }
      }
      j.tasks.clear();
      return FinishJob(j);
    }
    case Job::Stage::kNone:
      return absl::OkStatus();
  }
  return CommitRound(j, {});
}

namespace {

// report.json's "sampled_paths": the paths PlanFinalStage planned, with the accuracies their eval
// tasks returned (final_reports "paths/<k>"); nullopt when the job evaluated none.
std::optional<Json> SampledPathsReport(
    const SearchSpace& space, const ArchParams& alpha, const LatencyModel& latency,
    const JobSpec& spec, int64_t valid_size,
    const google::protobuf::Map<std::string, std::string>& reports) {
  if (spec.sampled_paths() < 0) return std::nullopt;
  std::vector<SampledPath> paths =
      PathsToEvaluate(space, alpha, spec.sampled_paths(), spec.seed());
  std::vector<double> accuracies;
  for (size_t first = 0; first < paths.size(); first += kPathsPerEvalTask) {
    auto it = reports.find(absl::StrCat(kEvalLabelPrefix, first / kPathsPerEvalTask));
    if (it == reports.end()) return std::nullopt;
    auto acc = ParseJson(it->second, "eval result");
    if (!acc.ok() || !acc->is_array()) return std::nullopt;
    for (const Json& a : *acc) {
      if (!a.is_number()) return std::nullopt;
      accuracies.push_back(a.get<double>());
    }
  }
  if (accuracies.size() != paths.size()) return std::nullopt;
  return SampledPathsJson(space, latency, paths, accuracies, valid_size, spec.batch_size());
}

}  // namespace

absl::Status JobManager::FinishJob(Job& j) {
  AwaitCommits(j);  // the result goes after every round
  j.stage = Job::Stage::kNone;
  j.rec.set_state("DONE");
  j.rec.set_finished_unix_ms(UnixMs(options_.clock()));
  j.tasks.clear();
  JobResult res;
  res.set_job_id(j.rec.job_id());
  std::vector<int> derived(j.rec.derived().begin(), j.rec.derived().end());
  Architecture arch{j.space.name(), derived};
  res.mutable_architecture()->set_space(j.space.name());
  for (int e = 0; e < j.space.num_edges(); ++e) {
    res.mutable_architecture()->add_choices(j.space.edges()[e].candidates[derived[e]].Name());
  }
  res.set_architecture_json(arch.ToJson(j.space));
  auto net = j.space.Derive(derived);
  if (net.ok()) res.set_network_json(net->ToReferenceJson());
  res.set_space_json(j.rec.space_json());
  res.set_latency_table_json(j.rec.latency_table_json());
  for (const std::string& h : j.history) res.add_history(h);
  Json spec = Json::object();
  {
    std::string text;
    // The spec as JSON through its fields that matter for reproduction.
    const JobSpec& s = j.rec.spec();
    // clang-format off
    spec = {{"space", s.space()},       {"dataset", s.dataset()},
            {"device", s.device()},     {"target_latency_ms", s.target_latency_ms()},
            {"target_fraction", s.target_fraction()}, {"loss", s.loss()},
            {"loss_lambda", s.loss_lambda()},         {"warmup_epochs", s.warmup_epochs()},
            {"search_epochs", s.search_epochs()},     {"train_epochs", s.train_epochs()},
            {"batch_size", s.batch_size()},           {"search_lr", s.search_lr()},
            {"train_lr", s.train_lr()},               {"arch_lr", s.arch_lr()},
            {"arch_every", s.arch_every()},           {"arch_algo", s.arch_algo()},
            {"valid_size", s.valid_size()},           {"train_subset", s.train_subset()},
            {"test_subset", s.test_subset()},         {"seed", s.seed()},
            {"parallel_tasks", s.parallel_tasks()},   {"steps_per_task", s.steps_per_task()},
            {"chain_steps", s.chain_steps()},         {"label_smoothing", s.label_smoothing()},
            {"stream_images", s.stream_images()},     {"skip_bad_files", s.skip_bad_files()}};
    // clang-format on
  }
  res.set_spec_json(spec.dump(2));
  Json report = {
      {"job_id", j.rec.job_id()},
      {"space", j.space.name()},
      {"dataset", j.rec.spec().dataset()},
      {"device", j.table.info().device},
      {"runtime", j.table.info().runtime},
      {"latency_table_method", j.table.info().method},
      {"loss", j.rec.spec().loss()},
      {"target_latency_ms", j.rec.target_latency_ms()},
      {"final_expected_latency_ms", j.driver->ExpectedLatency()},
      {"final_entropy", j.driver->alpha().MeanEntropy()},
      {"final_probabilities", j.driver->alpha().AllProbs()},
      {"weight_steps", j.driver->weight_steps()},
      {"arch_steps", j.driver->arch_steps()},
      {"rounds", j.driver->round()},
      {"seconds",
       {{"search", (j.rec.search_finished_unix_ms() - j.rec.search_started_unix_ms()) / 1000.0},
        {"total", (j.rec.finished_unix_ms() - j.rec.submitted_unix_ms()) / 1000.0}}},
      {"arch_algo", j.rec.spec().arch_algo()},
      {"seed", j.rec.spec().seed()},
      {"spec", spec}};
  auto add_net = [&](const std::string& label, const std::vector<int>& choices) {
    auto it = j.rec.final_reports().find(label);
    Json n = Json::object();
    if (it != j.rec.final_reports().end()) {
      auto parsed = ParseJson(it->second, label);
      if (parsed.ok()) n = *parsed;
    }
    n["architecture"] = Architecture{j.space.name(), choices}.ToString(j.space);
    n["predicted_latency_ms"] = j.latency.PathLatency(choices);
    report[label] = n;
    return n;
  };
  Json d = add_net("derived", derived);
  if (j.rec.final_reports().count("baseline") > 0) add_net("baseline", j.space.LargestChoices());
  res.set_test_accuracy(d.value("test_accuracy", 0.0));
  res.set_predicted_latency_ms(j.latency.PathLatency(derived));
  res.set_measured_latency_ms(d.value("measured_latency_ms", 0.0));
  if (std::optional<Json> sampled = SampledPathsReport(j.space, j.driver->alpha(), j.latency,
                                                       j.rec.spec(), j.rec.valid_size(),
                                                       j.rec.final_reports())) {
    report["sampled_paths"] = *sampled;
  }
  res.set_report_json(report.dump(2));
  {
    ReportInputs page;
    page.title = "job " + j.rec.job_id();
    page.report_json = res.report_json();
    page.history.assign(res.history().begin(), res.history().end());
    page.space_json = res.space_json();
    page.architecture_json = res.architecture_json();
    absl::StatusOr<std::string> html = RenderReportHtml(page);
    if (html.ok()) {
      res.set_report_html(*std::move(html));
    } else {
      Log(absl::StrCat("job ", j.rec.job_id(), ": report.html not drawn: ", html.status().message()));
    }
  }
  for (const auto& [label, r] : j.rec.final_reports()) {
    if (!absl::StartsWith(label, std::string(kEvalLabelPrefix))) res.add_artifacts(label + ".pt");
  }
  // <label>.onnx next to <label>.pt where the worker exported it (listed after every .pt).
  for (const auto& [label, r] : j.rec.final_reports()) {
    if (j.params.Find(absl::StrCat(kArtifactPrefix, label, ".onnx")) != nullptr) {
      res.add_artifacts(label + ".onnx");
    }
  }
  NAS_RETURN_IF_ERROR(store_->PutResult(j.rec.job_id(), res.SerializeAsString()));
  return CommitRound(j, {});
}

absl::Status JobManager::CommitRound(Job& j, std::vector<std::string> events) {
  bool round_end = j.stage == Job::Stage::kWeights || j.stage == Job::Stage::kArch;
  if (round_end) j.driver->FinishRound();
  bool search_done = round_end && j.driver->done();
  if (search_done) {
    j.rec.set_search_finished_unix_ms(UnixMs(options_.clock()));
    events.push_back(
        j.driver->HistoryLine("final", j.driver->ema_loss(), j.driver->last_arch_accuracy()));
    PlanFinalStage(j);  // sets the record's state and derived architecture
  }
  const bool background = commits_ != nullptr && round_end && !search_done;
  if (!background) AwaitCommits(j);  // written in order after the job's queued rounds
  RoundCommit c;
  c.job_id = j.rec.job_id();
  c.round = j.driver->round();
  c.search_state = j.driver->SaveState();
  c.tensors = j.params.ChangedTensors();
  c.events = events;
  // The record (with the job's latency table) only when it changed since it was last written.
  std::string record = j.rec.SerializeAsString();
  if (record != j.persisted_record) c.job_record = record;
  RoundGauges gauges = GaugesOf(*j.driver, j.rec);
  if (round_end) {
    gauges.weight_steps = static_cast<double>(j.driver->weight_steps() - j.steps_in_metrics);
    j.steps_in_metrics = j.driver->weight_steps();
  }
  if (background) {
    // The writer records the gauges once the round is written (OnWritten).
    if (c.job_record.has_value()) j.persisted_record = *c.job_record;
    commits_->Enqueue(std::move(c), gauges);
  } else {
    absl::Time t0 = absl::Now();
    NAS_RETURN_IF_ERROR(store_->CommitRound(c));
    j.committed_round = c.round;
    if (c.job_record.has_value()) j.persisted_record = std::move(*c.job_record);
    if (round_end) {
      RecordRound(options_.metrics, j.rec.job_id(), absl::ToDoubleSeconds(absl::Now() - t0),
                  gauges);
    }
  }
  j.params.ClearChanged();
  for (std::string& e : events) j.history.push_back(std::move(e));
  ++j.change;
  changed_.SignalAll();
  if (round_end && !search_done) PlanWeightStage(j);
  if (search_done && j.tasks.empty()) return FinishJob(j);  // no final training
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// The queue

void JobManager::RefreshQuotas() {
  std::shared_ptr<const QuotaConfig> c = options_.quotas ? options_.quotas() : nullptr;
  if (c == nullptr) c = quota_config_ != nullptr ? quota_config_ : std::make_shared<QuotaConfig>();
  if (c != quota_config_) {
    quota_config_ = std::move(c);
    ledger_->Configure(quota_config_->half_life, quota_config_->window);
    tenant_quotas_.clear();
  }
  KnowTenants();
}

void JobManager::KnowTenants() {
  for (int t = static_cast<int>(tenant_quotas_.size()); t < ledger_->size(); ++t) {
    tenant_quotas_.push_back(quota_config_->For(ledger_->name(t)));
  }
}

absl::Status JobManager::Release(const ReleaseTaskRequest& r) {
  if (r.reason().size() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason: ", r.reason().size(), " bytes, at most 1024"));
  }
  absl::MutexLock lock(&mu_);
  Job* j = nullptr;
  Lease* l = CurrentLease(r.lease_id(), &j);
  if (l == nullptr || l->slot.worker_id != r.worker_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease_id: '", r.lease_id(), "' is not a current lease of worker '",
                     r.worker_id(), "' (expired, re-issued, completed or another worker's)"));
  }
  Charge(*j, l->slot, options_.clock());
  leases_->Requeue(l->slot, r.lease_id());
  Log(absl::StrCat("lease ", r.lease_id(), " (", TaskKind(l->task), " task", ChainNote(l->task),
                   ", of job ", j->rec.job_id(), ") handed back by worker ", r.worker_id(),
                   r.reason().empty() ? "" : absl::StrCat(" (", absl::CHexEscape(r.reason()), ")"),
                   "; re-issuing the task now"));
  l->task.clear_lease_id();
  if (options_.metrics != nullptr) options_.metrics->Task(TaskKind(l->task), "released");
  changed_.SignalAll();
  return absl::OkStatus();
}

void JobManager::Charge(const Job& job, const LeaseSlot& slot, absl::Time now) {
  if (slot.state == LeaseSlot::State::kLeased) ledger_->Release(job.tenant_index, slot.granted, now);
}

void JobManager::DescribeForScheduler(absl::Time now, bool admitted_only) {
  KnowTenants();
  std::vector<SchedulingJob>& jobs = scratch_jobs_;
  std::vector<Lease*>& first_queued = scratch_tasks_;
  std::vector<Job*>& ptrs = scratch_job_ptrs_;
  jobs.clear();
  first_queued.clear();
  ptrs.clear();
  for (auto& [id, jp] : jobs_) {
    Job& j = *jp;
    const std::string& state = j.rec.state();
    if (Terminal(state)) continue;
    const bool admitted = state != "QUEUED";
    if (admitted_only && !admitted) continue;
    Lease* first = nullptr;
    for (Lease& l : j.tasks) {
      if (l.slot.state == LeaseSlot::State::kQueued) {
        first = &l;
        break;
      }
    }
    SchedulingJob& c = jobs.emplace_back();
    c.job_id = id;
    c.tenant = j.rec.spec().tenant();
    c.tenant_index = j.tenant_index;
    c.priority = j.rec.spec().priority();
    c.submitted_unix_ms = j.rec.submitted_unix_ms();
    c.queued_since_unix_ms = j.rec.queued_since_unix_ms();
    c.admitted = admitted;
    // A job that must yield gets tasks only to finish its round.
    c.has_queued_task = first != nullptr && !(j.yielding && j.AtRoundBoundary());
    c.pending_commits = commits_ != nullptr ? commits_->Pending(id) : 0;
    c.device = j.rec.spec().device();
    // A final task measures the derived network's latency: on a worker of the job's device
    // whenever one is registered (the report says where it was measured).
    c.needs_device = first != nullptr && first->task.has_final() &&
                     leases_->LiveMeasuring(c.device) > 0;
    first_queued.push_back(first);
    ptrs.push_back(&j);
  }
  std::vector<SchedulingTenant>& tenants = scratch_tenants_;
  tenants.resize(ledger_->size());
  const absl::Time window_end = ledger_->WindowEnd(now);
  for (int t = 0; t < ledger_->size(); ++t) {
    SchedulingTenant& x = tenants[t];
    const TenantQuotaSpec& q = tenant_quotas_[t];
    x.name = ledger_->name(t);
    x.weight = q.weight;
    x.decayed_seconds = ledger_->ShareSeconds(t, now);
    x.window_hours = ledger_->WindowSeconds(t, now) / 3600;
    x.workers_held = ledger_->held(t);
    x.max_running_jobs = q.max_running_jobs;
    x.max_workers = q.max_workers;
    x.worker_hours_per_window = q.worker_hours_per_window;
    x.window_ends_unix_ms = UnixMs(window_end);
  }
}

void JobManager::RunAdmission() {
  const absl::Time now = options_.clock();
  DescribeForScheduler(now, /*admitted_only=*/false);
  SchedulingInput in;
  in.jobs = scratch_jobs_;
  in.tenants = scratch_tenants_;
  in.now_unix_ms = UnixMs(now);
  in.aging = quota_config_->aging;
  std::vector<Admission> plan = scheduler_->Admit(in);
  // The admitted jobs' estimated remaining seconds per tenant (progress rate so far), for the
  // waiting jobs' estimated start.
  std::map<int, std::vector<double>> remaining;
  std::vector<std::string> yield_now;
  for (size_t i = 0; i < plan.size(); ++i) {
    Job& j = *scratch_job_ptrs_[i];
    const Admission& a = plan[i];
    const bool queued = j.rec.state() == "QUEUED";
    if (a.admit && queued) {
      // Admitted: it continues in the state it waited in.
      j.rec.set_state(j.resume_state.empty() ? "PREPARING" : j.resume_state);
      j.resume_state.clear();
      j.rec.clear_wait_reason();
      j.queue_position = 0;
      j.estimated_start_ms = 0;
      j.next_try = absl::InfinitePast();
      if (options_.metrics != nullptr) {
        options_.metrics->QueueWait(
            j.rec.spec().tenant(),
            absl::ToDoubleSeconds(now - absl::FromUnixMillis(j.rec.queued_since_unix_ms())));
      }
      ++j.change;
      changed_.SignalAll();
    } else if (a.admit) {
      if (j.yielding) {
        j.yielding = false;  // its slot is its own again
        j.rec.clear_wait_reason();
        ++j.change;
      }
    } else if (queued) {
      if (j.queue_position != a.position || j.rec.wait_reason() != a.reason) ++j.change;
      j.queue_position = a.position;
      j.rec.set_wait_reason(a.reason);
    } else {
      if (!j.yielding) {
        j.yielding = true;
        ++j.change;
        Log(absl::StrCat("job ", j.rec.job_id(), ": ", a.reason));
      }
      j.queue_position = a.position;
      j.rec.set_wait_reason(a.reason);
      if (j.AtRoundBoundary()) yield_now.push_back(j.rec.job_id());
    }
    if (a.admit && j.driver && j.weight_steps() > 0 && j.rec.search_started_unix_ms() > 0) {
      double elapsed = (UnixMs(now) - j.rec.search_started_unix_ms()) / 1000.0;
      double rate = j.weight_steps() / std::max(1e-3, elapsed);
      remaining[j.tenant_index].push_back(
          (j.driver->total_weight_steps() - j.weight_steps()) / std::max(1e-9, rate));
    }
  }
  for (auto& [t, r] : remaining) std::sort(r.begin(), r.end());
  for (size_t i = 0; i < plan.size(); ++i) {
    Job& j = *scratch_job_ptrs_[i];
    if (j.rec.state() != "QUEUED") continue;
    const SchedulingTenant& t = scratch_tenants_[j.tenant_index];
    j.estimated_start_ms = 0;
    if (t.over_budget()) {
      j.estimated_start_ms = t.window_ends_unix_ms;
    } else {
      auto it = remaining.find(j.tenant_index);
      if (it != remaining.end() && j.queue_position >= 1 &&
          j.queue_position <= static_cast<int>(it->second.size())) {
        j.estimated_start_ms =
            UnixMs(now) + static_cast<int64_t>(it->second[j.queue_position - 1] * 1000);
      }
    }
  }
  for (const std::string& id : yield_now) {
    Job* j = FindJob(id);  // found again: a yield's write may release the lock
    if (j != nullptr) MaybeYield(*j);
  }
}

bool JobManager::MaybeYield(Job& j) {
  if (!j.yielding || Terminal(j.rec.state()) || j.rec.state() == "QUEUED" || !j.AtRoundBoundary()) {
    return false;
  }
  const absl::Time now = options_.clock();
  j.yielding = false;
  j.resume_state = j.rec.state();
  j.rec.set_state("QUEUED");
  j.rec.set_preemptions(j.rec.preemptions() + 1);
  j.rec.set_queued_since_unix_ms(UnixMs(now));
  if (j.stage == Job::Stage::kNone) j.next_try = absl::InfinitePast();
  Log(absl::StrCat("job ", j.rec.job_id(), ": yielded its workers at round ",
                   j.driver ? j.driver->round() : 0, " and waits QUEUED (", j.rec.wait_reason(),
                   ")"));
  if (options_.metrics != nullptr) options_.metrics->Preempted(j.rec.spec().tenant());
  absl::Status s = PersistRecord(j);
  if (!s.ok()) {
    Log(absl::StrCat("job ", j.rec.job_id(), ": cannot store QUEUED: ", s.message()));
  }
  UpdateGauges();
  return true;
}

std::vector<CoordinatorMetrics::TenantFigures> JobManager::TenantFiguresNow(absl::Time now) const {
  std::vector<CoordinatorMetrics::TenantFigures> figures(ledger_->size());
  for (const auto& [id, j] : jobs_) {
    if (Terminal(j->rec.state())) continue;
    CoordinatorMetrics::TenantFigures& f = figures[j->tenant_index];
    (j->rec.state() == "QUEUED" ? f.queued_jobs : f.running_jobs) += 1;
  }
  double usage_sum = 0, weight_sum = 0;
  for (int t = 0; t < ledger_->size(); ++t) {
    CoordinatorMetrics::TenantFigures& f = figures[t];
    const TenantQuotaSpec q =
        t < static_cast<int>(tenant_quotas_.size()) ? tenant_quotas_[t] : TenantQuotaSpec{};
    f.tenant = ledger_->name(t);
    f.usage_seconds = ledger_->DecayedSeconds(t, now);
    f.window_hours = ledger_->WindowSeconds(t, now) / 3600;
    f.workers_held = ledger_->held(t);
    f.weight = q.weight;
    f.max_running_jobs = q.max_running_jobs;
    f.max_workers = q.max_workers;
    f.worker_hours_per_window = q.worker_hours_per_window;
    if (f.running_jobs + f.queued_jobs > 0) {
      usage_sum += f.usage_seconds;
      weight_sum += q.weight;
    }
  }
  // Shares among the tenants with active jobs (an idle tenant's are 0).
  for (CoordinatorMetrics::TenantFigures& f : figures) {
    if (f.running_jobs + f.queued_jobs > 0) {
      f.share = usage_sum > 0 ? f.usage_seconds / usage_sum : 0;
      f.fair_share = weight_sum > 0 ? f.weight / weight_sum : 0;
    }
  }
  return figures;
}

GetQueueReply JobManager::Queue(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock();
  GetQueueReply reply;
  reply.set_policy(std::string(scheduler_->name()));
  reply.set_live_workers(leases_->live_workers());
  const std::vector<CoordinatorMetrics::TenantFigures> figures = TenantFiguresNow(now);
  // Per tenant index: its active jobs, running first then the queue in order.
  std::map<int, std::vector<const Job*>> active;
  for (const auto& [id, jp] : jobs_) {
    if (!Terminal(jp->rec.state())) active[jp->tenant_index].push_back(jp.get());
  }
  for (int t = 0; t < ledger_->size(); ++t) {
    const CoordinatorMetrics::TenantFigures& f = figures[t];
    if (!tenant.empty() && f.tenant != tenant) continue;
    auto it = active.find(t);
    if (tenant.empty() && it == active.end()) continue;  // idle tenants only when asked by name
    TenantQueue* q = reply.add_tenants();
    q->set_tenant(f.tenant);
    q->set_weight(f.weight);
    q->set_usage_worker_seconds(f.usage_seconds);
    q->set_share(f.share);
    q->set_fair_share(f.fair_share);
    q->set_workers_held(f.workers_held);
    q->set_running_jobs(f.running_jobs);
    q->set_queued_jobs(f.queued_jobs);
    q->set_max_running_jobs(static_cast<int>(f.max_running_jobs));
    q->set_max_workers(static_cast<int>(f.max_workers));
    q->set_worker_hours_per_window(f.worker_hours_per_window);
    q->set_window_worker_hours(f.window_hours);
    q->set_window_ends_unix_ms(UnixMs(ledger_->WindowEnd(now)));
    if (it == active.end()) continue;
    std::vector<const Job*> jobs = it->second;
    std::stable_sort(jobs.begin(), jobs.end(), [](const Job* a, const Job* b) {
      bool qa = a->rec.state() == "QUEUED", qb = b->rec.state() == "QUEUED";
      if (qa != qb) return qb;
      return qa && a->queue_position < b->queue_position;
    });
    for (const Job* j : jobs) *q->add_jobs() = StatusOf(*j);
  }
  return reply;
}

// ---------------------------------------------------------------------------------------------
// Deletion

namespace {

// Jobs past their retention deleted in one tick at most (each is a store delete and a
// compaction, on the ticker's thread); the rest go in the next ticks.
constexpr int kMaxRetentionDeletesPerTick = 16;
// After a failed store delete, retention tries the job again this much later.
constexpr absl::Duration kRetentionRetry = absl::Minutes(1);

}  // namespace

absl::Status JobManager::Delete(const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    Job* j = FindJob(job_id);
    if (j == nullptr) return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
    if (!Terminal(j->rec.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is ", j->rec.state(),
                       "; only a job that ended (DONE, FAILED, CANCELLED) can be deleted: cancel "
                       "it first"));
    }
    if (j->deleting) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is already being deleted"));
    }
    j->deleting = true;
  }
  absl::Status s = EraseJob(job_id);
  if (s.ok()) Log(absl::StrCat("job ", job_id, ": deleted"));
  return s;
}

absl::Status JobManager::EraseJob(const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    Job* j = FindJob(job_id);  // marked `deleting`: only this call erases it
    AwaitCommits(*j);
    // A thread that ended the job (Cancel, Fail) may still wait for its commits before it
    // writes the final record: that record goes first, and the thread lets go of the job.
    mu_.Await(absl::Condition(+[](Job* job) { return job->awaiting_commits == 0; }, j));
  }
  absl::Status s = store_->DeleteJob(job_id);
  std::unique_ptr<Job> gone;  // destroyed (tensors and all) after the lock is released
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (!s.ok()) {
    it->second->deleting = false;
    it->second->retry_delete_at = options_.clock() + kRetentionRetry;
    return s;
  }
  gone = std::move(it->second);
  jobs_.erase(it);
  UpdateGauges();
  changed_.SignalAll();  // its watchers see it gone
  return absl::OkStatus();
}

void JobManager::RunRetention() {
  if (options_.retention == absl::InfiniteDuration()) return;
  struct Expired {
    std::string id;
    std::string state;
    absl::Time finished;
  };
  std::vector<Expired> expired;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock();
    for (auto& [id, j] : jobs_) {
      // A job that never recorded its end (a record that did not parse) stays until deleted.
      if (!Terminal(j->rec.state()) || j->deleting || j->rec.finished_unix_ms() <= 0 ||
          j->awaiting_commits > 0 || j->retry_delete_at > now) {
        continue;
      }
      const absl::Time finished = absl::FromUnixMillis(j->rec.finished_unix_ms());
      if (now - finished < options_.retention) continue;
      j->deleting = true;
      expired.push_back({id, j->rec.state(), finished});
      if (static_cast<int>(expired.size()) >= kMaxRetentionDeletesPerTick) break;
    }
  }
  for (const Expired& e : expired) {
    absl::Status s = EraseJob(e.id);
    const std::string what =
        absl::StrCat("job ", e.id, " (", e.state, " at ",
                     absl::FormatTime("%Y-%m-%d %H:%M:%S", e.finished, absl::UTCTimeZone()),
                     ", retention ", absl::FormatDuration(options_.retention), ")");
    if (s.ok()) {
      Log(absl::StrCat(what, ": deleted"));
    } else {
      Log(absl::StrCat(what, ": cannot delete it (", s.message(), "); kept, tried again in ",
                       absl::FormatDuration(kRetentionRetry)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Time

void JobManager::CountSentBytes(int64_t bytes) {
  if (options_.metrics != nullptr)
    options_.metrics->TensorBytes("fetched", static_cast<double>(bytes));
}

void JobManager::Tick() {
  std::vector<std::string> to_prepare;
  std::string usage;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = options_.clock();
    for (auto& [id, jp] : jobs_) {
      Job& j = *jp;
      for (Lease& l : j.tasks) {
        std::string worker;
        const absl::Time granted = l.slot.granted;
        if (leases_->ExpireIfDue(l.slot, l.task.lease_id(), now, &worker)) {
          ledger_->Release(j.tenant_index, granted, now);
          Log(absl::StrCat("lease ", l.task.lease_id(), " (", TaskKind(l.task), " task",
                           ChainNote(l.task), ", of job ", id, ", worker ", worker,
                           ") expired; re-issuing the task"));
          l.task.clear_lease_id();
          if (options_.metrics != nullptr) {
            options_.metrics->LeaseExpired();
            options_.metrics->Task(TaskKind(l.task), "expired");
          }
          changed_.SignalAll();
        }
      }
      if (j.rec.state() == "PREPARING" && !j.preparing && j.next_try <= now) {
        to_prepare.push_back(id);
      }
    }
    for (const LeaseTable::Worker& w : leases_->ExpireWorkers()) {
      Log(absl::StrCat("worker ", w.id, " (", w.name, ") silent since ",
                       absl::FormatTime(w.last_seen), ": forgotten"));
    }
    RefreshQuotas();
    RunAdmission();
    for (auto& [id, jp] : jobs_) {
      if (jp->rec.state() == "PREPARING" && !jp->preparing && jp->next_try <= now &&
          std::find(to_prepare.begin(), to_prepare.end(), id) == to_prepare.end()) {
        to_prepare.push_back(id);  // admitted just now
      }
    }
    UpdateGauges();
    if (now - last_usage_write_ >= absl::Seconds(1) && ledger_->version() != usage_version_) {
      last_usage_write_ = now;
      usage_version_ = ledger_->version();
      usage = ledger_->Serialize(now);
    }
  }
  // The usage at most once a second when it changed, outside the job lock (a synced write).
  if (!usage.empty()) {
    absl::MutexLock lock(&usage_mu_);
    absl::Status s = store_->PutTenantUsage(usage);
    if (!s.ok()) Log(absl::StrCat("cannot store the tenants' usage: ", s.message()));
  }
  for (const std::string& id : to_prepare) Prepare(id);
  RunRetention();
}

void JobManager::UpdateGauges() {
  if (options_.metrics == nullptr) return;
  std::map<std::string, int> by_state;
  std::map<std::string, int> queued;
  bool degraded = false;
  for (const auto& [id, j] : jobs_) {
    ++by_state[j->rec.state()];
    degraded = degraded || j->degraded;
    int& q = queued[j->rec.spec().tenant()];
    for (const Lease& l : j->tasks) q += l.slot.state == LeaseSlot::State::kQueued ? 1 : 0;
  }
  options_.metrics->SetJobs(by_state);
  for (const auto& [tenant, n] : queued) options_.metrics->SetQueueDepth(tenant, n);
  options_.metrics->SetWorkers(leases_->live_workers(), leases_->dead_workers());
  options_.metrics->SetLatencyDegraded(degraded);
  // Per tenant: every tenant seen since the start (an idle one reads 0 jobs, its usage decaying).
  KnowTenants();
  for (const CoordinatorMetrics::TenantFigures& f : TenantFiguresNow(options_.clock())) {
    options_.metrics->SetTenant(f);
  }
}

}  // namespace nas
