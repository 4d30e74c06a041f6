// The task runner on the CPU, without any server: its weight and arch steps give exactly what
// the existing code paths (RunWeightTask / RunArchTask on a supernet loaded by hand) give, only
// the task's modules are touched, and malformed tasks fail naming the field.
#include "worker/path_eval.h"
#include "worker/task_runner.h"

#include <torch/torch.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/param_names.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/worker/fashion_folder.h"
#include "tests/worker/task_runner_fixture.h"
#include "worker/ops.h"
#include "worker/runtime.h"
#include "worker/tasks.h"
#include "worker/train.h"

namespace nas {
namespace {

using runner_testing::ArchTaskOn;
using runner_testing::ByName;
using runner_testing::InitialTensors;
using runner_testing::LoadSplit;
using runner_testing::SmallJobData;
using runner_testing::SomePath;
using runner_testing::WeightTaskOn;

class TaskRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!runner_testing::HaveTestData()) {
      GTEST_SKIP() << "no Fashion-MNIST in " << runner_testing::TestDataDir()
                   << " (apt-get install dataset-fashion-mnist, or set NAS_TEST_DATA_DIR)";
    }
    ConfigureCpuRuntime(2);
    absl::StatusOr<SearchSpace> space = SearchSpace::Preset("fashion-mnist");
    ASSERT_TRUE(space.ok()) << space.status();
    space_ = *space;
    TaskRunnerOptions o;
    o.data_dir = runner_testing::TestDataDir();
    absl::StatusOr<std::unique_ptr<TaskRunner>> r = TaskRunner::Create(o);
    ASSERT_TRUE(r.ok()) << r.status();
    runner_ = std::move(*r);
    tensors_ = InitialTensors(space_, 3);
  }

  RunnerResult Run(const RunnerTask& t, const std::map<std::string, torch::Tensor>& tensors,
                   absl::Status* status = nullptr, const TaskControl& control = {}) {
    MapTensorSource source(tensors);
    RunnerResult r;
    absl::Status s = runner_->Run(t, source, control, &r);
    if (status != nullptr) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << s;
    }
    return r;
  }

  SearchSpace space_;
  std::unique_ptr<TaskRunner> runner_;
  std::map<std::string, torch::Tensor> tensors_;
};

// The existing code path: the path's supernet loaded by hand, RunWeightTask on the same batches.
struct Reference {
  WeightTaskResult result;
  std::map<std::string, torch::Tensor> tensors;
};
Reference ReferenceWeightTask(const SearchSpace& space, const RunnerTask& t,
                              const std::map<std::string, torch::Tensor>& tensors) {
  const WeightChain& w = std::get<WeightChain>(t.spec);
  const WeightTaskSpec& spec = w.steps[0];
  SuperNet net(space, KeepForPath(space, spec.path));
  PathSgd sgd(SgdOptions{});
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->named_parameters()) {
      p.value().copy_(tensors.at(p.key()));
      auto m = tensors.find(kMomentumPrefix + p.key());
      if (m != tensors.end()) sgd.mutable_momentum()[p.key()] = m->second.clone();
    }
    for (auto& b : net->named_buffers()) b.value().copy_(tensors.at(b.key()));
  }
  DataSplit split = LoadSplit(t.data);
  Batcher train(split.train, t.data.batch_size, t.data.train_seed,
                Augment{t.data.augment_pad, t.data.augment_hflip});
  Reference ref;
  ref.result = RunWeightTask(net, sgd, train, spec, w.label_smoothing);
  for (const auto& p : net->named_parameters()) ref.tensors[p.key()] = p.value();
  for (const auto& b : net->named_buffers()) ref.tensors[b.key()] = b.value();
  for (const auto& [name, m] : sgd.momentum()) ref.tensors[kMomentumPrefix + name] = m;
  return ref;
}

