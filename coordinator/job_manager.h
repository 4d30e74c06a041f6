// The coordinator's domain logic, without gRPC or LibTorch: search jobs, their architecture
// parameters (through core/search_driver.h), the parameter store, the round scheduler, leases,
// fencing and checkpoints.
//
// A job goes QUEUED (until the scheduler admits it under its tenant's quotas) -> PREPARING (its latencies are fetched once from the latency service and
// kept in the job record; a failing service is retried with backoff and the job is marked
// degraded) -> RUNNING (an init task builds the supernet on a worker and uploads every tensor;
// then rounds: weight tasks from one parameter version, merged in task order - tensors returned
// by several tasks are averaged - then the arch tasks due, whose gate gradients update alpha in
// task order; every round ends with one atomic, synced RocksDB write batch) -> FINAL (the
// derived network, and the baseline, are trained from scratch and measured on workers) -> DONE.
//
// Tasks are leases: a lease expires `lease` after its last heartbeat and the task is re-issued
// under a new lease id; a result for any lease but the current one is refused
// (FailedPrecondition), so nothing is applied twice. Lease ids carry the coordinator's
// incarnation (a counter in the store), so they never repeat across restarts. After a crash,
// Create() reloads every job and continues from its last committed round; the round in flight
// is planned again from the committed RNG state, so it is the same round.
//
// The JobManager is the jobs' state machine (stages, rounds, recovery, results) over pieces
// that each own one concern, with their own unit tests: ParamStore (param_store.h: a job's
// tensors, versions, owner groups, the merge), LeaseTable (lease_table.h: workers, leases,
// fencing, expiry), CommitPipeline (commit_pipeline.h: the background checkpoint writer) and
// a Scheduler (scheduler.h: which job's task goes to a free worker). They are called with the
// JobManager's lock held.
//
//   NAS_ASSIGN_OR_RETURN(auto store, CheckpointStore::Open(dir));
//   NAS_ASSIGN_OR_RETURN(auto jobs, JobManager::Create(store.get(), &latency, {}));
//   NAS_ASSIGN_OR_RETURN(std::string id, jobs->Submit(spec));
//
// The queue (scheduler.h): admission runs on every submission, every job's end and every tick;
// a free worker gets the next task of the job the scheduler picks (fair share across tenants by
// default). A job the scheduler preempts finishes its round and then goes back to QUEUED, its
// next round planned and kept; admitted again it continues exactly where it stopped (the same
// tasks, the same trajectory). The tenants' usage is kept in the store (once a second).
//
// Thread-safety: every public method may be called concurrently (one mutex inside; the latency
// service is called without holding it).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/checkpoint_store.h"
#include "coordinator/commit_pipeline.h"
#include "coordinator/handlers.h"
#include "coordinator/lease_table.h"
#include "coordinator/metrics.h"
#include "coordinator/quota_config.h"
#include "coordinator/scheduler.h"
#include "core/latency_table.h"
#include "core/search_driver.h"
#include "nas/search.pb.h"
#include "nas/worker.pb.h"

