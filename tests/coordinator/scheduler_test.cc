// The queue policy on its own: PriorityScheduler picks the highest priority, then the job first
// in submission order, skips jobs without a queued task and jobs too far ahead of their
// checkpoint, ignores usage and quotas, and admits every job. FairShareScheduler: the least-served
// tenant per unit of weight first, quotas on workers, running jobs and worker-hours, preemption
// by priority within a tenant, aging.
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
  static const std::vector<std::string> kDevices = {"local-cpu"};
  in.worker = {"w1-1", kDevices};
  return s.Next(in).job;
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
  jobs[1].tenant_index = 1;
  std::vector<SchedulingTenant> tenants(2);
  tenants[0].decayed_seconds = 1e6;
  tenants[0].max_workers = 1;
  tenants[0].workers_held = 8;
  tenants[1].weight = 3;
  SchedulingInput in;
  in.jobs = jobs;
  in.tenants = tenants;
  in.worker = {"w1-1", {}};
  EXPECT_EQ(s.Next(in).job, 0);
  for (const Admission& a : s.Admit(in)) EXPECT_TRUE(a.admit);
}

// ---- FairShareScheduler

struct Fixture {
  std::vector<SchedulingJob> jobs;
  std::vector<SchedulingTenant> tenants;
  std::vector<std::string> names;  // tenant names (views in tenants point here)
  int64_t now_ms = 10'000'000;
  Fixture() { names.reserve(16); }
  int Tenant(const std::string& name, double weight = 1) {
    names.push_back(name);
    SchedulingTenant t;
    t.name = names.back();
    t.weight = weight;
    tenants.push_back(t);
    return static_cast<int>(tenants.size()) - 1;
  }
  SchedulingJob& Add(const char* id, int tenant, int priority = 0, bool admitted = true) {
    SchedulingJob j = Job(id, priority, true, 0, "");
    j.tenant = tenants[tenant].name;
    j.tenant_index = tenant;
    j.admitted = admitted;
    j.queued_since_unix_ms = now_ms;
    jobs.push_back(j);
    return jobs.back();
  }
  std::vector<std::string> devices;
  SchedulingInput In(const char* device = "local-cpu") {
    devices = {device};
    SchedulingInput in;
    in.jobs = jobs;
    in.tenants = tenants;
    in.worker = {"w1-1", devices};
    in.now_unix_ms = now_ms;
    in.aging = absl::Hours(1);
    return in;
  }
};

TEST(FairShareSchedulerTest, TheLeastServedTenantPerUnitOfWeightGoesFirst) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a", 3), b = f.Tenant("b", 1);
  f.Add("j1", a, 9);
  f.Add("j2", b, 0);
  // a used 300 s at weight 3 (100 per unit), b 90 s at weight 1: b is behind.
  f.tenants[a].decayed_seconds = 300;
  f.tenants[b].decayed_seconds = 90;
  EXPECT_EQ(s.Next(f.In()).job, 1);
  f.tenants[b].decayed_seconds = 110;  // now a is behind, whatever b's priority
  EXPECT_EQ(s.Next(f.In()).job, 0);
}

TEST(FairShareSchedulerTest, WithinATenantTheHighestPriorityThenTheOldest) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a");
  f.Add("j1", a, 0);
  f.Add("j2", a, 5);
  f.Add("j3", a, 5);
  EXPECT_EQ(s.Next(f.In()).job, 1);
}

TEST(FairShareSchedulerTest, ATenantAtItsWorkerQuotaOrBudgetGetsNoMore) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a"), b = f.Tenant("b");
  f.Add("j1", a);
  f.Add("j2", b);
  f.tenants[b].decayed_seconds = 1000;  // a is far behind, but at its quota
  f.tenants[a].max_workers = 2;
  f.tenants[a].workers_held = 2;
  EXPECT_EQ(s.Next(f.In()).job, 1);
  f.tenants[a].workers_held = 1;
  EXPECT_EQ(s.Next(f.In()).job, 0);
  f.tenants[a].worker_hours_per_window = 10;
  f.tenants[a].window_hours = 10;
  EXPECT_EQ(s.Next(f.In()).job, 1);
  // Nobody else has work: the worker waits rather than break the quota.
  f.jobs.pop_back();
  EXPECT_EQ(s.Next(f.In()).job, -1);
}