TEST_F(TaskRunnerTest, WeightTaskEqualsTheExistingCodePath) {
  std::vector<int> path = SomePath(space_, 1);
  RunnerTask t = WeightTaskOn(space_, path, tensors_, 2);
  RunnerResult r = Run(t, tensors_);
  Reference ref = ReferenceWeightTask(space_, t, tensors_);
  EXPECT_EQ(r.loss, ref.result.loss);
  EXPECT_EQ(r.accuracy, ref.result.accuracy);
  EXPECT_EQ(r.stats.data_wait_seconds, 0);  // in memory: batches are computed, not waited for
  std::map<std::string, torch::Tensor> got = ByName(r);
  ASSERT_EQ(got.size(), ref.tensors.size());
  for (const auto& [name, want] : ref.tensors) {
    ASSERT_EQ(got.count(name), 1u) << name;
    EXPECT_TRUE(torch::equal(got[name], want)) << name;
  }

  // A second task on what the first left (momentum now listed) matches too.
  std::map<std::string, torch::Tensor> after = tensors_;
  for (const auto& [name, tensor] : got) after[name] = tensor;
  RunnerTask t2 = WeightTaskOn(space_, path, after, 1, /*first_batch=*/2);
  RunnerResult r2 = Run(t2, after);
  Reference ref2 = ReferenceWeightTask(space_, t2, after);
  EXPECT_EQ(r2.loss, ref2.result.loss);
  for (const auto& [name, tensor] : ByName(r2)) {
    EXPECT_TRUE(torch::equal(tensor, ref2.tensors.at(name))) << name;
  }
}

TEST_F(TaskRunnerTest, WeightTaskTouchesOnlyItsPath) {
  std::vector<int> path = SomePath(space_, 2);
  RunnerResult r = Run(WeightTaskOn(space_, path, tensors_, 1), tensors_);
  std::set<std::string> allowed;
  SuperNet only(space_, KeepForPath(space_, path));
  for (const auto& p : only->named_parameters()) {
    allowed.insert(p.key());
    allowed.insert(kMomentumPrefix + p.key());
  }
  for (const auto& b : only->named_buffers()) allowed.insert(b.key());
  int changed = 0;
  for (const auto& [name, tensor] : r.tensors) {
    EXPECT_EQ(allowed.count(name), 1u) << name << " is not on the path";
    for (int e = 0; e < space_.num_edges(); ++e) {
      for (int i = 0; i < static_cast<int>(space_.edges()[e].candidates.size()); ++i) {
        if (i == path[e]) continue;
        EXPECT_FALSE(absl::StrContains(name, CandidateModuleName(e, i) + "."))
            << name << " belongs to an inactive candidate";
      }
    }
    auto before = tensors_.find(name);
    if (before != tensors_.end() && !torch::equal(before->second, tensor)) ++changed;
  }
  EXPECT_GT(changed, 0);
  // The host tensors the task was given are not written to.
  std::map<std::string, torch::Tensor> fresh = InitialTensors(space_, 3);
  for (const auto& [name, tensor] : fresh) {
    EXPECT_TRUE(torch::equal(tensor, tensors_.at(name))) << name;
  }
}

TEST_F(TaskRunnerTest, ArchTaskEqualsTheExistingCodePath) {
  RunnerTask t = ArchTaskOn(space_, 0);
  RunnerResult r = Run(t, tensors_);
  const ArchSpec& spec = std::get<ArchSpec>(t.spec);
  SuperNet net(space_, KeepForPairs(space_, spec.pairs));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->named_parameters()) p.value().copy_(tensors_.at(p.key()));
    for (auto& b : net->named_buffers()) b.value().copy_(tensors_.at(b.key()));
  }
  DataSplit split = LoadSplit(t.data);
  Batcher valid(split.valid, t.data.batch_size, t.data.valid_seed, {});
  ArchTaskResult ref = RunArchTask(net, valid, spec);
  EXPECT_EQ(r.loss, ref.ce);
  EXPECT_EQ(r.accuracy, ref.accuracy);
  ASSERT_EQ(r.gate_grads.size(), 2 * ref.gate_grads.size());
  for (size_t e = 0; e < ref.gate_grads.size(); ++e) {
    EXPECT_EQ(r.gate_grads[2 * e], ref.gate_grads[e][0]) << "edge " << e;
    EXPECT_EQ(r.gate_grads[2 * e + 1], ref.gate_grads[e][1]) << "edge " << e;
  }
  // Only BatchNorm statistics come back (weights get no gradient in an arch step).
  std::map<std::string, torch::Tensor> buffers;
  for (const auto& b : net->named_buffers()) buffers[b.key()] = b.value();
  ASSERT_EQ(r.tensors.size(), buffers.size());
  for (const auto& [name, tensor] : r.tensors) {
    ASSERT_EQ(buffers.count(name), 1u) << name;
    EXPECT_TRUE(torch::equal(tensor, buffers[name])) << name;
  }
}

