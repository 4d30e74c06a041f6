// ArchParams, ArchAdam, the pair rescaling, ArchUpdate, the latency model and loss, REINFORCE.
// (The gradient estimator itself is in estimator_test.cc.)
#include "core/arch_params.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

using ::testing::HasSubstr;

// Three edges: 7 candidates (index 6 is Zero), 7 candidates, 2 candidates.
ArchParams MakeParams(uint64_t seed, double stddev = 0.5) {
  ArchParams ap({7, 7, 2});
  Rng rng(seed);
  ap.InitNormal(stddev, rng);
  return ap;
}

LatencyModel MakeLatency() {
  return LatencyModel(7.0, {{1, 2, 3, 4, 5, 6, 0}, {2, 4, 6, 8, 10, 12, 14}, {10, 20}});
}

bool InPair(const PairSample& pr, int i) { return pr.active == i || pr.other == i; }

// ---------------------------------------------------------------- ArchParams basics

TEST(ArchParamsTest, ShapeAndSoftmax) {
  ArchParams ap({7, 7, 2});
  EXPECT_EQ(ap.num_edges(), 3);
  EXPECT_EQ(ap.num_candidates(0), 7);
  EXPECT_EQ(ap.num_candidates(2), 2);
  for (double q : ap.Probs(0)) EXPECT_DOUBLE_EQ(q, 1.0 / 7);
  ap.mutable_alpha(2) = {std::log(3.0), 0.0};
  EXPECT_NEAR(ap.Probs(2)[0], 0.75, 1e-15);
  // Stable for large logits.
  std::vector<double> p = Softmax({1000.0, 1001.0});
  EXPECT_NEAR(p[1], std::exp(1.0) / (1 + std::exp(1.0)), 1e-15);
  EXPECT_TRUE(Softmax({}).empty());
}

TEST(ArchParamsTest, InitNormalIsSeededAndHasTheRequestedScale) {
  ArchParams a({7, 7, 7, 7, 7, 7, 7, 7, 7, 7}), b({7, 7, 7, 7, 7, 7, 7, 7, 7, 7});
  Rng r1(3), r2(3);
  a.InitNormal(1e-3, r1);
  b.InitNormal(1e-3, r2);
  EXPECT_EQ(a.all(), b.all());
  double ss = 0;
  int n = 0;
  for (const auto& e : a.all()) {
    for (double v : e) {
      EXPECT_NE(v, 0.0);
      ss += v * v;
      ++n;
    }
  }
  // 70 draws: the sample standard deviation is within 30% of 1e-3 with overwhelming probability.
  EXPECT_NEAR(std::sqrt(ss / n), 1e-3, 3e-4);
}

TEST(ArchParamsTest, ArgmaxTakesFirstOnTiesAndEntropyIsInNats) {
  ArchParams ap({3, 2});
  ap.mutable_alpha(0) = {0.1, 0.5, 0.5};
  EXPECT_EQ(ap.Argmax(), (std::vector<int>{1, 0}));
  ArchParams uniform({7, 2});
  EXPECT_NEAR(uniform.MeanEntropy(), (std::log(7.0) + std::log(2.0)) / 2, 1e-14);
  EXPECT_EQ(ArchParams().MeanEntropy(), 0.0);
}

TEST(ArchParamsTest, JsonRoundTripIsExact) {
  ArchParams ap = MakeParams(9);
  auto back = ArchParams::FromJson(ap.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->all(), ap.all());
  EXPECT_TRUE(IsError(ArchParams::FromJson("[[1, 2], []]").status(),
                      absl::StatusCode::kInvalidArgument, {"alpha[1]"}));
  EXPECT_TRUE(IsError(ArchParams::FromJson("[[1, \"x\"]]").status(),
                      absl::StatusCode::kInvalidArgument, {"alpha[0]", "numbers"}));
  EXPECT_TRUE(IsError(ArchParams::FromJson("{\"a\": 1}").status(),
                      absl::StatusCode::kInvalidArgument, {"alpha"}));
  EXPECT_TRUE(IsError(ArchParams::FromJson("[[1,").status(), absl::StatusCode::kInvalidArgument,
                      {"alpha", "not valid JSON"}));
}

