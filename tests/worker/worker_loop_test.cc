// The worker loop (remote_worker.cc) over FakeGatewayClient: it acquires, runs through the task
// runner and completes; fetches only what its cache lacks; hands back a task it takes while
// stopping. No server: the fake serves tasks and tensors from memory.
// First: the wire's WeightStep message must be declared before worker/train.h's WeightStep
// function, which hides the class name for what follows.
#include "worker/gateway_client.h"  // NOLINT(build/include_order)

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "proto/tensor_codec.h"
#include "tests/worker/task_runner_fixture.h"
#include "worker/remote_worker.h"
#include "worker/task_tensors.h"
#include "worker/tensor_blob.h"

namespace nas {
namespace {

using runner_testing::InitialTensors;
using runner_testing::SmallJobData;
using runner_testing::SomePath;
using runner_testing::WeightTaskOn;

Task ProtoTask(const RunnerTask& t, const std::string& lease) {
  Task p;
  p.set_job_id("job-1");
  p.set_lease_id(lease);
  p.set_space_json(t.space_json);
  DataSpec* d = p.mutable_data();
  d->set_dataset(t.data.dataset);
  d->set_train_subset(t.data.train_subset);
  d->set_test_subset(t.data.test_subset);
  d->set_valid_size(t.data.valid_size);
  d->set_split_seed(t.data.split_seed);
  d->set_batch_size(t.data.batch_size);
  d->set_train_seed(t.data.train_seed);
  d->set_valid_seed(t.data.valid_seed);
  d->set_augment_pad(t.data.augment_pad);
  d->set_augment_hflip(t.data.augment_hflip);
  for (const ListedTensor& l : t.tensors) {
    TensorRef* r = p.add_tensors();
    r->set_name(l.name);
    r->set_version(l.version);
  }
  const WeightTaskSpec& s = std::get<WeightChain>(t.spec).steps[0];
  WeightTask* w = p.mutable_weight();
  for (int c : s.path) w->add_path(c);
  w->set_data_epoch(s.data_epoch);
  for (int64_t b : s.batches) w->add_batches(b);
  for (double lr : s.lrs) w->add_lrs(lr);
  w->set_label_smoothing(std::get<WeightChain>(t.spec).label_smoothing);
  return p;
}

std::vector<TensorBlob> Chunks(const std::string& name, const torch::Tensor& t) {
  std::vector<TensorBlob> out;
  absl::StatusOr<bool> ok = ForEachChunk(name, t, 4096, [&](TensorBlob&& b) {
    out.push_back(std::move(b));
    return true;
  });
  EXPECT_TRUE(ok.ok() && *ok);
  return out;
}

class WorkerLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!runner_testing::HaveTestData()) {
      GTEST_SKIP() << "no Fashion-MNIST in " << runner_testing::TestDataDir();
    }
    space_ = *SearchSpace::Preset("fashion-mnist");
    tensors_ = InitialTensors(space_, 3);
  }

  std::unique_ptr<RemoteWorker> Worker(FakeGatewayClient* fake, int64_t max_tasks,
                                       absl::Duration release_heap_after_idle = absl::Seconds(60)) {
    RemoteWorkerOptions o;
    o.release_heap_after_idle = release_heap_after_idle;
    o.coordinator = "fake";
    o.threads = 2;
    o.max_tasks = max_tasks;
    o.acquire_wait_ms = 50;
    o.inline_limit_bytes = 0;
    o.data_dir = runner_testing::TestDataDir();
    o.backoff_initial = absl::Milliseconds(1);
    absl::StatusOr<std::unique_ptr<RemoteWorker>> w =
        RemoteWorker::Create(o, std::unique_ptr<GatewayClient>(fake));
    EXPECT_TRUE(w.ok()) << w.status();
    return std::move(*w);
  }

  SearchSpace space_;
  std::map<std::string, torch::Tensor> tensors_;
};