TEST_F(TaskRunnerTest, InitReturnsEveryTensorOfTheSeededSupernet) {
  RunnerTask t;
  t.space_json = space_.ToJson();
  t.data = SmallJobData();
  t.spec = InitSpec{3};
  RunnerResult r = Run(t, {});
  EXPECT_EQ(r.train_size, 500);
  EXPECT_EQ(r.valid_size, 100);
  std::map<std::string, torch::Tensor> got = ByName(r);
  ASSERT_EQ(got.size(), tensors_.size());
  for (const auto& [name, tensor] : tensors_) EXPECT_TRUE(torch::equal(got.at(name), tensor)) << name;
}

TEST_F(TaskRunnerTest, ChainRunsEachPathOnWhatTheOnesBeforeLeft) {
  std::vector<int> a = SomePath(space_, 0), b = SomePath(space_, 3);
  RunnerTask t = WeightTaskOn(space_, a, tensors_, 1);
  RunnerTask second = WeightTaskOn(space_, b, tensors_, 1, 1);
  WeightChain& chain = std::get<WeightChain>(t.spec);
  chain.steps.push_back(std::get<WeightChain>(second.spec).steps[0]);
  std::set<std::string> names;
  for (const auto& l : t.tensors) names.insert(l.name);
  for (const auto& l : second.tensors) {
    if (names.insert(l.name).second) t.tensors.push_back(l);
  }
  RunnerResult r = Run(t, tensors_);
  ASSERT_EQ(r.chain_losses.size(), 1u);

  // The same as two tasks one after the other.
  RunnerResult first = Run(WeightTaskOn(space_, a, tensors_, 1), tensors_);
  std::map<std::string, torch::Tensor> after = tensors_;
  for (const auto& [name, tensor] : first.tensors) after[name] = tensor;
  RunnerResult then = Run(WeightTaskOn(space_, b, after, 1, 1), after);
  EXPECT_EQ(r.loss, first.loss);
  EXPECT_EQ(r.chain_losses[0], then.loss);
  std::map<std::string, torch::Tensor> got = ByName(r);
  for (const auto& [name, tensor] : ByName(then)) {
    EXPECT_TRUE(torch::equal(got.at(name), tensor)) << name;
  }
}

TEST_F(TaskRunnerTest, MalformedTasksFailNamingTheField) {
  absl::Status s;
  RunnerTask t = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1);
  std::get<WeightChain>(t.spec).steps[0].path.pop_back();
  Run(t, tensors_, &s);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"weight.path"}));

  t = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1);
  t.tensors.pop_back();
  Run(t, tensors_, &s);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"task does not list"}));

  t = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1);
  t.tensors.push_back({"no.such.tensor", 1});
  Run(t, tensors_, &s);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"no.such.tensor"}));

  t = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1);
  std::map<std::string, torch::Tensor> wrong = tensors_;
  wrong[t.tensors[0].name] = torch::zeros({3});
  Run(t, wrong, &s);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"received"}));

  t = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1);
  std::get<WeightChain>(t.spec).steps[0].batches[0] = 1 << 20;
  Run(t, tensors_, &s);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInternal, {"outside"}));

  t = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1);
  t.data.valid_size = 0;
  Run(t, tensors_, &s);
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"data.valid_size"}));

  t = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1);
  t.data.data_dir = "/etc";
  TaskRunnerOptions o;  // the task's data_dir is checked against the roots
  auto checked = TaskRunner::Create(o);
  ASSERT_TRUE(checked.ok());
  MapTensorSource source(tensors_);
  RunnerResult r;
  EXPECT_TRUE(IsError((*checked)->Run(t, source, {}, &r), absl::StatusCode::kPermissionDenied,
                      {"data roots"}));
}