TEST(ArchParamsTest, SamplePathFrequenciesFollowP) {
  ArchParams ap({4});
  ap.mutable_alpha(0) = {0.3, -1.0, 1.2, 0.0};
  std::vector<double> p = ap.Probs(0);
  Rng rng(17);
  const int n = 100000;
  std::vector<int> count(4, 0);
  for (int s = 0; s < n; ++s) ++count[ap.SamplePath(rng)[0]];
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(static_cast<double>(count[i]) / n, p[i], 5 * std::sqrt(p[i] * (1 - p[i]) / n)) << i;
  }
}

TEST(ArchParamsTest, SamplePairsGivesDistinctCandidatesAndHandlesSingletons) {
  ArchParams ap({7, 1, 2, 4});
  ap.mutable_alpha(3) = {0.0, 0.0, -1000.0, 0.0};  // candidate 2 has probability 0
  Rng rng(1);
  for (int s = 0; s < 2000; ++s) {
    std::vector<PairSample> pairs = ap.SamplePairs(rng);
    ASSERT_EQ(pairs.size(), 4u);
    EXPECT_NE(pairs[0].active, pairs[0].other);
    EXPECT_EQ(pairs[1].active, 0);
    EXPECT_EQ(pairs[1].other, 0);
    EXPECT_NE(pairs[2].active, pairs[2].other);
    EXPECT_FALSE(InPair(pairs[3], 2));
    EXPECT_NE(pairs[3].active, pairs[3].other);
  }
}

// ---------------------------------------------------------------- RescaleInvolved

TEST(RescaleInvolvedTest, UnsampledProbabilitiesAreUnchanged) {
  Rng rng(21);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> alpha(7);
    for (double& a : alpha) a = rng.Normal();
    std::vector<double> before = Softmax(alpha);
    std::vector<int> involved = {static_cast<int>(trial % 7), static_cast<int>((trial + 3) % 7)};
    std::vector<double> old = {alpha[involved[0]], alpha[involved[1]]};
    // An arbitrary change of the involved alphas (as an optimizer step would make).
    alpha[involved[0]] += 3.0 * rng.Normal();
    alpha[involved[1]] -= 2.0 * rng.Normal();
    double new_ratio = std::exp(alpha[involved[0]] - alpha[involved[1]]);
    RescaleInvolved(alpha, involved, old);
    std::vector<double> after = Softmax(alpha);
    for (int k = 0; k < 7; ++k) {
      if (k == involved[0] || k == involved[1]) continue;
      EXPECT_NEAR(after[k], before[k], 1e-14) << "trial " << trial << " candidate " << k;
    }
    // The pair keeps its total mass and takes the new ratio.
    EXPECT_NEAR(after[involved[0]] + after[involved[1]], before[involved[0]] + before[involved[1]],
                1e-14);
    EXPECT_NEAR(after[involved[0]] / after[involved[1]], new_ratio, 1e-10 * new_ratio);
    // Equivalently: log-sum-exp of the pair's alphas is restored.
    EXPECT_NEAR(std::log(std::exp(alpha[involved[0]]) + std::exp(alpha[involved[1]])),
                std::log(std::exp(old[0]) + std::exp(old[1])), 1e-12);
  }
}

TEST(RescaleInvolvedTest, WorksForLargerInvolvedSets) {
  std::vector<double> alpha = {0.1, -0.4, 0.9, 0.3, -1.0};
  std::vector<double> before = Softmax(alpha);
  std::vector<int> involved = {0, 2, 4};
  std::vector<double> old = {alpha[0], alpha[2], alpha[4]};
  alpha[0] = 5.0;
  alpha[2] = -3.0;
  alpha[4] = 0.7;
  RescaleInvolved(alpha, involved, old);
  std::vector<double> after = Softmax(alpha);
  EXPECT_NEAR(after[1], before[1], 1e-14);
  EXPECT_NEAR(after[3], before[3], 1e-14);
}

// ---------------------------------------------------------------- ArchAdam

