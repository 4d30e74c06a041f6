// Workers and leases without a server, on a fake clock the tests advance: registration and its
// limit, heartbeats, grants, fencing (only the current lease id is known), extension, expiry,
// leases handed back, and dead and forgotten workers.
#include "coordinator/lease_table.h"

#include <set>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

// A task as the JobManager keeps it: its Task (with the lease id) and its slot.
struct FakeTask {
  Task task;
  LeaseSlot slot;
};

class LeaseTableTest : public ::testing::Test {
 protected:
  LeaseTable::Options Options() {
    LeaseTable::Options o;
    o.lease = absl::Seconds(60);
    o.heartbeat = absl::Seconds(2);
    o.worker_timeout = absl::Seconds(20);
    o.forget_worker_after = absl::Minutes(10);
    o.max_workers = 3;
    o.clock = [this] { return now_; };
    return o;
  }
  std::string Register(LeaseTable& t, const std::string& name) {
    auto r = t.Register(name, "local-cpu");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->worker_id() : "";
  }
  // Leases `task` as the JobManager does: the id goes into the task.
  void Lease(LeaseTable& t, FakeTask& task, const std::string& job, const std::string& worker) {
    task.task.set_lease_id(t.Grant(task.slot, job, worker));
  }

  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
};

TEST_F(LeaseTableTest, RegistersWorkersWithIdsOfTheIncarnationUpToTheLimit) {
  LeaseTable t(Options(), 7);
  auto r = t.Register("box-1", "cuda");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->worker_id(), "w7-1");
  EXPECT_EQ(r->heartbeat_ms(), 2000);
  EXPECT_EQ(r->lease_ms(), 60000);
  const LeaseTable::Worker* w = t.FindWorker("w7-1");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->name, "box-1");
  EXPECT_EQ(w->device, "cuda");
  EXPECT_EQ(w->last_seen, now_);
  EXPECT_EQ(Register(t, "box-2"), "w7-2");
  EXPECT_EQ(Register(t, "box-3"), "w7-3");
  EXPECT_TRUE(IsError(t.Register("box-4", "cuda").status(), absl::StatusCode::kResourceExhausted,
                      {"max_workers", "3"}));
  EXPECT_EQ(t.workers(), 3);
  EXPECT_EQ(t.live_workers(), 3);
}

TEST_F(LeaseTableTest, UnknownWorkersAreToldToRegisterAgain) {
  LeaseTable t(Options(), 1);
  EXPECT_TRUE(
      IsError(t.Touch("w1-9").status(), absl::StatusCode::kNotFound, {"w1-9", "register again"}));
  EXPECT_TRUE(
      IsError(t.Heartbeat("w1-9"), absl::StatusCode::kNotFound, {"w1-9", "register again"}));
}

TEST_F(LeaseTableTest, OnlyTheCurrentLeaseIdIsKnown) {
  LeaseTable t(Options(), 3);
  std::string w = Register(t, "box");
  std::vector<FakeTask> tasks(2);
  Lease(t, tasks[0], "j000001", w);
  const std::string first = tasks[0].task.lease_id();
  // L<incarnation>-<n>-<8 random characters>.
  ASSERT_EQ(first.size(), std::string("L3-1-").size() + 8) << first;
  EXPECT_EQ(first.substr(0, 5), "L3-1-");
  EXPECT_EQ(tasks[0].slot.state, LeaseSlot::State::kLeased);
  EXPECT_EQ(tasks[0].slot.worker_id, w);
  EXPECT_EQ(tasks[0].slot.deadline, now_ + absl::Seconds(60));
  ASSERT_NE(t.JobOf(first), nullptr);
  EXPECT_EQ(*t.JobOf(first), "j000001");
  EXPECT_EQ(LeaseTable::FindLeased(tasks, first), &tasks[0]);
  EXPECT_EQ(t.JobOf("L3-1"), nullptr);           // the number alone is no id
  EXPECT_EQ(t.JobOf("L3-1-aaaaaaaa"), nullptr);  // nor is a guessed suffix
  EXPECT_EQ(t.JobOf("L3-2"), nullptr);           // never granted
  EXPECT_EQ(t.JobOf("L2-1"), nullptr);           // an earlier incarnation's
  EXPECT_EQ(LeaseTable::FindLeased(tasks, "L3-1-aaaaaaaa"), nullptr);

  // Done: the id is no longer current, and a second result for it finds nothing.
  t.Finish(tasks[0].slot, first);
  EXPECT_EQ(tasks[0].slot.state, LeaseSlot::State::kDone);
  EXPECT_EQ(t.JobOf(first), nullptr);
  EXPECT_EQ(LeaseTable::FindLeased(tasks, first), nullptr);

  // Released (the job failed or was cancelled).
  Lease(t, tasks[1], "j000001", w);
  const std::string second = tasks[1].task.lease_id();
  EXPECT_EQ(second.substr(0, 5), "L3-2-");
  EXPECT_NE(second.substr(5), first.substr(5));
  t.Release(second);
  EXPECT_EQ(t.JobOf(second), nullptr);
  EXPECT_EQ(t.current_leases(), 0u);
}