// An eval task: each path's accuracy with the inherited weights, as EvaluatePaths gives it on a
// supernet loaded by hand; no tensor comes back (BatchNorm's statistics are put back).
TEST_F(TaskRunnerTest, EvalTaskEqualsEvaluatePathsAndReturnsNoTensor) {
  std::vector<std::vector<int>> paths = {SomePath(space_, 0), SomePath(space_, 1),
                                         SomePath(space_, 2)};
  std::vector<std::vector<bool>> keep = KeepForPaths(space_, paths);
  for (const auto& p : paths) {  // each path's ops are in the union
    std::vector<std::vector<bool>> k = KeepForPath(space_, p);
    for (size_t e = 0; e < k.size(); ++e) {
      for (size_t c = 0; c < k[e].size(); ++c) EXPECT_TRUE(!k[e][c] || keep[e][c]);
    }
  }
  RunnerTask t;
  t.space_json = space_.ToJson();
  t.data = SmallJobData();
  t.tensors = runner_testing::ListFor(space_, keep, {});
  t.spec = EvalSpec{paths, /*batch_size=*/25};
  t.label = "eval";
  RunnerResult r = Run(t, tensors_);
  EXPECT_TRUE(r.tensors.empty());
  ASSERT_EQ(r.path_accuracies.size(), paths.size());

  SuperNet net(space_, keep);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->named_parameters()) p.value().copy_(tensors_.at(p.key()));
    for (auto& b : net->named_buffers()) b.value().copy_(tensors_.at(b.key()));
  }
  DataSplit split = LoadSplit(t.data);
  std::vector<double> want = EvaluatePaths(net, paths, split.valid, 25, torch::kCPU);
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(r.path_accuracies[i], want[i]) << i;
    EXPECT_GE(want[i], 0.0);
    EXPECT_LE(want[i], 1.0);
  }
  // The statistics the evaluation moved were put back.
  for (const auto& b : net->named_buffers()) {
    EXPECT_TRUE(torch::equal(b.value(), tensors_.at(b.key()))) << b.key();
  }

  absl::Status st;
  t.spec = EvalSpec{{}, 25};
  Run(t, tensors_, &st);
  EXPECT_TRUE(IsError(st, absl::StatusCode::kInvalidArgument, {"eval.paths"}));
  std::vector<int> bad = paths[0];
  bad[0] = 99;
  t.spec = EvalSpec{{paths[0], bad}, 25};
  Run(t, tensors_, &st);
  EXPECT_TRUE(IsError(st, absl::StatusCode::kInvalidArgument, {"eval.paths[1]"}));
}

TEST_F(TaskRunnerTest, AbandonedTaskStopsAfterLoading) {
  absl::Status s;
  TaskControl control;
  control.abandoned = [] { return true; };
  Run(WeightTaskOn(space_, SomePath(space_, 0), tensors_, 1), tensors_, &s, control);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
}