// Expected values below are torch.optim.Adam's update (foreach=False, amsgrad=False) written out
// by hand in python3 (float64):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   alpha -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// with grad = g + weight_decay * alpha when weight decay is set.
TEST(ArchAdamTest, MatchesTorchAdamWithMomentum) {
  ArchAdamOptions o;
  o.lr = 0.1;
  o.beta1 = 0.9;
  o.beta2 = 0.999;
  o.eps = 1e-8;
  ArchAdam adam({3}, o);
  std::vector<double> a = {0.3, -0.2, 0.0};
  adam.StepEdge(0, a, {0.5, -1.0, 0.0});
  EXPECT_NEAR(a[0], 0.20000000199999995, 1e-14);
  EXPECT_NEAR(a[1], -0.10000000099999999, 1e-14);
  EXPECT_EQ(a[2], 0.0);
  adam.StepEdge(0, a, {0.2, 0.3, -0.4});
  EXPECT_NEAR(a[0], 0.11014248390292822, 1e-14);
  EXPECT_NEAR(a[1], -0.05721514242922637, 1e-14);
  EXPECT_NEAR(a[2], 0.07441367972643513, 1e-14);
  EXPECT_EQ(adam.steps(0), 2);
}

TEST(ArchAdamTest, DefaultsMatchTorchAdamAndZeroGradientLeavesAlphaUnchanged) {
  // The search's settings: lr 1e-3, betas (0, 0.999), eps 1e-8.
  ArchAdam adam({3}, ArchAdamOptions{});
  EXPECT_EQ(adam.options().beta1, 0.0);
  EXPECT_EQ(adam.options().lr, 1e-3);
  std::vector<double> a = {0.3, -0.2, 0.0};
  adam.StepEdge(0, a, {0.5, -1.0, 0.0});
  EXPECT_NEAR(a[0], 0.29900000002, 1e-15);
  EXPECT_NEAR(a[1], -0.19900000001, 1e-15);
  EXPECT_EQ(a[2], 0.0);
  adam.StepEdge(0, a, {0.2, 0.3, -0.4});
  EXPECT_NEAR(a[0], 0.29847467914497094, 1e-15);
  EXPECT_NEAR(a[1], -0.19940645616642236, 1e-15);
  EXPECT_NEAR(a[2], 0.0014138599148022675, 1e-15);
  // With beta1 = 0 there is no momentum: a zero gradient leaves alpha exactly where it is, even
  // though earlier steps had non-zero gradients (v is non-zero).
  const std::vector<double> before = a;
  adam.StepEdge(0, a, {0.0, -0.05, 0.0});
  EXPECT_EQ(a[0], before[0]);
  EXPECT_EQ(a[2], before[2]);
  EXPECT_NEAR(a[1], -0.1993235630764285, 1e-15);
  for (int s = 0; s < 5; ++s) adam.StepEdge(0, a, {0.0, 0.0, 0.0});
  EXPECT_EQ(a[0], before[0]);
  EXPECT_EQ(a[2], before[2]);
}

TEST(ArchAdamTest, WeightDecayIsAddedToTheGradient) {
  ArchAdamOptions o;
  o.lr = 0.1;
  o.beta1 = 0.9;
  o.weight_decay = 0.01;
  ArchAdam adam({2}, o);
  std::vector<double> a = {0.3, -0.2};
  adam.StepEdge(0, a, {0.5, -1.0});
  EXPECT_NEAR(a[0], 0.20000000198807152, 1e-14);
  EXPECT_NEAR(a[1], -0.100000000998004, 1e-14);
  adam.StepEdge(0, a, {0.2, 0.3});
  EXPECT_NEAR(a[0], 0.11008199074490965, 1e-14);
  EXPECT_NEAR(a[1], -0.057082444240067726, 1e-14);
}

