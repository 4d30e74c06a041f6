#include <torch/torch.h>

#include <fstream>
#include <sstream>

#include "core/search_space.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "worker/memory_meter.h"
#include "worker/ops.h"
#include "worker/runtime.h"
#include "worker/train.h"

namespace nas {
namespace {

std::string ReadData(const std::string& name) {
  return ReadTextFile(std::string(NAS_DATA_DIR) + "/proxylessnas/" + name);
}

SearchSpace TinySpace(const std::string& kernels, const std::string& expands, bool zero) {
  std::string json = R"({"name": "tiny", "input": {"height": 16, "width": 16, "channels": 3},
    "num_classes": 5, "stem": {"channels": 8, "kernel": 3, "stride": 2},
    "first_block": {"channels": 8, "kernel": 3, "expand": 1},
    "stages": [{"channels": 16, "blocks": 2, "stride": 2}, {"channels": 16, "blocks": 2, "stride": 1}],
    "feature_mix_channels": 32,
    "candidates": {"kernels": )" + kernels + R"(, "expands": )" + expands +
                     R"(, "zero": )" + (zero ? "true" : "false") + "}}";
  auto s = SearchSpace::FromJson(json);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

class SupernetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    MemoryMeter::Install();
    ConfigureCpuRuntime(2);
  }
};

// The ImageNet supernet holds every candidate; its size is the reference construction's
// (computed independently: stem + fixed MBConv1 + 21 edges x 6 MBConv candidates + 1x1 conv
// + linear; Zero has no parameters).
TEST_F(SupernetTest, ImageNetSupernetHasReferenceParameterCount) {
  auto space = SearchSpace::Preset("proxyless-imagenet");
  ASSERT_TRUE(space.ok());
  SuperNet net(*space);
  EXPECT_EQ(CountParameters(*net), 16034168);
}

// Derived networks from the paper's configs: the published parameter counts.
TEST_F(SupernetTest, ReferenceConfigsHaveReferenceParameterCounts) {
  const std::pair<const char*, int64_t> cases[] = {
      {"proxyless_mobile.config.json", 4080512},
      {"proxyless_gpu.config.json", 7119848},
      {"proxyless_cpu.config.json", 4361648},
      {"proxyless_mobile_14.config.json", 6857568},
  };
  for (const auto& [file, expected] : cases) {
    auto config = NetworkConfig::FromReferenceJson(ReadData(file));
    ASSERT_TRUE(config.ok()) << file << ": " << config.status();
    Network net(*config);
    EXPECT_EQ(CountParameters(*net), expected) << file;
    EXPECT_EQ(config->ParameterCount(), expected) << file;
  }
}

TEST_F(SupernetTest, DerivedNetworkForwardShape) {
  auto config = NetworkConfig::FromReferenceJson(ReadData("proxyless_mobile.config.json"));
  ASSERT_TRUE(config.ok());
  Network net(*config);
  net->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor y = net->forward(torch::randn({1, 3, 224, 224}));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 1000}));
}

// Weight steps with momentum and weight decay on: a candidate that is not on the path of a
// step is bitwise unchanged by that step, even when it has momentum from earlier steps.
TEST_F(SupernetTest, InactiveCandidatesAreBitwiseUnchanged) {
  SearchSpace space = TinySpace("[3, 5, 7]", "[3, 6]", true);
  torch::manual_seed(1);
  SuperNet net(space);
  PathSgd sgd(SgdOptions{0.9, true, 4e-5});
  torch::Tensor x = torch::randn({8, 3, 16, 16}).contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor y = torch::randint(0, 5, {8});
  Rng rng(3);
  ArchParams ap(space.CandidatesPerEdge());
  for (int step = 0; step < 6; ++step) {
    std::vector<int> path = ap.SamplePath(rng);
    std::map<std::string, torch::Tensor> before;
    for (auto& p : net->named_parameters()) before[p.key()] = p.value().clone();
    WeightStep(net, sgd, path, x, y, 0.1, 0.1);
    int changed_active = 0;
    for (auto& p : net->named_parameters()) {
      bool active = p.key().rfind("stem", 0) == 0 || p.key().rfind("fixed", 0) == 0 ||
                    p.key().rfind("feature_mix", 0) == 0 || p.key().rfind("classifier", 0) == 0;
      for (int e = 0; e < space.num_edges(); ++e) {
        if (p.key().rfind(SuperNetImpl::CandidateName(e, path[e]) + ".", 0) == 0) active = true;
      }
      bool same = torch::equal(before[p.key()], p.value());
      if (!active) {
        EXPECT_TRUE(same) << "step " << step << ": inactive " << p.key() << " moved";
        EXPECT_FALSE(p.value().grad().defined()) << p.key() << " has a gradient";
      } else if (!same) {
        ++changed_active;
      }
    }
    EXPECT_GT(changed_active, 0);
  }
}