namespace nas {

// Where a job's latencies come from (the latency service in production; a table in tests).
class LatencyProvider {
 public:
  virtual ~LatencyProvider() = default;
  // The table of `device` for `keys`; Unavailable when the source cannot be reached.
  virtual absl::StatusOr<LatencyTable> Fetch(const std::string& device,
                                             const std::vector<std::string>& keys) = 0;
};

class LeaseTable;
class TenantLedger;
struct QuotaConfig;

struct JobManagerOptions {
  // A lease lasts this long after it is granted or heartbeated. Default 60 s.
  absl::Duration lease = absl::Seconds(60);
  // Workers are asked to heartbeat this often. Default 2 s.
  absl::Duration heartbeat = absl::Seconds(2);
  // A worker silent for this long is dead. Default 20 s.
  absl::Duration worker_timeout = absl::Seconds(20);
  // A dead worker is forgotten this long after it went silent (its id is then unknown: if it
  // comes back it registers again). Default 10 min.
  absl::Duration forget_worker_after = absl::Minutes(10);
  // Registered workers at most; RegisterWorker beyond it is ResourceExhausted. Default 10000.
  int max_workers = 10000;
  // A job that ended (DONE, FAILED, CANCELLED) is deleted, as by Delete, once it ended this
  // long ago (Tick; at most 16 jobs a tick). absl::InfiniteDuration() keeps every job until it
  // is deleted by hand; zero deletes a job at the first tick after it ends. Default 30 days.
  absl::Duration retention = absl::Hours(30 * 24);
  // Latency-service retries: first delay, doubling up to the maximum. Defaults 0.5 s, 10 s.
  absl::Duration latency_retry_initial = absl::Milliseconds(500);
  absl::Duration latency_retry_max = absl::Seconds(10);
  // The clock (tests inject one). Default absl::Now.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Metrics sink; null for none. Default null.
  CoordinatorMetrics* metrics = nullptr;
  // Write a search round's checkpoint in the background while the next round runs, instead of
  // before the result that ends the round is acknowledged. The next round's tasks go out once
  // the round is merged in memory, and a job is never more than two rounds ahead of its
  // checkpoint (its tasks wait). A round is acknowledged once it is written
  // (JobStatus.committed_round, and the round's metrics); a task result's OK then means
  // "applied", not "durable". A coordinator crash loses the unwritten rounds (at most two),
  // which the restart plans again from the committed state: the same tasks, the same
  // trajectory. Initialisation, the end of the search, final results and job records are
  // written before they are acknowledged either way. false: every result that ends a round
  // waits for the round's synced write (~8 ms per ~1.1 MB round on the 2-core development
  // machine, ~2 ms of it the fsync, the rest RocksDB's CPU). Default false: an acknowledged
  // result is then a durable one, the simpler contract; on that machine, where the coordinator
  // shares the cores with the worker, the background write costs the worker's step much of what
  // it saves the upload (bench/RESULTS.md); it pays where the coordinator has cores of its own.
  bool pipelined_commits = false;
  // The queue policy: "fair-share" (quotas, weighted fair share on decayed usage, preemption)
  // or "priority" (every job admitted, highest priority first; the policy before tenants).
  // Default "fair-share".
  std::string scheduler = "fair-share";
  // The queue settings (quota_config.h), asked on every tick; null or returning null: the
  // defaults (every tenant weight 1, no limits, half-life 24 h, window 168 h, aging 1 h).
  std::function<std::shared_ptr<const QuotaConfig>()> quotas;
};

// The JobManager is the WorkerHandler (handlers.h) behind the worker gateway; the users'
// operations reach it through TenantScope (tenant_scope.h).
class JobManager final : public WorkerHandler {
 public:
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(CheckpointStore* store,
                                                            LatencyProvider* latency,
                                                            JobManagerOptions options);
  ~JobManager();

  // Users. Submit validates the spec (InvalidArgument naming the field) and returns once the
  // job is durable.
  absl::StatusOr<std::string> Submit(const JobSpec& spec);
  absl::StatusOr<JobStatus> Get(const std::string& job_id) const;
  std::vector<JobStatus> List(const std::string& tenant) const;
  absl::Status Cancel(const std::string& job_id);
  // Removes an ended job (DONE, FAILED, CANCELLED) and everything of it in the store, giving
  // its disk space back (CheckpointStore::DeleteJob); then Get, Result and WaitForChange (its
  // watchers too) are NotFound. NotFound for an unknown job, FailedPrecondition for one that has
  // not ended (cancel it first) or is already being deleted; a store error is returned and the
  // job stays as it was.
  absl::Status Delete(const std::string& job_id);
  // FailedPrecondition until the job is DONE.
  absl::StatusOr<JobResult> Result(const std::string& job_id) const;
  absl::StatusOr<std::string> Artifact(const std::string& job_id, const std::string& name) const;
  // Blocks until the job's status differs from `last` (round, state, steps) or `timeout`;
  // Unavailable once Stop() was called.
  absl::StatusOr<JobStatus> WaitForChange(const std::string& job_id, const JobStatus& last,
                                          absl::Duration timeout) const;