TEST(ArchAdamTest, EdgesHaveIndependentStateAndJsonRoundTripContinuesExactly) {
  ArchAdamOptions o;
  o.lr = 0.05;
  o.beta1 = 0.5;
  ArchAdam adam({3, 2}, o);
  std::vector<double> a0 = {0.1, 0.2, 0.3}, a1 = {0.0, 1.0};
  adam.StepEdge(0, a0, {1.0, -2.0, 0.5});
  adam.StepEdge(0, a0, {0.3, 0.1, -0.2});
  EXPECT_EQ(adam.steps(0), 2);
  EXPECT_EQ(adam.steps(1), 0);
  auto copy = ArchAdam::FromJson(adam.ToJson());
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->steps(0), 2);
  EXPECT_EQ(copy->options().beta1, 0.5);
  std::vector<double> b0 = a0;
  adam.StepEdge(0, a0, {-0.7, 0.4, 0.9});
  copy->StepEdge(0, b0, {-0.7, 0.4, 0.9});
  EXPECT_EQ(a0, b0);
  adam.StepEdge(1, a1, {0.5, -0.5});
  EXPECT_EQ(adam.steps(1), 1);
  EXPECT_TRUE(IsError(ArchAdam::FromJson("{\"lr\": 1}").status(),
                      absl::StatusCode::kInvalidArgument, {"beta1"}));
  EXPECT_TRUE(IsError(ArchAdam::FromJson(R"({"lr": 1, "beta1": 0, "beta2": 0.9, "eps": 1e-8,
      "weight_decay": 0, "m": [[0]], "v": [[0], [0]], "step": [0]})")
                          .status(),
                      absl::StatusCode::kInvalidArgument, {"disagree"}));
}

// ---------------------------------------------------------------- LatencyModel and loss

TEST(LatencyModelTest, ExpectedAtUniformIsTheMean) {
  LatencyModel lat = MakeLatency();
  ArchParams ap({7, 7, 2});
  // 7 + (1+2+3+4+5+6+0)/7 + (2+4+...+14)/7 + (10+20)/2 = 7 + 3 + 8 + 15.
  EXPECT_NEAR(lat.Expected(ap), 33.0, 1e-12);
  EXPECT_DOUBLE_EQ(lat.PathLatency({6, 0, 1}), 7.0 + 0.0 + 2.0 + 20.0);
  EXPECT_DOUBLE_EQ(lat.PathLatency({2, 6, 0}), 7.0 + 3.0 + 14.0 + 10.0);
}

TEST(LatencyModelTest, ExpectedGradMatchesFiniteDifferences) {
  LatencyModel lat = MakeLatency();
  ArchParams ap = MakeParams(4, 0.8);
  for (int e = 0; e < ap.num_edges(); ++e) {
    std::vector<double> g = lat.ExpectedGrad(ap, e);
    ASSERT_EQ(static_cast<int>(g.size()), ap.num_candidates(e));
    for (int i = 0; i < ap.num_candidates(e); ++i) {
      const double h = 1e-5;
      ArchParams up = ap, down = ap;
      up.mutable_alpha(e)[i] += h;
      down.mutable_alpha(e)[i] -= h;
      double fd = (lat.Expected(up) - lat.Expected(down)) / (2 * h);
      EXPECT_NEAR(g[i], fd, 1e-8) << "edge " << e << " candidate " << i;
    }
  }
}

TEST(HardwareLossTest, MulLogValueAndDerivatives) {
  HardwareLossOptions o;
  o.type = HardwareLossOptions::Type::kMulLog;
  o.target_ms = 80;
  ASSERT_TRUE(o.Validate().ok());
  EXPECT_EQ(o.alpha, 0.2);
  EXPECT_EQ(o.beta, 0.3);
  auto v = EvaluateHardwareLoss(o, 2.0, 100.0);
  ASSERT_TRUE(v.ok()) << v.status();
  // python3: 0.4 * (math.log(100) / math.log(80)) ** 0.3
  EXPECT_NEAR(v->loss, 0.40600482308213115, 1e-14);
  auto loss_at = [&](double ce, double e) { return EvaluateHardwareLoss(o, ce, e)->loss; };
  const double h = 1e-5;
  EXPECT_NEAR(v->dloss_dce, (loss_at(2.0 + h, 100) - loss_at(2.0 - h, 100)) / (2 * h), 1e-9);
  EXPECT_NEAR(v->dloss_dlat, (loss_at(2.0, 100 + h) - loss_at(2.0, 100 - h)) / (2 * h), 1e-9);
  EXPECT_GT(v->dloss_dlat, 0);
  // At E = T the factor is alpha_h.
  EXPECT_NEAR(EvaluateHardwareLoss(o, 3.0, 80.0)->loss, 3.0 * 0.2, 1e-14);
  // ln E <= 0 cannot be raised to a fractional power.
  EXPECT_TRUE(IsError(EvaluateHardwareLoss(o, 2.0, 0.9).status(),
                      absl::StatusCode::kFailedPrecondition, {"mul#log"}));
}