TEST_F(LeaseTableTest, LeasesExpireOnTheClockUnlessExtendedAndAreReissuedUnderANewId) {
  LeaseTable t(Options(), 1);
  std::string w = Register(t, "box");
  FakeTask task;
  Lease(t, task, "j000001", w);
  const std::string first = task.task.lease_id();

  now_ += absl::Seconds(50);
  EXPECT_FALSE(t.ExpireIfDue(task.slot, first, now_));
  t.Extend(task.slot);  // a heartbeat at 50 s: until 110 s
  EXPECT_EQ(task.slot.deadline, now_ + absl::Seconds(60));
  now_ += absl::Seconds(59);
  EXPECT_FALSE(t.ExpireIfDue(task.slot, first, now_));
  now_ += absl::Seconds(2);
  std::string had;
  EXPECT_TRUE(t.ExpireIfDue(task.slot, first, now_, &had));
  EXPECT_EQ(had, w);
  EXPECT_EQ(task.slot.state, LeaseSlot::State::kQueued);
  EXPECT_TRUE(task.slot.worker_id.empty());
  EXPECT_EQ(t.JobOf(first), nullptr);  // the late worker's result is refused
  EXPECT_FALSE(t.ExpireIfDue(task.slot, first, now_ + absl::Hours(1)));  // queued: nothing

  Lease(t, task, "j000001", w);
  EXPECT_NE(task.task.lease_id(), first);
  EXPECT_NE(t.JobOf(task.task.lease_id()), nullptr);
}

TEST_F(LeaseTableTest, AHandedBackLeaseIsQueuedAtOnceUnderNoWorker) {
  LeaseTable t(Options(), 1);
  std::string w = Register(t, "box");
  FakeTask task;
  Lease(t, task, "j000001", w);
  const std::string first = task.task.lease_id();
  now_ += absl::Seconds(1);  // long before the deadline
  EXPECT_TRUE(t.Requeue(task.slot, first));
  EXPECT_EQ(task.slot.state, LeaseSlot::State::kQueued);
  EXPECT_TRUE(task.slot.worker_id.empty());
  EXPECT_EQ(t.JobOf(first), nullptr);  // a later result for it is refused
  EXPECT_EQ(t.current_leases(), 0u);
  EXPECT_FALSE(t.Requeue(task.slot, first));  // queued: nothing
  Lease(t, task, "j000001", w);
  EXPECT_NE(task.task.lease_id(), first);
  EXPECT_NE(t.JobOf(task.task.lease_id()), nullptr);
}

TEST_F(LeaseTableTest, SilentWorkersDieThenAreForgottenAndHeartbeatsReviveThem) {
  LeaseTable t(Options(), 1);
  std::string a = Register(t, "a");
  std::string b = Register(t, "b");
  now_ += absl::Seconds(15);
  auto touched = t.Touch(b);
  ASSERT_TRUE(touched.ok());
  EXPECT_EQ((*touched)->id, b);
  now_ += absl::Seconds(10);  // a silent 25 s, b 10 s
  EXPECT_TRUE(t.ExpireWorkers().empty());
  EXPECT_TRUE(t.FindWorker(a)->dead);
  EXPECT_FALSE(t.FindWorker(b)->dead);
  EXPECT_EQ(t.live_workers(), 1);
  EXPECT_EQ(t.dead_workers(), 1);

  // A heartbeat revives a dead worker.
  ASSERT_TRUE(t.Heartbeat(a).ok());
  EXPECT_FALSE(t.FindWorker(a)->dead);
  EXPECT_EQ(t.FindWorker(a)->last_seen, now_);

  // b stays silent past forget_worker_after: forgotten, and unknown from then on.
  now_ += absl::Minutes(10);
  ASSERT_TRUE(t.Heartbeat(a).ok());
  std::vector<LeaseTable::Worker> gone = t.ExpireWorkers();
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].id, b);
  EXPECT_EQ(gone[0].name, "b");
  EXPECT_EQ(t.FindWorker(b), nullptr);
  EXPECT_EQ(t.Touch(b).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.workers(), 1);
  // A new registration gets a new id, never b's.
  EXPECT_EQ(Register(t, "b"), "w1-3");
}

}  // namespace
}  // namespace nas
