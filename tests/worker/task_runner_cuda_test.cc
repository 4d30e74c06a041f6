// The task runner on a GPU against the same task on the CPU (issue 21's "must hold"): a weight
// step and an arch step agree (loss, updated tensors, gate gradients within 1e-4 relative);
// inactive candidates stay bitwise unchanged after CUDA weight steps; the CUDA memory of a
// weight step does not grow with the number of candidates per edge (the caching allocator's
// peak). Every test skips, saying so, where LibTorch sees no CUDA device; scripts/gpu_check.sh
// runs them on a GPU machine.
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "core/json_fields.h"
#include "core/param_names.h"
#include "gtest/gtest.h"
#include "tests/worker/task_runner_fixture.h"
#include "worker/ops.h"
#include "worker/runtime.h"
#include "worker/task_runner.h"
#include "worker/tasks.h"
#include "worker/train.h"

namespace nas {
namespace {

using runner_testing::ArchTaskOn;
using runner_testing::ByName;
using runner_testing::InitialTensors;
using runner_testing::SomePath;
using runner_testing::WeightTaskOn;

constexpr double kRelative = 1e-4;

// |a - b| / max(|b|, tiny), as norms over the whole tensor.
double RelativeError(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor x = a.to(torch::kCPU).to(torch::kFloat64);
  torch::Tensor y = b.to(torch::kCPU).to(torch::kFloat64);
  double diff = (x - y).norm().item<double>();
  double scale = y.norm().item<double>();
  return diff / std::max(scale, 1e-12);
}

double RelativeError(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-12); }

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) {
      GTEST_SKIP() << "no CUDA device: LibTorch " << TORCH_VERSION
                   << " sees none (a CPU-only build or a machine without a GPU)";
    }
    ConfigureCpuRuntime(0);
    ConfigureDeviceRuntime(/*deterministic=*/true);
    space_ = *SearchSpace::Preset("fashion-mnist");
  }
  SearchSpace space_;
};

class CudaRunnerTest : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    if (!runner_testing::HaveTestData()) {
      GTEST_SKIP() << "no Fashion-MNIST in " << runner_testing::TestDataDir();
    }
    for (const char* device : {"cpu", "cuda"}) {
      TaskRunnerOptions o;
      o.device = device;
      o.data_dir = runner_testing::TestDataDir();
      auto r = TaskRunner::Create(o);
      ASSERT_TRUE(r.ok()) << r.status();
      (std::string(device) == "cpu" ? cpu_ : cuda_) = std::move(*r);
    }
    tensors_ = InitialTensors(space_, 5);
  }

  RunnerResult Run(TaskRunner& runner, const RunnerTask& t,
                   const std::map<std::string, torch::Tensor>& tensors) {
    MapTensorSource source(tensors);
    RunnerResult r;
    absl::Status s = runner.Run(t, source, {}, &r);
    EXPECT_TRUE(s.ok()) << s;
    return r;
  }

  std::unique_ptr<TaskRunner> cpu_, cuda_;
  std::map<std::string, torch::Tensor> tensors_;
};

TEST_F(CudaRunnerTest, WeightStepAgreesWithTheCpu) {
  for (int k = 0; k < 3; ++k) {
    RunnerTask t = WeightTaskOn(space_, SomePath(space_, k), tensors_, 2);
    RunnerResult c = Run(*cpu_, t, tensors_);
    RunnerResult g = Run(*cuda_, t, tensors_);
    EXPECT_LE(RelativeError(g.loss, c.loss), kRelative) << g.loss << " vs " << c.loss;
    std::map<std::string, torch::Tensor> on_cpu = ByName(c);
    std::map<std::string, torch::Tensor> on_gpu = ByName(g);
    ASSERT_EQ(on_cpu.size(), on_gpu.size());
    for (const auto& [name, want] : on_cpu) {
      ASSERT_EQ(on_gpu.count(name), 1u) << name;
      EXPECT_TRUE(on_gpu[name].device().is_cpu()) << name << ": results are host tensors";
      EXPECT_LE(RelativeError(on_gpu[name], want), kRelative) << name;
    }
  }
}

TEST_F(CudaRunnerTest, ArchStepAgreesWithTheCpu) {
  for (int k = 0; k < 3; ++k) {
    RunnerTask t = ArchTaskOn(space_, k);
    RunnerResult c = Run(*cpu_, t, tensors_);
    RunnerResult g = Run(*cuda_, t, tensors_);
    EXPECT_LE(RelativeError(g.loss, c.loss), kRelative);
    ASSERT_EQ(g.gate_grads.size(), c.gate_grads.size());
    torch::Tensor gg = torch::tensor(g.gate_grads, torch::kFloat64);
    torch::Tensor cg = torch::tensor(c.gate_grads, torch::kFloat64);
    EXPECT_LE(RelativeError(gg, cg), kRelative) << "gate gradients";
    std::map<std::string, torch::Tensor> on_cpu = ByName(c);
    for (const auto& [name, t] : ByName(g)) {
      EXPECT_LE(RelativeError(t, on_cpu.at(name)), kRelative) << name;
    }
  }
}

