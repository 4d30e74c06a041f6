#include "coordinator/scheduler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace nas {

std::vector<Admission> Scheduler::Admit(const SchedulingInput& in) const {
  return std::vector<Admission>(in.jobs.size());
}

SchedulingDecision PriorityScheduler::Next(const SchedulingInput& in) const {
  SchedulingDecision d;
  for (int i = 0; i < static_cast<int>(in.jobs.size()); ++i) {
    const SchedulingJob& j = in.jobs[i];
    if (!j.admitted || !j.has_queued_task) continue;
    if (j.pending_commits >= options_.max_pending_commits) continue;  // ahead of its checkpoint
    if (j.needs_device && !in.worker.Measures(j.device)) continue;
    if (d.job < 0 || j.priority > in.jobs[d.job].priority) d.job = i;
  }
  return d;
}

SchedulingDecision FairShareScheduler::Next(const SchedulingInput& in) const {
  SchedulingDecision d;
  double best_share = 0;
  for (int i = 0; i < static_cast<int>(in.jobs.size()); ++i) {
    const SchedulingJob& j = in.jobs[i];
    if (!j.admitted || !j.has_queued_task) continue;
    if (j.pending_commits >= options_.max_pending_commits) continue;
    if (j.needs_device && !in.worker.Measures(j.device)) continue;
    double share = 0;
    if (j.tenant_index >= 0 && j.tenant_index < static_cast<int>(in.tenants.size())) {
      const SchedulingTenant& t = in.tenants[j.tenant_index];
      if (t.at_worker_quota() || t.over_budget()) continue;
      share = t.decayed_seconds / t.weight;
    }
    if (d.job < 0) {
      d.job = i;
      best_share = share;
      continue;
    }
    const SchedulingJob& b = in.jobs[d.job];
    // The least-served tenant; within it (or at equal shares) the highest priority, then the
    // first in submission order.
    bool better = share < best_share || (share == best_share && j.priority > b.priority);
    if (better) {
      d.job = i;
      best_share = share;
    }
  }
  return d;
}

std::vector<Admission> FairShareScheduler::Admit(const SchedulingInput& in) const {
  const int n = static_cast<int>(in.jobs.size());
  std::vector<Admission> out(n);
  const double aging_ms = std::max(1.0, absl::ToDoubleMilliseconds(in.aging));
  auto effective = [&](const SchedulingJob& j) {
    if (j.admitted) return static_cast<double>(j.priority);
    double waited = static_cast<double>(std::max<int64_t>(0, in.now_unix_ms - j.queued_since_unix_ms));
    return j.priority + std::floor(waited / aging_ms);
  };
  // Job indices by tenant, each tenant's in the order it admits them (a job whose tenant the
  // input lacks is admitted).
  std::vector<std::vector<int>> by_tenant(in.tenants.size());
  for (int i = 0; i < n; ++i) {
    int t = in.jobs[i].tenant_index;
    if (t >= 0 && t < static_cast<int>(by_tenant.size())) {
      by_tenant[t].push_back(i);
    }
  }
  for (size_t t = 0; t < by_tenant.size(); ++t) {
    std::vector<int>& order = by_tenant[t];
    if (order.empty()) continue;
    const SchedulingTenant& tenant = in.tenants[t];
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      const SchedulingJob& x = in.jobs[a];
      const SchedulingJob& y = in.jobs[b];
      double ex = effective(x), ey = effective(y);
      if (ex != ey) return ex > ey;
      if (x.admitted != y.admitted) return x.admitted;  // the incumbent keeps its slot on a tie
      return a < b;                                     // then submission order
    });
    int slots = tenant.max_running_jobs > 0 ? tenant.max_running_jobs : n;
    if (tenant.over_budget()) slots = 0;
    int position = 0;
    for (int k = 0; k < static_cast<int>(order.size()); ++k) {
      Admission& a = out[order[k]];
      const SchedulingJob& j = in.jobs[order[k]];
      if (k < slots) continue;  // admitted
      a.admit = false;
      a.position = ++position;
      if (tenant.over_budget()) {
        a.reason = absl::StrFormat(
            "quota: tenant %s used its budget of %.6g worker-hours in this window (%.6g); the "
            "window ends %s",
            std::string(tenant.name), tenant.worker_hours_per_window, tenant.window_hours,
            absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                             absl::FromUnixMillis(tenant.window_ends_unix_ms),
                             absl::UTCTimeZone()));
      } else if (j.admitted) {
        a.reason = absl::StrCat("preempted: tenant ", tenant.name, " runs at most ",
                                tenant.max_running_jobs,
                                " job(s) at once and a job of higher priority (or one that waited "
                                "longer) takes the slot; it yields at its next round boundary");
      } else {
        a.reason = absl::StrCat("quota: tenant ", tenant.name, " runs at most ",
                                tenant.max_running_jobs, " job(s) at once");
      }
    }
  }
  return out;
}

}  // namespace nas
