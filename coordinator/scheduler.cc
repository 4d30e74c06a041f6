#include "coordinator/scheduler.h"

namespace nas {

SchedulingDecision PriorityScheduler::Next(const SchedulingInput& in) const {
  SchedulingDecision d;
  for (int i = 0; i < static_cast<int>(in.jobs.size()); ++i) {
    const SchedulingJob& j = in.jobs[i];
    if (!j.has_queued_task) continue;
    if (j.pending_commits >= options_.max_pending_commits) continue;  // ahead of its checkpoint
    if (d.job < 0 || j.priority > in.jobs[d.job].priority) d.job = i;
  }
  return d;
}

}  // namespace nas