TEST_F(WorkerLoopTest, AcquiresRunsAndCompletesWhatTheRunnerComputes) {
  auto* fake = new FakeGatewayClient;
  for (const auto& [name, t] : tensors_) fake->SetBlobs(name, Chunks(name, t));
  RunnerTask task = WeightTaskOn(space_, SomePath(space_, 1), tensors_, 1);
  fake->AddTask(ProtoTask(task, "L1"));
  fake->AddTask(ProtoTask(task, "L2"));  // the same tensors again: all cached now
  std::unique_ptr<RemoteWorker> worker = Worker(fake, 2);
  ASSERT_TRUE(worker->Run().ok());

  std::vector<FakeGatewayClient::Completion> done = fake->completions();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].outcome.lease_id(), "L1");
  EXPECT_EQ(done[0].outcome.error(), "");
  ASSERT_EQ(fake->fetches().size(), 1u) << "the second task's tensors were cached";

  // What the runner computes for the task, sent chunk by chunk.
  TaskRunnerOptions ro;
  ro.data_dir = runner_testing::TestDataDir();
  auto runner = TaskRunner::Create(ro);
  ASSERT_TRUE(runner.ok());
  MapTensorSource source(tensors_);
  RunnerResult want;
  ASSERT_TRUE((*runner)->Run(task, source, {}, &want).ok());
  EXPECT_EQ(done[0].outcome.loss(), want.loss);
  TaskTensorAssembler in(static_cast<int64_t>(want.tensors.size()));
  for (TensorBlob& b : done[0].blobs) ASSERT_TRUE(in.Add(std::move(b)).ok());
  auto got = std::move(in).Finish();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), want.tensors.size());
  for (const auto& [name, t] : want.tensors) {
    auto back = FromWire(got->at(name));
    ASSERT_TRUE(back.ok());
    EXPECT_TRUE(torch::equal(*back, t)) << name;
  }
}

TEST_F(WorkerLoopTest, AnIdleWorkerGivesItsFreeHeapBackOncePerIdleStretch) {
  auto* fake = new FakeGatewayClient;
  for (const auto& [name, t] : tensors_) fake->SetBlobs(name, Chunks(name, t));
  std::unique_ptr<RemoteWorker> worker = Worker(fake, 0, absl::ZeroDuration());
  std::thread run([&] { EXPECT_TRUE(worker->Run().ok()); });
  auto eventually = [](const std::function<bool()>& done) {
    for (int i = 0; i < 3000 && !done(); ++i) absl::SleepFor(absl::Milliseconds(10));
    return done();
  };
  // The first idle reply starts a stretch and (after 0 s) releases; later ones in it do not.
  EXPECT_TRUE(eventually([&] { return worker->heap_releases() == 1; }));
  absl::SleepFor(absl::Milliseconds(300));  // about 6 more idle replies of 50 ms
  EXPECT_EQ(worker->heap_releases(), 1);
  // A task ends the stretch; the next idle reply starts another.
  fake->AddTask(ProtoTask(WeightTaskOn(space_, SomePath(space_, 1), tensors_, 1), "L1"));
  EXPECT_TRUE(eventually([&] { return worker->tasks_done() == 1; }));
  EXPECT_TRUE(eventually([&] { return worker->heap_releases() == 2; }));
  worker->Stop();
  run.join();
  EXPECT_EQ(fake->completions().size(), 1u);
}

TEST_F(WorkerLoopTest, ARefusedFetchAbandonsTheTaskAndATaskWithoutKindFails) {
  auto* fake = new FakeGatewayClient;
  RunnerTask task = WeightTaskOn(space_, SomePath(space_, 1), tensors_, 1);
  fake->AddTask(ProtoTask(task, "L1"));
  fake->FailNext("FetchTensors", absl::FailedPreconditionError("lease L1 is not current"));
  Task no_kind = ProtoTask(task, "L2");
  no_kind.clear_weight();
  fake->AddTask(no_kind);
  std::unique_ptr<RemoteWorker> worker = Worker(fake, 2);
  ASSERT_TRUE(worker->Run().ok());
  std::vector<FakeGatewayClient::Completion> done = fake->completions();
  ASSERT_EQ(done.size(), 1u) << "an abandoned task sends no result";
  EXPECT_EQ(done[0].outcome.lease_id(), "L2");
  EXPECT_NE(done[0].outcome.error().find("no kind"), std::string::npos) << done[0].outcome.error();
}

TEST(WorkerLoopCreateTest, CudaWithoutAGpuIsAnErrorAtStartUp) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  RemoteWorkerOptions o;
  o.coordinator = "localhost:1";
  o.device = "cuda";
  absl::StatusOr<std::unique_ptr<RemoteWorker>> w = RemoteWorker::Create(o);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kFailedPrecondition) << w.status();
  o.device = "gpu";
  EXPECT_EQ(RemoteWorker::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nas