TEST_F(CudaTest, InactiveCandidatesStayBitwiseUnchangedAfterCudaWeightSteps) {
  torch::Device cuda(torch::kCUDA);
  torch::manual_seed(1);
  SuperNet net(space_);  // every candidate materialised, on the GPU
  net->to(cuda);
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : net->named_parameters()) before[p.key()] = p.value().to(torch::kCPU).clone();
  for (const auto& b : net->named_buffers()) before[b.key()] = b.value().to(torch::kCPU).clone();
  std::vector<int> path = SomePath(space_, 2);
  PathSgd sgd(SgdOptions{});
  torch::Tensor x = ChannelsLastStrided(torch::randn({16, 1, 28, 28}, torch::Device(cuda)));
  torch::Tensor y =
      torch::randint(0, 10, {16}, torch::TensorOptions().dtype(torch::kInt64).device(cuda));
  for (int step = 0; step < 3; ++step) WeightStep(net, sgd, path, x, y, 0.05, 0.1);
  torch::cuda::synchronize();
  int inactive = 0;
  for (int e = 0; e < space_.num_edges(); ++e) {
    for (int i = 0; i < static_cast<int>(net->edges[e].size()); ++i) {
      if (i == path[e] || net->edges[e][i].is_empty()) continue;
      std::string prefix = SuperNetImpl::CandidateName(e, i) + ".";
      for (const auto& p : net->edges[e][i]->named_parameters()) {
        const std::string name = prefix + p.key();
        ++inactive;
        EXPECT_TRUE(torch::equal(p.value().to(torch::kCPU), before.at(name))) << name;
        EXPECT_FALSE(p.value().grad().defined()) << name << " has a gradient";
        EXPECT_EQ(sgd.momentum().count(name), 0u) << name << " has momentum";
      }
      for (const auto& b : net->edges[e][i]->named_buffers()) {
        const std::string name = prefix + b.key();
        EXPECT_TRUE(torch::equal(b.value().to(torch::kCPU), before.at(name))) << name;
      }
    }
  }
  EXPECT_GT(inactive, 0);
  // The path itself did move.
  const std::string active = SuperNetImpl::CandidateName(0, path[0]) + ".";
  bool moved = false;
  for (const auto& p : net->named_parameters()) {
    if (p.key().rfind(active, 0) == 0 &&
        !torch::equal(p.value().to(torch::kCPU), before.at(p.key()))) {
      moved = true;
    }
  }
  EXPECT_TRUE(moved);
}

absl::StatusOr<SearchSpace> WithCandidates(const SearchSpace& base, std::vector<int> kernels,
                                           std::vector<int> expands, bool zero) {
  absl::StatusOr<Json> j = ParseJson(base.ToJson(), "space");
  if (!j.ok()) return j.status();
  (*j)["candidates"] = {{"kernels", kernels}, {"expands", expands}, {"zero", zero}};
  return SearchSpace::FromJson(j->dump());
}

TEST_F(CudaTest, WeightStepMemoryDoesNotGrowWithCandidatesPerEdge) {
  torch::Device cuda(torch::kCUDA);
  const int device = 0;
  struct Case {
    std::vector<int> k, e;
    bool zero;
  };
  std::vector<double> peaks;
  std::vector<int> candidates;
  for (const Case& c : {Case{{3}, {3}, false}, Case{{3, 5, 7}, {3, 6}, true}}) {
    absl::StatusOr<SearchSpace> space = WithCandidates(space_, c.k, c.e, c.zero);
    ASSERT_TRUE(space.ok()) << space.status();
    int n = 0;
    for (int m : space->CandidatesPerEdge()) n = std::max(n, m);
    candidates.push_back(n);
    torch::manual_seed(0);
    SuperNet net(*space);
    net->to(cuda);
    torch::Tensor x = ChannelsLastStrided(torch::randn({64, 1, 28, 28}, torch::Device(cuda)));
    torch::Tensor y =
        torch::randint(0, 10, {64}, torch::TensorOptions().dtype(torch::kInt64).device(cuda));
    std::vector<int> path(space->num_edges(), 0);  // 3x3_MBConv3 on every edge in both spaces
    PathSgd sgd(SgdOptions{});
    WeightStep(net, sgd, path, x, y, 0.01, 0.1);  // momentum exists from here on
    torch::cuda::synchronize();
    ResetCudaPeak(device);
    CudaMemoryStats at_reset = CudaMemory(device);
    ASSERT_TRUE(at_reset.available) << "this build has no NAS_TORCH_CUDA (allocator statistics)";
    WeightStep(net, sgd, path, x, y, 0.01, 0.1);
    torch::cuda::synchronize();
    CudaMemoryStats after = CudaMemory(device);
    peaks.push_back(static_cast<double>(after.peak_allocated - at_reset.allocated));
    std::printf("candidates per edge %d: weight-step peak above resident %.2f MB\n", n,
                peaks.back() / 1e6);
  }
  ASSERT_EQ(peaks.size(), 2u);
  ASSERT_GT(candidates[1], candidates[0]);
  // The same path runs in both: the step allocates the same (a few blocks of slack).
  EXPECT_LE(peaks[1], peaks[0] * 1.05 + (1 << 20))
      << candidates[1] << " candidates per edge: " << peaks[1] << " bytes, " << candidates[0]
      << ": " << peaks[0];
}

}  // namespace
}  // namespace nas