TEST(FairShareSchedulerTest, WorkConservingATenantAloneGetsTheWorker) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a", 1), b = f.Tenant("b", 100);
  f.tenants[a].decayed_seconds = 1e9;
  f.Add("j1", a);
  (void)b;
  EXPECT_EQ(s.Next(f.In()).job, 0);
}

TEST(FairShareSchedulerTest, OnlyAdmittedJobsGetTasksAndLatencyTasksNeedTheirDevice) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a");
  f.Add("j1", a, 9, /*admitted=*/false);
  SchedulingJob& j2 = f.Add("j2", a, 0);
  j2.needs_device = true;
  j2.device = "pixel9";
  EXPECT_EQ(s.Next(f.In("local-cpu")).job, -1);
  EXPECT_EQ(s.Next(f.In("pixel9")).job, 1);
}

TEST(FairShareSchedulerTest, AdmitsUpToTheRunningQuotaByPriorityAndPreemptsLowerOnes) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a"), b = f.Tenant("b");
  f.tenants[a].max_running_jobs = 1;
  f.Add("j1", a, 0, /*admitted=*/true);    // running
  f.Add("j2", a, 5, /*admitted=*/false);   // higher priority, waiting
  f.Add("j3", a, 0, /*admitted=*/false);   // waiting
  f.Add("j4", b, -3, /*admitted=*/false);  // b has no quota: admitted
  std::vector<Admission> plan = s.Admit(f.In());
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_FALSE(plan[0].admit);  // j1 yields to j2
  EXPECT_EQ(plan[0].position, 1);
  EXPECT_NE(plan[0].reason.find("preempted"), std::string::npos) << plan[0].reason;
  EXPECT_TRUE(plan[1].admit);
  EXPECT_FALSE(plan[2].admit);
  EXPECT_EQ(plan[2].position, 2);
  EXPECT_NE(plan[2].reason.find("quota: tenant a runs at most 1"), std::string::npos)
      << plan[2].reason;
  EXPECT_TRUE(plan[3].admit);
}

TEST(FairShareSchedulerTest, TheIncumbentKeepsItsSlotAtEqualPriorityUntilAgingPassesIt) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a");
  f.tenants[a].max_running_jobs = 1;
  f.Add("j1", a, 0, /*admitted=*/true);
  SchedulingJob& waiting = f.Add("j2", a, 0, /*admitted=*/false);
  waiting.queued_since_unix_ms = f.now_ms - 59 * 60 * 1000;  // 59 minutes: not yet a level
  std::vector<Admission> plan = s.Admit(f.In());
  EXPECT_TRUE(plan[0].admit);
  EXPECT_FALSE(plan[1].admit);
  // An hour of waiting is one priority level: it passes the incumbent, so nothing starves.
  f.jobs[1].queued_since_unix_ms = f.now_ms - 61 * 60 * 1000;
  plan = s.Admit(f.In());
  EXPECT_FALSE(plan[0].admit);
  EXPECT_TRUE(plan[1].admit);
}

TEST(FairShareSchedulerTest, ATenantOverItsBudgetRunsNothingAndSaysWhenTheWindowEnds) {
  FairShareScheduler s;
  Fixture f;
  int a = f.Tenant("a");
  f.tenants[a].worker_hours_per_window = 2;
  f.tenants[a].window_hours = 2.5;
  f.tenants[a].window_ends_unix_ms = 86'400'000;
  f.Add("j1", a, 0, true);
  f.Add("j2", a, 0, false);
  std::vector<Admission> plan = s.Admit(f.In());
  EXPECT_FALSE(plan[0].admit);
  EXPECT_FALSE(plan[1].admit);
  EXPECT_NE(plan[1].reason.find("budget of 2 worker-hours"), std::string::npos) << plan[1].reason;
  EXPECT_NE(plan[1].reason.find("1970-01-02 00:00:00 UTC"), std::string::npos) << plan[1].reason;
}

}  // namespace
}  // namespace nas
