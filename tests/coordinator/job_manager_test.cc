// The JobManager as the state machine over its rooms, called directly (no gRPC server): the
// scheduler's order through Acquire, and leases expiring on the injected clock (Tick), re-issued
// under a new id, the late result fenced off. A real CheckpointStore in a temporary directory and
// a synthetic latency table; the clock only moves when a test advances it.
#include "coordinator/job_manager.h"

#include <unistd.h>

#include <filesystem>
#include <memory>

#include "coordinator/sim_worker.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "tests/coordinator/synthetic_table.h"
#include "tests/test_util.h"

namespace nas {
namespace {

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("job_manager");
    auto store = CheckpointStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    JobManagerOptions o;
    o.lease = absl::Seconds(60);
    o.clock = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    auto jobs = JobManager::Create(store_.get(), &latency_, o);
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = std::move(*jobs);
  }
  void TearDown() override {
    jobs_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }
  static JobSpec Spec(int priority) {
    JobSpec s;
    s.set_device("test-cpu");
    s.set_batch_size(16);
    s.set_warmup_epochs(1);
    s.set_search_epochs(2);
    s.set_arch_every(2);
    s.set_seed(3);
    s.set_chain_steps(1);
    s.set_priority(priority);
    return s;
  }
  // Submits and waits (on the manager's own ticker, which prepares jobs) until it is RUNNING.
  std::string SubmitRunning(int priority) {
    auto id = jobs_->Submit(Spec(priority));
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return "";
    JobStatus st;
    for (int i = 0; i < 100; ++i) {
      auto now = jobs_->Get(*id);
      EXPECT_TRUE(now.ok());
      if (!now.ok() || now->state() == "RUNNING") break;
      auto next = jobs_->WaitForChange(*id, *now, absl::Milliseconds(200));
      EXPECT_TRUE(next.ok());
    }
    EXPECT_EQ(jobs_->Get(*id)->state(), "RUNNING");
    return *id;
  }
  std::string Register(const std::string& name) {
    RegisterWorkerRequest r;
    r.set_name(name);
    r.set_device("test-cpu");
    auto reply = jobs_->RegisterWorker(r);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->worker_id() : "";
  }
  Task Acquire(const std::string& worker) {
    auto t = jobs_->Acquire(worker, absl::ZeroDuration());
    EXPECT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(t.ok() && t->has_value());
    return t.ok() && t->has_value() ? **t : Task();
  }
  // The well-formed result of an init task (the simulated worker's synthetic supernet).
  static CompletedTask InitResult(const Task& t) {
    CompletedTask r;
    r.outcome.set_lease_id(t.lease_id());
    r.outcome.set_train_size(4 * 16);
    r.outcome.set_valid_size(2 * 16);
    auto tensors = SyntheticSupernetTensors(t.space_json(), 4);
    EXPECT_TRUE(tensors.ok()) << tensors.status();
    if (tensors.ok()) r.tensors = std::move(*tensors);
    return r;
  }

  std::filesystem::path dir_;
  std::unique_ptr<CheckpointStore> store_;
  SyntheticLatency latency_;
  absl::Mutex clock_mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  std::unique_ptr<JobManager> jobs_;
};

TEST_F(JobManagerTest, AcquireGivesTheHighestPriorityJobFirstThenTheOldest) {
  std::string low = SubmitRunning(0);
  std::string high = SubmitRunning(5);
  std::string low2 = SubmitRunning(0);
  std::string w = Register("w");
  EXPECT_EQ(Acquire(w).job_id(), high);
  EXPECT_EQ(Acquire(w).job_id(), low);
  EXPECT_EQ(Acquire(w).job_id(), low2);
  // Every job's one init task is leased: nothing more until results come.
  auto none = jobs_->Acquire(w, absl::ZeroDuration());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(JobManagerTest, AnExpiredLeaseIsReissuedAndItsLateResultRefused) {
  std::string job = SubmitRunning(0);
  std::string a = Register("a");
  Task first = Acquire(a);
  ASSERT_TRUE(first.has_init());
  EXPECT_EQ(first.deadline_unix_ms(), absl::ToUnixMillis(now_ + absl::Seconds(60)));

  // A heartbeat at 50 s extends the lease; at 100 s it has not expired.
  Advance(absl::Seconds(50));
  HeartbeatRequest hb;
  hb.set_worker_id(a);
  hb.set_lease_id(first.lease_id());
  auto reply = jobs_->Heartbeat(hb);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->lease_valid());
  Advance(absl::Seconds(50));
  jobs_->Tick();
  std::string b = Register("b");
  auto nothing = jobs_->Acquire(b, absl::ZeroDuration());
  ASSERT_TRUE(nothing.ok());
  EXPECT_FALSE(nothing->has_value());

  // 61 s after the heartbeat: expired, re-issued to b under a new id.
  Advance(absl::Seconds(11));
  jobs_->Tick();
  Task again = Acquire(b);
  EXPECT_EQ(again.job_id(), job);
  ASSERT_TRUE(again.has_init());
  EXPECT_NE(again.lease_id(), first.lease_id());

  // a's late result is fenced off and changes nothing; b's is applied.
  EXPECT_TRUE(IsError(jobs_->Complete(InitResult(first)), absl::StatusCode::kFailedPrecondition,
                      {first.lease_id(), "not current"}));
  hb.set_lease_id(first.lease_id());
  EXPECT_FALSE(jobs_->Heartbeat(hb)->lease_valid());
  ASSERT_TRUE(jobs_->Complete(InitResult(again)).ok());
  auto st = jobs_->Get(job);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state(), "RUNNING");
  EXPECT_EQ(st->committed_round(), 0);
  // The next task is the first weight task, fetched from the merged store.
  Task weight = Acquire(a);
  ASSERT_TRUE(weight.has_weight());
  EXPECT_GT(weight.tensors_size(), 0);
  auto fetched = jobs_->Fetch(weight.lease_id(), {weight.tensors(0).name()});
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ((*fetched)[0]->version(), 1u);
  // A result for a lease that never was is refused too.
  CompletedTask forged = InitResult(again);
  forged.outcome.set_lease_id("L999-1");
  EXPECT_EQ(jobs_->Complete(std::move(forged)).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobManagerTest, SilentWorkersAreForgottenOnTheClock) {
  std::string w = Register("w");
  Advance(absl::Minutes(11));
  jobs_->Tick();
  EXPECT_TRUE(IsError(jobs_->Acquire(w, absl::ZeroDuration()).status(), absl::StatusCode::kNotFound,
                      {w, "register again"}));
}