  // Workers.
  absl::StatusOr<RegisterWorkerReply> RegisterWorker(const RegisterWorkerRequest& request) override;
  // NotFound for an unknown worker (it should register again).
  absl::StatusOr<HeartbeatReply> Heartbeat(const HeartbeatRequest& request) override;
  // The next task (highest priority job first), waiting up to `wait`; nullopt when none;
  // Unavailable once Stop() was called. InvalidArgument for a name or device over
  // JobSpecLimits' name limits or outside their alphabet.
  absl::StatusOr<std::optional<Task>> Acquire(const std::string& worker_id,
                                              absl::Duration wait) override;
  // The named tensors of a current lease (each must be among the task's tensors).
  absl::StatusOr<std::vector<std::shared_ptr<const TensorBlob>>> Fetch(
      const std::string& lease_id, const std::vector<std::string>& names) override;
  // FailedPrecondition: the lease is not current (expired, re-issued, from before a restart).
  // InvalidArgument: malformed result (names, shapes, dtypes, sizes, gate gradients); nothing
  // changes and the lease stays current.
  absl::Status Complete(CompletedTask result) override;
  // A stopping worker hands its lease back: the task is queued again at once (another worker
  // gets it now, not after the lease's deadline), the lease is no longer current (a late result
  // for it is refused) and the tenant is charged for the time it was held. FailedPrecondition
  // when the lease is not current or was granted to another worker; nothing changes then.
  absl::Status Release(const ReleaseTaskRequest& request) override;

  // The queue as `tenant` sees it (every tenant when empty): usage, shares, quotas and its
  // active jobs in queue order.
  GetQueueReply Queue(const std::string& tenant) const;

  // Tensor bytes the gateway sent to workers (the nas_tensor_bytes_total "fetched" metric).
  void CountSentBytes(int64_t bytes) override;

  // Starts the shutdown: every waiting and later WaitForChange and Acquire returns Unavailable
  // ("shutting down"), so that open streams and long polls end before the server stops. The
  // other methods keep working until the manager is destroyed. Idempotent.
  void Stop();

  // Expires leases and workers (forgetting long-dead ones), retries preparation, deletes jobs
  // past their retention (outside the lock; a store error is logged and that job tried again a
  // minute later). Called by an internal thread every
  // 100 ms; tests with an injected clock may call it directly.
  void Tick();

 private:
  struct Job;
  struct Lease;
  explicit JobManager(CheckpointStore* store, LatencyProvider* latency, JobManagerOptions options);

