// The queue policy: given the active jobs, the tenants' usage and quotas, and a free worker,
// which job's next task goes to the worker, and which jobs must yield their workers at their
// next round boundary.
//
// A Scheduler sees no tasks, tensors or leases: the JobManager describes each active job in a
// SchedulingJob (built under its lock, views of its records, no copies), asks Next, and hands
// the chosen job's first queued task to the worker. PriorityScheduler is today's policy:
// highest priority first, then the oldest job, skipping jobs too far ahead of their
// checkpoint. A weighted fair-share policy with quotas and preemption implements the same
// interface with the usage and quotas filled in (empty today) and uses `yield`.
//
//   PriorityScheduler scheduler;
//   std::vector<SchedulingJob> jobs = ...;  // the active jobs in submission order
//   SchedulingInput in;
//   in.jobs = jobs;
//   in.worker = {worker_id, device};
//   SchedulingDecision d = scheduler.Next(in);
//   if (d.job >= 0) ... lease jobs[d.job]'s first queued task to the worker ...
//
// Thread-safety: Next is const and keeps no state between calls, so one Scheduler may serve
// concurrent callers; the input's views must stay valid during the call (the JobManager calls
// it with its lock held).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace nas {

// An active (not DONE, FAILED or CANCELLED) job as the scheduler sees it.
struct SchedulingJob {
  absl::string_view job_id;
  absl::string_view tenant;
  int priority = 0;  // JobSpec.priority: higher first
  int64_t submitted_unix_ms = 0;
  bool has_queued_task = false;  // a task waits for a worker
  int pending_commits = 0;       // rounds applied but not yet written (pipelined commits)
};

// A tenant's use of the workers (empty until quotas exist).
struct TenantUsage {
  std::string tenant;
  double worker_seconds = 0;  // decayed worker-seconds
  int workers_held = 0;
  int running_jobs = 0;
};

// A tenant's share and limits (empty until quotas exist); 0 is "no limit".
struct TenantQuota {
  std::string tenant;
  double weight = 1;
  int max_running_jobs = 0;
  int max_workers = 0;
  double worker_hours_per_window = 0;
};

// The worker asking for a task.
struct FreeWorker {
  absl::string_view worker_id;
  absl::string_view device;
};

struct SchedulingInput {
  absl::Span<const SchedulingJob> jobs;  // the active jobs in submission (job id) order
  absl::Span<const TenantUsage> usage;   // may be empty
  absl::Span<const TenantQuota> quotas;  // may be empty
  FreeWorker worker;
};

struct SchedulingDecision {
  // Index in SchedulingInput::jobs of the job whose first queued task goes to the worker; -1
  // for none (the worker waits).
  int job = -1;
  // Indices of jobs that must give their workers back at their next round boundary (empty
  // unless the policy preempts).
  std::vector<int> yield;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual SchedulingDecision Next(const SchedulingInput& in) const = 0;
};

// Highest priority first; among equal priorities the job first in `jobs` (the oldest). Jobs
// without a queued task, and jobs `max_pending_commits` or more rounds ahead of their
// checkpoint, are skipped (their tasks wait). Never preempts; ignores usage and quotas.
class PriorityScheduler : public Scheduler {
 public:
  struct Options {
    // A job this many rounds ahead of its checkpoint gets no task until a round is written.
    // Default 2.
    int max_pending_commits = 2;
  };
  PriorityScheduler() : PriorityScheduler(Options()) {}
  explicit PriorityScheduler(Options options) : options_(options) {}
  SchedulingDecision Next(const SchedulingInput& in) const override;

 private:
  Options options_;
};

}  // namespace nas