TEST(HardwareLossTest, AddLinearValueAndDerivatives) {
  HardwareLossOptions o;
  o.type = HardwareLossOptions::Type::kAddLinear;
  o.target_ms = 80;
  o.lambda = 0.1;
  auto v = EvaluateHardwareLoss(o, 2.0, 100.0);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_NEAR(v->loss, 2.0 + 0.1 * 20.0 / 80.0, 1e-15);
  auto loss_at = [&](double ce, double e) { return EvaluateHardwareLoss(o, ce, e)->loss; };
  const double h = 1e-4;
  EXPECT_NEAR(v->dloss_dce, (loss_at(2.0 + h, 100) - loss_at(2.0 - h, 100)) / (2 * h), 1e-9);
  EXPECT_NEAR(v->dloss_dlat, (loss_at(2.0, 100 + h) - loss_at(2.0, 100 - h)) / (2 * h), 1e-9);
  EXPECT_NEAR(v->dloss_dlat, 0.1 / 80, 1e-15);
  // Sub-millisecond targets are fine for add#linear.
  o.target_ms = 0.5;
  EXPECT_TRUE(o.Validate().ok());
}

TEST(HardwareLossTest, NoneIsPlainCrossEntropy) {
  HardwareLossOptions o;
  o.type = HardwareLossOptions::Type::kNone;
  EXPECT_TRUE(o.Validate().ok());
  auto v = EvaluateHardwareLoss(o, 1.7, 123.0);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->loss, 1.7);
  EXPECT_EQ(v->dloss_dce, 1.0);
  EXPECT_EQ(v->dloss_dlat, 0.0);
}

