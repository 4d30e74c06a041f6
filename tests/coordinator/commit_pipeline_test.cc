// The pipelined checkpoint writer against a real CheckpointStore in a temporary directory: rounds
// written in order and reported, Pending and Await, a failed write dropping the job's later
// rounds (and only that job's), and destruction writing what is queued. No clock: the writer
// only waits for work, and the tests wait for it through Await.
#include "coordinator/commit_pipeline.h"

#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace nas {
namespace {

struct Report {
  std::string job_id;
  int64_t round;
  absl::StatusCode code;
  int dropped;
  double weight_steps;
};

class CommitPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/commit_pipeline_test_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    auto store = CheckpointStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    CommitPipeline::Options o;
    o.store = store_.get();
    o.mu = &mu_;
    o.changed = &changed_;
    o.on_written = [this](const CommitPipeline::Written& w) {
      reports_.push_back({w.job_id, w.round, w.status.code(), w.dropped, w.gauges.weight_steps});
    };
    pipeline_ = std::make_unique<CommitPipeline>(std::move(o));
  }
  void TearDown() override {
    pipeline_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  static RoundCommit Round(const std::string& job, int64_t round) {
    RoundCommit c;
    c.job_id = job;
    c.round = round;
    c.search_state = absl::StrCat("state of round ", round);
    auto t = std::make_shared<TensorBlob>();
    t->set_name("stem.weight");
    t->set_dtype("float32");
    t->add_shape(1);
    t->set_data(std::string(4, static_cast<char>(round)));
    t->set_version(static_cast<uint64_t>(round));
    t->set_total_bytes(4);
    c.tensors.push_back(std::move(t));
    c.events = {absl::StrCat("round ", round)};
    return c;
  }
  static RoundGauges Gauges(double steps) {
    RoundGauges g;
    g.weight_steps = steps;
    return g;
  }
  int64_t CommittedRound(const std::string& job) {
    auto s = store_->GetSearchState(job);
    return s.ok() ? s->first : -1;
  }

  std::string dir_;
  std::unique_ptr<CheckpointStore> store_;
  absl::Mutex mu_;
  absl::CondVar changed_;
  std::vector<Report> reports_;  // guarded by mu_ (on_written runs with it held)
  std::unique_ptr<CommitPipeline> pipeline_;
};

TEST_F(CommitPipelineTest, WritesRoundsInOrderAndAwaitReturnsOnceTheJobsAreWritten) {
  {
    absl::MutexLock lock(&mu_);
    // Queued under the lock: the writer cannot take one before all three are queued.
    pipeline_->Enqueue(Round("j1", 1), Gauges(8));
    pipeline_->Enqueue(Round("j1", 2), Gauges(8));
    pipeline_->Enqueue(Round("j2", 1), Gauges(3));
    EXPECT_EQ(pipeline_->Pending("j1"), 2);
    EXPECT_EQ(pipeline_->Pending("j2"), 1);
    EXPECT_EQ(pipeline_->Pending("j3"), 0);
    pipeline_->Await("j1");
    EXPECT_EQ(pipeline_->Pending("j1"), 0);
    pipeline_->Await("j2");
    ASSERT_EQ(reports_.size(), 3u);
    EXPECT_EQ(reports_[0].job_id, "j1");
    EXPECT_EQ(reports_[0].round, 1);
    EXPECT_EQ(reports_[1].job_id, "j1");
    EXPECT_EQ(reports_[1].round, 2);
    EXPECT_EQ(reports_[2].job_id, "j2");
    EXPECT_EQ(reports_[2].weight_steps, 3);
    for (const Report& r : reports_) {
      EXPECT_EQ(r.code, absl::StatusCode::kOk);
      EXPECT_EQ(r.dropped, 0);
    }
  }
  EXPECT_EQ(CommittedRound("j1"), 2);
  EXPECT_EQ(CommittedRound("j2"), 1);
  auto events = store_->Events("j1");
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(*events, (std::vector<std::string>{"round 1", "round 2"}));
  // Nothing queued: Await returns at once.
  absl::MutexLock lock(&mu_);
  pipeline_->Await("j1");
}

TEST_F(CommitPipelineTest, AFailedWriteDropsTheJobsLaterRoundsOnly) {
  {
    absl::MutexLock lock(&mu_);
    pipeline_->Enqueue(Round("j1", 1), Gauges(1));
    pipeline_->Enqueue(Round("j1", -1), Gauges(1));  // refused by the store
    pipeline_->Enqueue(Round("j2", 1), Gauges(1));
    pipeline_->Enqueue(Round("j1", 3), Gauges(1));  // must not land on top of the missing one
    pipeline_->Enqueue(Round("j1", 4), Gauges(1));
    pipeline_->Await("j1");
    pipeline_->Await("j2");
    EXPECT_EQ(pipeline_->Pending("j1"), 0);
    ASSERT_EQ(reports_.size(), 3u);
    EXPECT_EQ(reports_[0].code, absl::StatusCode::kOk);
    EXPECT_EQ(reports_[1].round, -1);
    EXPECT_EQ(reports_[1].code, absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(reports_[1].dropped, 2);
    EXPECT_EQ(reports_[2].job_id, "j2");
    EXPECT_EQ(reports_[2].code, absl::StatusCode::kOk);
  }
  EXPECT_EQ(CommittedRound("j1"), 1);
  EXPECT_EQ(CommittedRound("j2"), 1);
}

TEST_F(CommitPipelineTest, DestructionWritesWhatIsQueued) {
  {
    absl::MutexLock lock(&mu_);
    for (int r = 1; r <= 5; ++r) pipeline_->Enqueue(Round("j1", r), Gauges(1));
  }
  pipeline_.reset();
  EXPECT_EQ(CommittedRound("j1"), 5);
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(reports_.size(), 5u);
}

}  // namespace
}  // namespace nas