  // Reloads every job; one whose stored state cannot be read is marked FAILED with the reason
  // and the others recover. An error only when the list of jobs itself cannot be read.
  absl::Status Recover();
  absl::Status RecoverJob(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A job recorded in an admitted state (PREPARING, RUNNING, FINAL, DONE): its last committed
  // round restored and the next one planned.
  absl::Status RecoverAdmitted(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Prepare(const std::string& job_id);
  Job* FindJob(const std::string& job_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The leased task of a current lease (and its job), or null: expired, re-issued, completed or
  // unknown.
  Lease* CurrentLease(const std::string& lease_id, Job** job) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobStatus StatusOf(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StartSearch(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The search plan of a job whose init task reported its split sizes.
  static absl::StatusOr<SearchPlan> PlanOf(const Job& job);
  // A task of the job with its header (job, round, space, data) filled in.
  static Lease NewTask(const Job& job);
  // Lists (and allows) the job's tensors of the candidates in `keep` and the fixed layers;
  // momentum too when asked.
  static void ListTensors(Job& job, const std::vector<std::vector<bool>>& keep, bool momentum,
                          Lease& lease);
  void PlanWeightStage(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PlanFinalStage(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AdvanceStage(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DONE: the result (report, architecture, history, table) stored with the final commit.
  absl::Status FinishJob(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CommitRound(Job& job, std::vector<std::string> events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistRecord(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits (releasing mu_) until the job's background commits are written, so that a write
  // that follows them lands after them.
  void AwaitCommits(const Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletion. EraseJob removes a job marked `deleting` from the store (without mu_), then
  // from jobs_; on a store error the job stays, unmarked. RunRetention deletes the ended jobs
  // past options_.retention.
  absl::Status EraseJob(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  void RunRetention() ABSL_LOCKS_EXCLUDED(mu_);
  // What the background writer reports of a round (pipelined commits).
  void OnWritten(const CommitPipeline::Written& written) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Validate(const Job& job, const Lease& lease, const CompletedTask& r) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fail(Job& job, const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The queue.
  // The active jobs (all, or only admitted ones) and the tenants as the scheduler sees them,
  // into scratch_jobs_ / scratch_tenants_ (first_queued: each job's first queued task).
  void DescribeForScheduler(absl::Time now, bool admitted_only)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the scheduler's admission: admits waiting jobs, marks jobs that must yield (they go
  // QUEUED at their round boundary), sets positions, reasons and estimated starts.
  void RunAdmission() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A yielding job at its round boundary goes back to QUEUED (persisted); true when it did.
  bool MaybeYield(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A lease of the job ended (result, expiry, cancellation): its time is charged to the tenant.
  void Charge(const Job& job, const LeaseSlot& slot, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The settings now in force (refreshing the per-tenant cache when they changed).
  void RefreshQuotas() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every known tenant's figures now (usage, shares among the tenants with active jobs, jobs,
  // quotas): the metrics and GetQueue.
  std::vector<CoordinatorMetrics::TenantFigures> TenantFiguresNow(absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The quotas of tenants the ledger learnt since (tenant_quotas_ as long as the ledger).
  void KnowTenants() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  CheckpointStore* store_;
  LatencyProvider* latency_;
  JobManagerOptions options_;
  uint64_t incarnation_ = 0;

  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;  // tasks became available or a job changed
  std::map<std::string, std::unique_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  // Workers, leases, fencing and expiry (set in Create, once the incarnation is known).
  std::unique_ptr<LeaseTable> leases_ ABSL_PT_GUARDED_BY(mu_);
  // Which job's task goes to a free worker (PriorityScheduler: highest priority, then the
  // oldest job, none more than two rounds ahead of its checkpoint).
  const std::unique_ptr<Scheduler> scheduler_;
  // Acquire's view of the active jobs for the scheduler, reused from call to call.
  std::vector<SchedulingJob> scratch_jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<Lease*> scratch_tasks_ ABSL_GUARDED_BY(mu_);
  std::vector<Job*> scratch_job_ptrs_ ABSL_GUARDED_BY(mu_);
  std::vector<SchedulingTenant> scratch_tenants_ ABSL_GUARDED_BY(mu_);
  // The tenants' usage, and each known tenant's quotas under the settings in force.
  std::unique_ptr<TenantLedger> ledger_ ABSL_PT_GUARDED_BY(mu_);
  std::shared_ptr<const QuotaConfig> quota_config_ ABSL_GUARDED_BY(mu_);
  std::vector<TenantQuotaSpec> tenant_quotas_ ABSL_GUARDED_BY(mu_);
  absl::Time last_usage_write_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t usage_version_ ABSL_GUARDED_BY(mu_) = 0;  // the ledger's version last written
  absl::Mutex usage_mu_;  // orders the usage writes of concurrent Ticks
  uint64_t next_job_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int recovery_failures_ = 0;  // jobs marked FAILED by Recover (for its log line)

  struct Ticker;
  std::unique_ptr<Ticker> ticker_;
  // The background writer (pipelined commits only; null otherwise). Shares mu_ and changed_.
  std::unique_ptr<CommitPipeline> commits_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace nas