TEST(HardwareLossTest, ValidateAndParse) {
  HardwareLossOptions o;
  o.type = HardwareLossOptions::Type::kMulLog;
  for (double t : {1.0, 0.5, 0.0, -3.0}) {
    o.target_ms = t;
    EXPECT_TRUE(IsError(o.Validate(), absl::StatusCode::kInvalidArgument, {"target_latency_ms"}))
        << t;
  }
  o.target_ms = 1.5;
  EXPECT_TRUE(o.Validate().ok());
  o.beta = 0;
  EXPECT_TRUE(IsError(o.Validate(), absl::StatusCode::kInvalidArgument, {"beta"}));
  o.type = HardwareLossOptions::Type::kAddLinear;
  o.target_ms = 0;
  EXPECT_TRUE(IsError(o.Validate(), absl::StatusCode::kInvalidArgument, {"target_latency_ms"}));
  o.target_ms = 10;
  o.lambda = -1;
  EXPECT_TRUE(IsError(o.Validate(), absl::StatusCode::kInvalidArgument, {"lambda"}));

  for (auto t : {HardwareLossOptions::Type::kNone, HardwareLossOptions::Type::kMulLog,
                 HardwareLossOptions::Type::kAddLinear}) {
    auto parsed = HardwareLossOptions::ParseType(HardwareLossOptions::TypeName(t));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(HardwareLossOptions::TypeName(HardwareLossOptions::Type::kMulLog), "mul#log");
  EXPECT_TRUE(IsError(HardwareLossOptions::ParseType("mul#lin").status(),
                      absl::StatusCode::kInvalidArgument, {"mul#lin"}));
}

// ---------------------------------------------------------------- ArchUpdate

TEST(ArchUpdateTest, WithoutLatencyTermUnsampledProbabilitiesAreUnchanged) {
  LatencyModel lat = MakeLatency();
  HardwareLossOptions none;
  none.type = HardwareLossOptions::Type::kNone;
  HardwareLossOptions mul_log;
  mul_log.target_ms = 30;
  // (latency model, loss): no model at all, or a model with loss "none".
  for (int variant = 0; variant < 2; ++variant) {
    ArchParams ap = MakeParams(31 + variant);
    ArchAdamOptions o;
    o.lr = 0.3;  // large steps make any leak visible
    ArchAdam adam(std::vector<int>{7, 7, 2}, o);
    Rng rng(99);
    for (int step = 0; step < 10; ++step) {
      std::vector<std::vector<double>> before = ap.AllProbs();
      std::vector<PairSample> pairs = ap.SamplePairs(rng);
      std::vector<std::vector<double>> gg;
      for (int e = 0; e < 3; ++e) gg.push_back({rng.Normal(), rng.Normal()});
      auto stats =
          variant == 0
              ? ArchUpdate(ap, adam, pairs, gg, {false, false, false}, 2.0, nullptr, mul_log)
              : ArchUpdate(ap, adam, pairs, gg, {false, false, false}, 2.0, &lat, none);
      ASSERT_TRUE(stats.ok()) << stats.status();
      EXPECT_EQ(stats->edges_updated, 3);
      EXPECT_EQ(stats->loss, 2.0);
      std::vector<std::vector<double>> after = ap.AllProbs();
      for (int e = 0; e < 3; ++e) {
        for (int k = 0; k < ap.num_candidates(e); ++k) {
          if (InPair(pairs[e], k)) continue;
          EXPECT_NEAR(after[e][k], before[e][k], 1e-14)
              << "variant " << variant << " step " << step << " edge " << e << " cand " << k;
        }
        double moved = std::abs(after[e][pairs[e].active] - before[e][pairs[e].active]);
        EXPECT_GT(moved, 1e-6) << "the pair itself must move";
      }
    }
  }
}

TEST(ArchUpdateTest, ZeroActiveEdgeGetsNoUpdate) {
  LatencyModel lat = MakeLatency();
  HardwareLossOptions loss;
  loss.type = HardwareLossOptions::Type::kAddLinear;
  loss.target_ms = 20;
  ArchParams ap = MakeParams(8);
  ArchAdam adam({7, 7, 2}, ArchAdamOptions{});
  const std::vector<double> edge0 = ap.alpha(0);
  // Edge 0's active candidate is Zero (index 6); its gate gradients and the latency gradient must
  // both be ignored, and its Adam step count must not advance.
  std::vector<PairSample> pairs = {{6, 2}, {1, 4}, {0, 1}};
  auto stats = ArchUpdate(ap, adam, pairs, {{5.0, -5.0}, {0.3, -0.2}, {0.1, 0.4}},
                          {true, false, false}, 1.5, &lat, loss);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->edges_updated, 2);
  EXPECT_EQ(ap.alpha(0), edge0);
  EXPECT_EQ(adam.steps(0), 0);
  EXPECT_EQ(adam.steps(1), 1);
  EXPECT_EQ(adam.steps(2), 1);
}

TEST(ArchUpdateTest, SingleCandidateEdgeIsSkipped) {
  ArchParams ap({1, 3});
  ArchAdam adam({1, 3}, ArchAdamOptions{});
  HardwareLossOptions none;
  none.type = HardwareLossOptions::Type::kNone;
  auto stats = ArchUpdate(ap, adam, {{0, 0}, {2, 0}}, {{1.0, 1.0}, {1.0, -1.0}}, {false, false},
                          1.0, nullptr, none);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->edges_updated, 1);
  EXPECT_EQ(adam.steps(0), 0);
  EXPECT_EQ(ap.alpha(0)[0], 0.0);
}