// A streamed image folder (stream_images): the tasks read batches decoded as they ask for them,
// and two workers - runners with other decoding thread counts, one of which ran an earlier task
// and so continues its prefetch - give the same results bit for bit.
TEST_F(TaskRunnerTest, StreamedFolderTasksAreTheSameOnEveryWorker) {
  char tmpl[] = "/tmp/nas_runner_folder_XXXXXX";
  const std::string root = mkdtemp(tmpl);
  absl::StatusOr<DataSet> written = testing_folder::WriteFashionFolder(root, 200, 2);
  ASSERT_TRUE(written.ok()) << written.status();
  auto make = [](int threads) {
    TaskRunnerOptions o;
    o.data_roots = {"/tmp"};
    o.loader_threads = threads;
    absl::StatusOr<std::unique_ptr<TaskRunner>> r = TaskRunner::Create(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(*r);
  };
  std::unique_ptr<TaskRunner> a = make(1), b = make(3);
  TaskData d = SmallJobData();
  d.dataset = "folder";
  d.data_dir = root;
  d.stream_images = true;
  d.train_subset = 0;
  d.test_subset = 0;
  d.valid_size = 40;
  d.batch_size = 16;
  auto run = [&](TaskRunner& runner, RunnerTask t) {
    t.data = d;
    MapTensorSource source(tensors_);
    RunnerResult r;
    absl::Status s = runner.Run(t, source, TaskControl{}, &r);
    EXPECT_TRUE(s.ok()) << s;
    return r;
  };
  RunnerTask init;
  init.space_json = space_.ToJson();
  init.spec = InitSpec{1};
  RunnerResult sizes = run(*a, init);
  EXPECT_EQ(sizes.train_size, 140);  // 200 images: a tenth is the test set, 40 validate
  EXPECT_EQ(sizes.valid_size, 40);

  RunnerTask w1 = WeightTaskOn(space_, SomePath(space_, 0), tensors_, 2, 0);
  RunnerTask w2 = WeightTaskOn(space_, SomePath(space_, 1), tensors_, 2, 2);
  RunnerResult a1 = run(*a, w1);
  RunnerResult a2 = run(*a, w2);
  RunnerResult b2 = run(*b, w2);
  EXPECT_TRUE(std::isfinite(a1.loss));
  // Worker b's loader started with the task: its first batch was waited for.
  EXPECT_GT(b2.stats.data_wait_seconds, 0);
  EXPECT_EQ(a2.loss, b2.loss);
  EXPECT_EQ(a2.accuracy, b2.accuracy);
  std::map<std::string, torch::Tensor> ta = ByName(a2), tb = ByName(b2);
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    ASSERT_EQ(tb.count(name), 1u) << name;
    EXPECT_TRUE(torch::equal(t, tb.at(name))) << name;
  }
  RunnerResult aa = run(*a, ArchTaskOn(space_, 0));
  RunnerResult ba = run(*b, ArchTaskOn(space_, 0));
  EXPECT_EQ(aa.loss, ba.loss);
  EXPECT_EQ(aa.gate_grads, ba.gate_grads);
  std::filesystem::remove_all(root);
}

TEST(TaskRunnerDeviceTest, DevicesAreCheckedAtCreation) {
  EXPECT_TRUE(IsError(ParseDevice("tpu", "device").status(), absl::StatusCode::kInvalidArgument,
                      {"not cpu, cuda or cuda:N"}));
  EXPECT_TRUE(IsError(ParseDevice("cuda:x", "device").status(),
                      absl::StatusCode::kInvalidArgument, {"cuda:N"}));
  EXPECT_TRUE(IsError(ParseDevice("cuda:-1", "device").status(),
                      absl::StatusCode::kInvalidArgument, {"cuda:N"}));
  ASSERT_TRUE(ParseDevice("cpu", "device").ok());
  if (torch::cuda::is_available()) {
    EXPECT_TRUE(ParseDevice("cuda", "device").ok());
    EXPECT_TRUE(IsError(ParseDevice("cuda:4096", "device").status(),
                        absl::StatusCode::kFailedPrecondition, {"visible"}));
  } else {
    // Never a silent CPU run.
    TaskRunnerOptions o;
    o.device = "cuda";
    EXPECT_TRUE(IsError(TaskRunner::Create(o).status(), absl::StatusCode::kFailedPrecondition,
                        {"no CUDA device"}));
    EXPECT_TRUE(IsError(ParseDevice("cuda:0", "device").status(),
                        absl::StatusCode::kFailedPrecondition, {"no CUDA device"}));
  }
}

}  // namespace
}  // namespace nas