// dCE/dg from ArchStep equals a finite difference of the loss in the gate value.
TEST_F(SupernetTest, GateGradientsMatchFiniteDifferences) {
  SearchSpace space = TinySpace("[3, 5]", "[3, 6]", true);
  torch::manual_seed(2);
  SuperNet net(space);
  // In double precision, so that central differences resolve small gradients. Train-mode BN
  // normalises with batch statistics, so the loss is a deterministic function of the gates.
  net->to(torch::kDouble);
  torch::Tensor x = torch::randn({16, 3, 16, 16}, torch::kDouble)
                        .contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor y = torch::randint(0, 5, {16});
  std::vector<PairSample> pairs = {{0, 3}, {1, 2}, {3, 0}, {2, 1}};
  ArchStepResult r = ArchStep(net, pairs, x, y);
  ASSERT_EQ(r.gate_grads.size(), 4u);
  auto loss_at = [&](int e, int slot, double delta) {
    torch::NoGradGuard no_grad;
    torch::Tensor gates = torch::zeros({4, 2}, torch::kDouble);
    gates.select(1, 0).fill_(1.0);
    gates[e][slot] += delta;
    return torch::nn::functional::cross_entropy(net->ForwardGated(x, pairs, gates), y)
        .item<double>();
  };
  // ReLU6 kinks make larger steps cross non-smooth points; 1e-6 in double is past them.
  const double h = 1e-6;
  for (int e = 0; e < 4; ++e) {
    for (int slot = 0; slot < 2; ++slot) {
      double fd = (loss_at(e, slot, h) - loss_at(e, slot, -h)) / (2 * h);
      EXPECT_NEAR(r.gate_grads[e][slot], fd, 1e-6 + 1e-3 * std::abs(fd))
          << "edge " << e << " slot " << slot;
    }
  }
}

TEST_F(SupernetTest, ZeroCandidatesInArchStep) {
  SearchSpace space = TinySpace("[3]", "[3]", true);  // edges 1..3 have {3x3_MBConv3, Zero}
  ASSERT_EQ(space.edges()[1].ZeroIndex(), 1);
  SuperNet net(space);
  torch::Tensor x = torch::randn({4, 3, 16, 16}).contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor y = torch::randint(0, 5, {4});
  ArchStepResult r = ArchStep(net, {{0, 0}, {1, 0}, {0, 1}, {0, 1}}, x, y);
  EXPECT_FALSE(r.active_is_zero[0]);
  EXPECT_TRUE(r.active_is_zero[1]);
  EXPECT_EQ(r.gate_grads[1][0], 0.0);  // a skipped edge has no gate gradient
  EXPECT_EQ(r.gate_grads[1][1], 0.0);
  EXPECT_EQ(r.gate_grads[2][1], 0.0);  // Zero outputs nothing: dL/dg = sum(dL/dy * 0)
  EXPECT_NE(r.gate_grads[2][0], 0.0);
}

// Path-level binarisation: the bytes a weight step allocates do not depend on how many
// candidates each edge has (1 vs 7 here), while a DARTS-style weighted sum grows with them.
TEST_F(SupernetTest, WeightStepMemoryDoesNotGrowWithCandidates) {
  SearchSpace one = TinySpace("[3]", "[3]", false);
  SearchSpace seven = TinySpace("[3, 5, 7]", "[3, 6]", true);
  ASSERT_EQ(one.CandidatesPerEdge(), (std::vector<int>{1, 1, 1, 1}));
  ASSERT_EQ(seven.CandidatesPerEdge(), (std::vector<int>{6, 7, 7, 7}));
  torch::Tensor x = torch::randn({32, 3, 16, 16}).contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor y = torch::randint(0, 5, {32});
  std::vector<int> path = {0, 0, 0, 0};  // 3x3_MBConv3 everywhere, index 0 in both spaces

  auto step_bytes = [&](const SearchSpace& s) {
    torch::manual_seed(0);
    SuperNet net(s);
    PathSgd sgd(SgdOptions{});
    WeightStep(net, sgd, path, x, y, 0.1, 0.1);  // creates the momentum buffers
    MemoryMeter::Reset();
    WeightStep(net, sgd, path, x, y, 0.1, 0.1);
    return MemoryMeter::Peak() - MemoryMeter::AtReset();
  };
  auto weighted_sum_bytes = [&](const SearchSpace& s) {
    torch::manual_seed(0);
    SuperNet net(s);
    std::vector<std::vector<double>> probs;
    for (int n : s.CandidatesPerEdge()) probs.emplace_back(n, 1.0 / n);
    MemoryMeter::Reset();
    SmoothedCrossEntropy(net->ForwardWeightedSum(x, probs), y, 0.1).backward();
    return MemoryMeter::Peak() - MemoryMeter::AtReset();
  };
  int64_t ours_1 = step_bytes(one), ours_7 = step_bytes(seven);
  int64_t darts_1 = weighted_sum_bytes(one), darts_7 = weighted_sum_bytes(seven);
  EXPECT_GT(ours_1, 0);
  EXPECT_LE(ours_7, ours_1 + ours_1 / 100) << "weight step grew with candidates";
  EXPECT_GE(ours_7, ours_1 - ours_1 / 100);
  EXPECT_GT(darts_7, 3 * darts_1) << "the DARTS-style comparison should grow";
}

}  // namespace
}  // namespace nas