TEST(ArchUpdateTest, ShapeErrorsAreInvalidArgumentAndChangeNothing) {
  HardwareLossOptions none;
  none.type = HardwareLossOptions::Type::kNone;
  ArchParams ap = MakeParams(2);
  ArchAdam adam({7, 7, 2}, ArchAdamOptions{});
  const auto alpha_before = ap.all();
  const std::string adam_before = adam.ToJson();
  std::vector<PairSample> pairs = {{0, 1}, {2, 3}, {0, 1}};
  std::vector<bool> flags = {false, false, false};

  EXPECT_TRUE(IsError(
      ArchUpdate(ap, adam, {{0, 1}, {2, 3}}, {{1, 2}, {1, 2}, {1, 2}}, flags, 1.0, nullptr, none)
          .status(),
      absl::StatusCode::kInvalidArgument, {"expected 3"}));
  EXPECT_TRUE(
      IsError(ArchUpdate(ap, adam, pairs, {{1, 2}, {1, 2}}, flags, 1.0, nullptr, none).status(),
              absl::StatusCode::kInvalidArgument, {"expected 3"}));
  EXPECT_TRUE(IsError(
      ArchUpdate(ap, adam, pairs, {{1, 2}, {1, 2}, {1, 2}}, {false, false}, 1.0, nullptr, none)
          .status(),
      absl::StatusCode::kInvalidArgument, {"expected 3"}));
  // A bad last edge: the earlier, valid edges must not have been stepped either.
  EXPECT_TRUE(IsError(
      ArchUpdate(ap, adam, pairs, {{1, 2}, {1, 2}, {1, 2, 3}}, flags, 1.0, nullptr, none).status(),
      absl::StatusCode::kInvalidArgument, {"gate_grads[2]", "expected 2 values, got 3"}));
  EXPECT_TRUE(
      IsError(ArchUpdate(ap, adam, pairs, {{1, 2}, {1, 2}, {}}, flags, 1.0, nullptr, none).status(),
              absl::StatusCode::kInvalidArgument, {"gate_grads[2]"}));
  EXPECT_TRUE(IsError(
      ArchUpdate(ap, adam, pairs, {{1, 2}, {1, NAN}, {1, 2}}, flags, 1.0, nullptr, none).status(),
      absl::StatusCode::kInvalidArgument, {"gate_grads[1]", "not finite"}));
  EXPECT_TRUE(IsError(ArchUpdate(ap, adam, {{0, 1}, {2, 7}, {0, 1}}, {{1, 2}, {1, 2}, {1, 2}},
                                 flags, 1.0, nullptr, none)
                          .status(),
                      absl::StatusCode::kInvalidArgument, {"pairs[1]", "outside [0, 7)"}));
  EXPECT_TRUE(IsError(ArchUpdate(ap, adam, {{0, 1}, {2, 3}, {-1, 1}}, {{1, 2}, {1, 2}, {1, 2}},
                                 flags, 1.0, nullptr, none)
                          .status(),
                      absl::StatusCode::kInvalidArgument, {"pairs[2]"}));
  // A latency model of another space.
  LatencyModel other(1.0, {{1, 2, 3, 4, 5, 6, 0}, {1, 2}});
  HardwareLossOptions add;
  add.type = HardwareLossOptions::Type::kAddLinear;
  add.target_ms = 10;
  EXPECT_TRUE(IsError(
      ArchUpdate(ap, adam, pairs, {{1, 2}, {1, 2}, {1, 2}}, flags, 1.0, &other, add).status(),
      absl::StatusCode::kInvalidArgument, {"latency model"}));
  EXPECT_EQ(ap.all(), alpha_before);
  EXPECT_EQ(adam.ToJson(), adam_before);
}

TEST(ArchUpdateTest, ComposesScaledEstimatorLatencyGradientAdamAndRescale) {
  // The reference's order, recomputed by hand for one mul#log step.
  LatencyModel lat = MakeLatency();
  HardwareLossOptions loss;
  loss.target_ms = 30;
  ArchParams ap = MakeParams(5);
  ArchAdamOptions o;
  o.lr = 0.01;
  ArchAdam adam({7, 7, 2}, o);
  std::vector<PairSample> pairs = {{3, 1}, {0, 6}, {1, 0}};
  std::vector<std::vector<double>> gg = {{0.4, -0.1}, {-0.3, 0.2}, {0.05, 0.5}};
  const double ce = 1.2;

  ArchParams want = ap;
  ArchAdam want_adam = adam;
  const double e_lat = lat.Expected(ap);
  auto hw = EvaluateHardwareLoss(loss, ce, e_lat);
  ASSERT_TRUE(hw.ok());
  for (int e = 0; e < 3; ++e) {
    std::vector<int> involved = {pairs[e].active, pairs[e].other};
    std::vector<double> g = GateGradToAlphaGrad(
        ap.alpha(e), involved, {hw->dloss_dce * gg[e][0], hw->dloss_dce * gg[e][1]});
    std::vector<double> dl = lat.ExpectedGrad(ap, e);
    for (size_t i = 0; i < g.size(); ++i) g[i] += hw->dloss_dlat * dl[i];
    std::vector<double>& a = want.mutable_alpha(e);
    std::vector<double> old = {a[involved[0]], a[involved[1]]};
    want_adam.StepEdge(e, a, g);
    RescaleInvolved(a, involved, old);
  }

  auto stats = ArchUpdate(ap, adam, pairs, gg, {false, false, false}, ce, &lat, loss);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_DOUBLE_EQ(stats->expected_ms, e_lat);
  EXPECT_DOUBLE_EQ(stats->loss, hw->loss);
  for (int e = 0; e < 3; ++e) {
    for (int i = 0; i < ap.num_candidates(e); ++i) {
      EXPECT_DOUBLE_EQ(ap.alpha(e)[i], want.alpha(e)[i]) << e << "," << i;
    }
  }
}

