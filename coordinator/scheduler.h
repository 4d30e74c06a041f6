// The queue policy: which jobs are admitted (hold a running slot) and which wait QUEUED or must
// yield at their next round boundary (Admit), and which admitted job's next task goes to a free
// worker (Next).
//
// A Scheduler sees no tasks, tensors or leases: the JobManager describes each active job in a
// SchedulingJob and each tenant in a SchedulingTenant (built under its lock, views of its
// records), asks, and applies the answer. Two policies:
// - FairShareScheduler (the default): per-tenant quotas (admitted jobs, workers held, a
//   worker-hours budget per window) and weighted fair share on decayed usage: a free worker
//   goes to the tenant with the least decayed worker-seconds per unit of weight among those
//   with work and room under their quotas; within a tenant the highest priority, then the
//   oldest job. A waiting job gains one priority level per `aging` it waits, so nothing
//   starves. Work-conserving: a tenant alone gets every worker its quotas allow.
// - PriorityScheduler (the policy before tenants existed; benchmarks compare against it):
//   admits every job, ignores tenants, highest priority then the oldest.
// Both skip a job `max_pending_commits` rounds ahead of its checkpoint (pipelined commits).
//
//   FairShareScheduler scheduler;
//   SchedulingInput in;
//   in.jobs = jobs;        // the active jobs in submission (job id) order
//   in.tenants = tenants;  // indexed by SchedulingJob::tenant_index
//   in.now_unix_ms = ...;
//   std::vector<Admission> plan = scheduler.Admit(in);  // one per job
//   in.worker = {worker_id, latency_devices};
//   int next = scheduler.Next(in).job;                   // -1: the worker waits
//
// Thread-safety: both methods are const and keep no state, so one Scheduler may serve
// concurrent callers; the input's views must stay valid during the call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace nas {

// An active (not DONE, FAILED or CANCELLED) job as the scheduler sees it.
struct SchedulingJob {
  absl::string_view job_id;
  absl::string_view tenant;
  int tenant_index = 0;  // into SchedulingInput::tenants (fair share only)
  int priority = 0;      // JobSpec.priority: higher first
  int64_t submitted_unix_ms = 0;
  // Holds a running slot (PREPARING, RUNNING, FINAL); false while QUEUED. Only admitted jobs
  // get tasks.
  bool admitted = true;
  // When it last began to wait (submission or preemption): its age for aging.
  int64_t queued_since_unix_ms = 0;
  bool has_queued_task = false;  // a task waits for a worker
  int pending_commits = 0;       // rounds applied but not yet written (pipelined commits)
  // Its first queued task measures latency, and a worker of `device` (the job's latency-table
  // device) is registered: the task must run on one.
  bool needs_device = false;
  absl::string_view device;
};

// A tenant's usage and quotas; 0 for a limit is "no limit".
struct SchedulingTenant {
  absl::string_view name;
  double weight = 1;
  // Decayed worker-seconds, held leases included (TenantLedger::ShareSeconds: a lease counts
  // from its grant as at least a mean lease's length).
  double decayed_seconds = 0;
  double window_hours = 0;     // worker-hours used in the current window
  int workers_held = 0;
  int max_running_jobs = 0;
  int max_workers = 0;
  double worker_hours_per_window = 0;
  int64_t window_ends_unix_ms = 0;
  bool over_budget() const {
    return worker_hours_per_window > 0 && window_hours >= worker_hours_per_window;
  }
  bool at_worker_quota() const { return max_workers > 0 && workers_held >= max_workers; }
};

// The worker asking for a task.
struct FreeWorker {
  absl::string_view worker_id;
  // The latency-table devices it measures as (RegisterWorkerRequest.latency_devices).
  absl::Span<const std::string> latency_devices;
  bool Measures(absl::string_view device) const {
    for (const std::string& d : latency_devices) {
      if (d == device) return true;
    }
    return false;
  }
};

struct SchedulingInput {
  absl::Span<const SchedulingJob> jobs;        // the active jobs in submission (job id) order
  absl::Span<const SchedulingTenant> tenants;  // may be empty for PriorityScheduler
  FreeWorker worker;
  int64_t now_unix_ms = 0;
  absl::Duration aging = absl::Hours(1);  // a waiting job gains a priority level per this
};

struct SchedulingDecision {
  // Index in SchedulingInput::jobs of the job whose first queued task goes to the worker; -1
  // for none (the worker waits).
  int job = -1;
};

// What Admit says of one job.
struct Admission {
  bool admit = true;  // hold (or take) a running slot; false: wait QUEUED, or yield if admitted
  int position = 0;   // 1-based among its tenant's jobs that are not admitted; 0 when admitted
  std::string reason;  // why not admitted ("quota: ...", "preempted: ...")
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual SchedulingDecision Next(const SchedulingInput& in) const = 0;
  // One Admission per job of `in.jobs`, in order.
  virtual std::vector<Admission> Admit(const SchedulingInput& in) const;
  virtual absl::string_view name() const = 0;
};

struct SchedulerOptions {
  // A job this many rounds ahead of its checkpoint gets no task until a round is written.
  // Default 2.
  int max_pending_commits = 2;
};

// Highest priority first; among equal priorities the job first in `jobs` (the oldest). Admits
// every job; ignores tenants, usage and quotas.
class PriorityScheduler : public Scheduler {
 public:
  using Options = SchedulerOptions;
  PriorityScheduler() : PriorityScheduler(Options()) {}
  explicit PriorityScheduler(Options options) : options_(options) {}
  SchedulingDecision Next(const SchedulingInput& in) const override;
  absl::string_view name() const override { return "priority"; }

 private:
  Options options_;
};

// Quotas and weighted fair share (see the top of this file).
class FairShareScheduler : public Scheduler {
 public:
  using Options = SchedulerOptions;
  FairShareScheduler() : FairShareScheduler(Options()) {}
  explicit FairShareScheduler(Options options) : options_(options) {}
  SchedulingDecision Next(const SchedulingInput& in) const override;
  // Per tenant: none over its worker-hours budget; else its jobs by effective priority
  // (priority + one level per `aging` waited; admitted jobs first among equals, then the
  // oldest), the first max_running_jobs admitted. An admitted job not among them must yield.
  std::vector<Admission> Admit(const SchedulingInput& in) const override;
  absl::string_view name() const override { return "fair-share"; }

 private:
  Options options_;
};

}  // namespace nas