TEST_F(JobManagerTest, OnlyAJobThatEndedCanBeDeleted) {
  std::string job = SubmitRunning(0);
  EXPECT_TRUE(IsError(jobs_->Delete(job), absl::StatusCode::kFailedPrecondition,
                      {job, "RUNNING", "cancel it first"}));
  EXPECT_EQ(jobs_->Get(job)->state(), "RUNNING");
  EXPECT_TRUE(store_->GetJob(job).ok());
  EXPECT_TRUE(IsError(jobs_->Delete("j000099-nosuchjob"), absl::StatusCode::kNotFound,
                      {"j000099-nosuchjob"}));
}

TEST_F(JobManagerTest, DeletingACancelledJobRemovesItFromTheListAndTheStore) {
  // The job has a committed round and tensors in the store (its init task's result).
  std::string gone = SubmitRunning(0);
  std::string w = Register("w");
  Task init = Acquire(w);
  ASSERT_EQ(init.job_id(), gone);
  ASSERT_TRUE(jobs_->Complete(InitResult(init)).ok());
  ASSERT_FALSE(store_->LoadTensors(gone)->empty());
  std::string kept = SubmitRunning(0);
  ASSERT_TRUE(jobs_->Cancel(gone).ok());
  const JobStatus last = *jobs_->Get(gone);

  ASSERT_TRUE(jobs_->Delete(gone).ok());
  EXPECT_EQ(jobs_->Get(gone).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(jobs_->WaitForChange(gone, last, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kNotFound);
  std::vector<JobStatus> listed = jobs_->List("");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].job_id(), kept);
  EXPECT_EQ(store_->GetJob(gone).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetSearchState(gone).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->LoadTensors(gone)->empty());
  EXPECT_TRUE(store_->Events(gone)->empty());
  EXPECT_TRUE(store_->GetJob(kept).ok());
  EXPECT_EQ(jobs_->Get(kept)->state(), "RUNNING");
  EXPECT_EQ(jobs_->Delete(gone).code(), absl::StatusCode::kNotFound);

  // Deleted for good: a manager over the same store does not bring it back.
  jobs_.reset();
  JobManagerOptions o;
  o.clock = [this] {
    absl::MutexLock lock(&clock_mu_);
    return now_;
  };
  auto again = JobManager::Create(store_.get(), &latency_, o);
  ASSERT_TRUE(again.ok()) << again.status();
  jobs_ = std::move(*again);
  EXPECT_EQ(jobs_->Get(gone).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(jobs_->Get(kept).ok());
}

TEST_F(JobManagerTest, RetentionDeletesAJobOnceItEndedThatLongAgoAndNotBefore) {
  std::string ended = SubmitRunning(0);
  std::string running = SubmitRunning(0);
  ASSERT_TRUE(jobs_->Cancel(ended).ok());
  const absl::Duration retention = JobManagerOptions().retention;
  ASSERT_EQ(retention, absl::Hours(30 * 24));

  Advance(retention - absl::Seconds(1));
  jobs_->Tick();
  EXPECT_EQ(jobs_->Get(ended)->state(), "CANCELLED");
  EXPECT_TRUE(store_->GetJob(ended).ok());

  Advance(absl::Seconds(1));
  jobs_->Tick();
  EXPECT_EQ(jobs_->Get(ended).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetJob(ended).status().code(), absl::StatusCode::kNotFound);
  // A job that has not ended is never deleted, however old.
  EXPECT_EQ(jobs_->Get(running)->state(), "RUNNING");
  EXPECT_TRUE(store_->GetJob(running).ok());
}

}  // namespace
}  // namespace nas
