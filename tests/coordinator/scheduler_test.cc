// The queue policy on its own: PriorityScheduler picks the highest priority, then the job first
// in submission order, skips jobs without a queued task and jobs too far ahead of their
// checkpoint, ignores usage and quotas, and never asks a job to yield.
#include "coordinator/scheduler.h"

#include <vector>

#include "gtest/gtest.h"

namespace nas {
namespace {

SchedulingJob Job(const char* id, int priority, bool queued = true, int pending = 0,
                  const char* tenant = "default") {
  SchedulingJob j;
  j.job_id = id;
  j.tenant = tenant;
  j.priority = priority;
  j.has_queued_task = queued;
  j.pending_commits = pending;
  return j;
}

int Next(const Scheduler& s, const std::vector<SchedulingJob>& jobs) {
  SchedulingInput in;
  in.jobs = jobs;
  in.worker = {"w1-1", "local-cpu"};
  SchedulingDecision d = s.Next(in);
  EXPECT_TRUE(d.yield.empty());
  return d.job;
}

TEST(PrioritySchedulerTest, NoJobsOrNoQueuedTaskMeansNone) {
  PriorityScheduler s;
  EXPECT_EQ(Next(s, {}), -1);
  EXPECT_EQ(Next(s, {Job("j1", 5, false), Job("j2", 0, false)}), -1);
}

TEST(PrioritySchedulerTest, HighestPriorityFirstThenTheOldest) {
  PriorityScheduler s;
  EXPECT_EQ(Next(s, {Job("j1", 0), Job("j2", 0), Job("j3", 0)}), 0);
  EXPECT_EQ(Next(s, {Job("j1", 0), Job("j2", 3), Job("j3", 3)}), 1);
  EXPECT_EQ(Next(s, {Job("j1", 0), Job("j2", 3), Job("j3", 7)}), 2);
  EXPECT_EQ(Next(s, {Job("j1", -2), Job("j2", -1)}), 1);
  // A higher-priority job without a queued task does not hold the others back.
  EXPECT_EQ(Next(s, {Job("j1", 0), Job("j2", 9, false), Job("j3", 1)}), 2);
}

TEST(PrioritySchedulerTest, AJobTwoRoundsAheadOfItsCheckpointWaits) {
  PriorityScheduler s;
  EXPECT_EQ(Next(s, {Job("j1", 0), Job("j2", 5, true, 1)}), 1);
  EXPECT_EQ(Next(s, {Job("j1", 0), Job("j2", 5, true, 2)}), 0);
  EXPECT_EQ(Next(s, {Job("j1", 0, true, 2), Job("j2", 5, true, 3)}), -1);
  PriorityScheduler::Options o;
  o.max_pending_commits = 4;
  PriorityScheduler patient(o);
  EXPECT_EQ(Next(patient, {Job("j1", 0), Job("j2", 5, true, 3)}), 1);
}

TEST(PrioritySchedulerTest, TenantsUsageAndQuotasDoNotChangeTheChoice) {
  PriorityScheduler s;
  std::vector<SchedulingJob> jobs = {Job("j1", 0, true, 0, "a"), Job("j2", 0, true, 0, "b")};
  std::vector<TenantUsage> usage = {{"a", 1e6, 8, 1}, {"b", 0, 0, 1}};
  std::vector<TenantQuota> quotas = {{"a", 1, 1, 1, 1}, {"b", 3, 0, 0, 0}};
  SchedulingInput in;
  in.jobs = jobs;
  in.usage = usage;
  in.quotas = quotas;
  in.worker = {"w1-1", "cuda"};
  SchedulingDecision d = s.Next(in);
  EXPECT_EQ(d.job, 0);
  EXPECT_TRUE(d.yield.empty());
}

// The interface another policy implements: here, the tenant with the least usage first.
class LeastUsedTenant : public Scheduler {
 public:
  SchedulingDecision Next(const SchedulingInput& in) const override {
    SchedulingDecision d;
    double best = 0;
    for (int i = 0; i < static_cast<int>(in.jobs.size()); ++i) {
      if (!in.jobs[i].has_queued_task) continue;
      double used = 0;
      for (const TenantUsage& u : in.usage) {
        if (u.tenant == in.jobs[i].tenant) used = u.worker_seconds;
      }
      if (d.job < 0 || used < best) {
        d.job = i;
        best = used;
      }
    }
    return d;
  }
};

TEST(SchedulerTest, APolicySeesTenantsAndUsage) {
  LeastUsedTenant s;
  std::vector<SchedulingJob> jobs = {Job("j1", 9, true, 0, "a"), Job("j2", 0, true, 0, "b")};
  std::vector<TenantUsage> usage = {{"a", 100, 1, 1}, {"b", 10, 1, 1}};
  SchedulingInput in;
  in.jobs = jobs;
  in.usage = usage;
  const Scheduler& base = s;
  EXPECT_EQ(base.Next(in).job, 1);
}

}  // namespace
}  // namespace nas