TEST(ArchUpdateTest, LatencyTermAloneLowersExpectedLatency) {
  // With zero CE gate gradients only the latency gradient acts (on every candidate, as in the
  // reference), so the expected latency must go down.
  LatencyModel lat = MakeLatency();
  HardwareLossOptions loss;
  loss.type = HardwareLossOptions::Type::kAddLinear;
  loss.target_ms = 20;
  loss.lambda = 1.0;
  ArchParams ap = MakeParams(6, 1e-3);
  ArchAdamOptions o;
  o.lr = 0.05;
  ArchAdam adam({7, 7, 2}, o);
  Rng rng(3);
  double prev = lat.Expected(ap);
  for (int step = 0; step < 5; ++step) {
    std::vector<PairSample> pairs = ap.SamplePairs(rng);
    std::vector<bool> zero = {pairs[0].active == 6, false, false};
    auto stats = ArchUpdate(ap, adam, pairs, {{0, 0}, {0, 0}, {0, 0}}, zero, 1.0, &lat, loss);
    ASSERT_TRUE(stats.ok()) << stats.status();
    double now = lat.Expected(ap);
    EXPECT_LT(now, prev) << "step " << step;
    prev = now;
  }
}

// ---------------------------------------------------------------- REINFORCE

TEST(ReinforceTest, RewardFormula) {
  ReinforceOptions o;
  EXPECT_NEAR(ReinforceReward(o, 0.7, 50, 40), 0.6845529379800499, 1e-15);  // 0.7 * 0.8^0.1
  EXPECT_EQ(ReinforceReward(o, 0.7, 50, 0), 0.7);
  EXPECT_EQ(ReinforceReward(o, 0.7, 0, 40), 0.7);
}

TEST(ReinforceTest, PositiveAdvantageMovesProbabilityTowardThePath) {
  ArchParams ap({3, 4});
  ArchAdamOptions ao;
  ao.lr = 0.1;
  ArchAdam adam({3, 4}, ao);
  ReinforceOptions o;
  ReinforceState state;
  const std::vector<int> path = {2, 0};
  // First call: the baseline starts at the reward, so the advantage is 0 and nothing moves.
  ReinforceUpdate(ap, adam, path, 0.5, o, state);
  EXPECT_TRUE(state.initialised);
  EXPECT_DOUBLE_EQ(state.baseline, 0.5);
  for (int e = 0; e < 2; ++e) {
    for (double a : ap.alpha(e)) EXPECT_EQ(a, 0.0);
  }
  // A better reward: the path's probability rises on every edge, the others fall.
  auto before = ap.AllProbs();
  ReinforceUpdate(ap, adam, path, 1.0, o, state);
  EXPECT_NEAR(state.baseline, 0.95 * 0.5 + 0.05 * 1.0, 1e-15);
  auto after = ap.AllProbs();
  for (int e = 0; e < 2; ++e) {
    for (int i = 0; i < ap.num_candidates(e); ++i) {
      if (i == path[e]) {
        EXPECT_GT(after[e][i], before[e][i]) << e;
      } else {
        EXPECT_LT(after[e][i], before[e][i]) << e << "," << i;
      }
    }
  }
  // A worse reward than the baseline pushes the path's probability down.
  before = after;
  ReinforceUpdate(ap, adam, path, 0.1, o, state);
  after = ap.AllProbs();
  EXPECT_LT(after[0][2], before[0][2]);
  EXPECT_LT(after[1][0], before[1][0]);
}

}  // namespace
}  // namespace nas
