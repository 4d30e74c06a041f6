// The ProxylessNAS gradient estimator: binary-gate gradients -> dL/dalpha.
//
// Notation: one edge with N candidates, p = softmax(alpha). A loss L(g) of the gate vector g;
// the worker evaluates it at binary gates (g = e_x for the active candidate x) and returns
// G_l = dL/dg_l(e_x) for the involved candidates l.
//
// Full mode (every candidate involved, one-hot g sampled from p):
//   estimate_k = sum_l G_l p_l (delta_kl - p_k).
//   For a linear loss L(g) = sum_i c_i g_i, G_l = c_l whatever x is, so
//   estimate_k = p_k (c_k - sum_j p_j c_j) = d/dalpha_k sum_i p_i c_i = d/dalpha_k E_{x~p}[L(e_x)]:
//   the estimator is exact (no variance at all).
//
// 'two' mode (ArchParams::SamplePairs): draw a ~ p, then b ~ p over the others, so the unordered
// pair S = {i, j} has probability
//   pi_S = p_i p_j (1 / (1 - p_i) + 1 / (1 - p_j));
// then the active x in S is drawn from q^S = softmax(alpha_S) (q_i = p_i / (p_i + p_j)), and
//   estimate_k = sum_{l in S} G_l q_l (delta_kl - q_k)   for k in S, 0 otherwise.
// Its expectation is
//   T_k = sum_S pi_S sum_{x in S} q_x sum_{l in S} G_l(e_x) q_l (delta_kl - q_k).
// For a linear loss the inner sum does not depend on x and T_k = sum_S pi_S d/dalpha_k
// E_{x~q^S}[L(e_x)] with pi_S held fixed: the estimator is unbiased for the pair-conditional
// gradient, which is *not* d/dalpha E_{x~p}[L(e_x)] = p_k (c_k - c_bar) in general (at uniform
// alpha it is that gradient times N / (2 (N - 1)), see UniformAlphaLinearTwoModeIsScaledFull).
// For a quadratic loss L(g) = c.g + 1/2 g'Qg, G_l(e_x) = c_l + Q_lx depends on which candidate
// is active, so T also checks that the active one is drawn from the renormalised pair
// probabilities (drawing it uniformly is off by ~14 standard errors at 200k samples).
//
// The Monte Carlo tests compare the mean of n = 200000 estimates (SamplePairs +
// GateGradToAlphaGrad, the code under test) with T computed here by enumerating every (S, x),
// and accept |mean_k - T_k| <= 5 sigma_k / sqrt(n), where sigma_k^2 is the exact variance of one
// estimate, also from the enumeration. A correct implementation fails a component with
// probability < 1e-6.
#include <cmath>
#include <vector>

#include "core/arch_params.h"
#include "core/rng.h"
#include "gtest/gtest.h"

namespace nas {
namespace {

constexpr int kSamples = 200000;

// The one-edge loss: L(g) = c.g + 1/2 g'Qg (Q = 0 for the linear case).
struct GateLoss {
  std::vector<double> c;
  std::vector<std::vector<double>> q;  // symmetric, N x N; empty means linear

  // dL/dg_l at g = e_active.
  double GateGrad(int l, int active) const { return c[l] + (q.empty() ? 0.0 : q[l][active]); }
};

// The estimate written out from the formula above (independently of GateGradToAlphaGrad).
std::vector<double> PairEstimate(const std::vector<double>& p, int i, int j, int active,
                                 const GateLoss& loss) {
  std::vector<double> g(p.size(), 0.0);
  const int s[2] = {i, j};
  const double q[2] = {p[i] / (p[i] + p[j]), p[j] / (p[i] + p[j])};
  for (int a = 0; a < 2; ++a) {
    for (int b = 0; b < 2; ++b) {
      g[s[a]] += loss.GateGrad(s[b], active) * q[b] * ((a == b ? 1.0 : 0.0) - q[a]);
    }
  }
  return g;
}

struct Moments {
  std::vector<double> mean;
  std::vector<double> stddev;
};

// Exact mean and standard deviation of one 'two'-mode estimate, by enumerating (S, x).
Moments ExactTwoMode(const std::vector<double>& alpha, const GateLoss& loss) {
  const std::vector<double> p = Softmax(alpha);
  const int n = static_cast<int>(p.size());
  struct Outcome {
    double weight;
    std::vector<double> estimate;
  };
  std::vector<Outcome> outcomes;
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      double pi_s = p[i] * p[j] * (1.0 / (1.0 - p[i]) + 1.0 / (1.0 - p[j]));
      double qi = p[i] / (p[i] + p[j]);
      outcomes.push_back({pi_s * qi, PairEstimate(p, i, j, i, loss)});
      outcomes.push_back({pi_s * (1 - qi), PairEstimate(p, i, j, j, loss)});
    }
  }
  Moments m{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  double total = 0;
  for (const Outcome& o : outcomes) {
    total += o.weight;
    for (int k = 0; k < n; ++k) m.mean[k] += o.weight * o.estimate[k];
  }
  EXPECT_NEAR(total, 1.0, 1e-12) << "pair law must sum to 1";
  for (const Outcome& o : outcomes) {
    for (int k = 0; k < n; ++k) {
      double d = o.estimate[k] - m.mean[k];
      m.stddev[k] += o.weight * d * d;
    }
  }
  for (double& v : m.stddev) v = std::sqrt(v);
  return m;
}

// Mean over kSamples of the code under test: SamplePairs then GateGradToAlphaGrad with the gate
// gradients {dL/dg_active, dL/dg_other} at g = e_active.
std::vector<double> MonteCarloTwoMode(const std::vector<double>& alpha, const GateLoss& loss,
                                      uint64_t seed) {
  ArchParams ap({static_cast<int>(alpha.size())});
  ap.mutable_alpha(0) = alpha;
  Rng rng(seed);
  std::vector<double> sum(alpha.size(), 0.0);
  for (int s = 0; s < kSamples; ++s) {
    PairSample pr = ap.SamplePairs(rng)[0];
    EXPECT_NE(pr.active, pr.other);
    std::vector<double> g = GateGradToAlphaGrad(
        alpha, {pr.active, pr.other},
        {loss.GateGrad(pr.active, pr.active), loss.GateGrad(pr.other, pr.active)});
    for (size_t k = 0; k < g.size(); ++k) sum[k] += g[k];
  }
  for (double& v : sum) v /= kSamples;
  return sum;
}

void ExpectMatchesExpectation(const std::vector<double>& alpha, const GateLoss& loss,
                              uint64_t seed) {
  Moments exact = ExactTwoMode(alpha, loss);
  std::vector<double> mc = MonteCarloTwoMode(alpha, loss, seed);
  for (size_t k = 0; k < alpha.size(); ++k) {
    double tol = 5.0 * exact.stddev[k] / std::sqrt(static_cast<double>(kSamples)) + 1e-12;
    EXPECT_NEAR(mc[k], exact.mean[k], tol) << "candidate " << k;
  }
}

const std::vector<double> kAlpha = {0.8, -0.3, 0.1, 0.5, -1.0, 0.0};
const std::vector<double> kC = {1.0, -0.5, 2.0, 0.3, -1.2, 0.7};

GateLoss QuadraticLoss() {
  GateLoss loss{kC, {}};
  const double diag[6] = {3, -2, 1, 4, -3, 2};
  loss.q.assign(6, std::vector<double>(6, 0.0));
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 6; ++j) {
      loss.q[i][j] = i == j ? diag[i] : 0.5 * (((i + 1) * (j + 1)) % 5 - 2);
    }
  }
  return loss;
}

TEST(EstimatorTest, FullModeLinearIsExactGradientOfExpectedLoss) {
  std::vector<double> p = Softmax(kAlpha);
  double c_bar = 0;
  for (size_t i = 0; i < p.size(); ++i) c_bar += p[i] * kC[i];
  std::vector<int> all = {0, 1, 2, 3, 4, 5};
  std::vector<double> g = GateGradToAlphaGrad(kAlpha, all, kC);
  ASSERT_EQ(g.size(), 6u);
  auto expected_loss = [&](const std::vector<double>& a) {
    std::vector<double> q = Softmax(a);
    double s = 0;
    for (size_t i = 0; i < q.size(); ++i) s += q[i] * kC[i];
    return s;
  };
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(g[i], p[i] * (kC[i] - c_bar), 1e-15) << i;
    // Central difference of E_p[L] = sum_i p_i c_i; truncation error O(h^2) ~ 1e-12.
    const double h = 1e-5;
    std::vector<double> up = kAlpha, down = kAlpha;
    up[i] += h;
    down[i] -= h;
    EXPECT_NEAR(g[i], (expected_loss(up) - expected_loss(down)) / (2 * h), 1e-9) << i;
  }
  // Softmax gradients sum to zero.
  double total = 0;
  for (double v : g) total += v;
  EXPECT_NEAR(total, 0.0, 1e-15);
}

TEST(EstimatorTest, PairGradientUsesPairProbabilitiesAndZerosElsewhere) {
  // involved = {4, 1}: q = softmax(alpha_4, alpha_1); gate grads 2.0 (for 4) and -1.0 (for 1).
  std::vector<double> g = GateGradToAlphaGrad(kAlpha, {4, 1}, {2.0, -1.0});
  double q4 = std::exp(kAlpha[4]) / (std::exp(kAlpha[4]) + std::exp(kAlpha[1]));
  double q1 = 1 - q4;
  // d/dalpha_4 (2 q4 - q1) = 2 q4 (1 - q4) + q1 q4 = 3 q4 q1; d/dalpha_1 = -3 q4 q1.
  EXPECT_NEAR(g[4], 3 * q4 * q1, 1e-15);
  EXPECT_NEAR(g[1], -3 * q4 * q1, 1e-15);
  for (int k : {0, 2, 3, 5}) EXPECT_EQ(g[k], 0.0) << k;
  // The order of the involved pair does not matter.
  std::vector<double> swapped = GateGradToAlphaGrad(kAlpha, {1, 4}, {-1.0, 2.0});
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(swapped[k], g[k], 1e-15) << k;
  // Shifting both alphas of the pair together changes nothing (only the pair ratio matters).
  std::vector<double> shifted = kAlpha;
  shifted[4] += 7;
  shifted[1] += 7;
  std::vector<double> g2 = GateGradToAlphaGrad(shifted, {4, 1}, {2.0, -1.0});
  EXPECT_NEAR(g2[4], g[4], 1e-14);
  EXPECT_NEAR(g2[1], g[1], 1e-14);
}

TEST(EstimatorTest, TwoModeLinearMatchesPairConditionalGradient) {
  ExpectMatchesExpectation(kAlpha, GateLoss{kC, {}}, 11);
}

TEST(EstimatorTest, TwoModeLinearIsNotTheFullGradient) {
  // Documents the difference explained at the top: at non-uniform alpha the 'two'-mode
  // expectation is not p_k (c_k - c_bar). (If it were, the Monte Carlo test above could not tell
  // 'two' mode from full mode.)
  Moments exact = ExactTwoMode(kAlpha, GateLoss{kC, {}});
  std::vector<double> full = GateGradToAlphaGrad(kAlpha, {0, 1, 2, 3, 4, 5}, kC);
  double max_diff = 0;
  for (int k = 0; k < 6; ++k) max_diff = std::max(max_diff, std::abs(exact.mean[k] - full[k]));
  EXPECT_GT(max_diff, 0.01);
}

TEST(EstimatorTest, UniformAlphaLinearTwoModeIsScaledFull) {
  // At uniform p: pi_S = 2 / (N (N - 1)), q = 1/2, so
  // T_k = pi/4 sum_{j != k} (c_k - c_j) = N / (2 (N - 1)) * (1/N) (c_k - c_bar).
  const std::vector<double> alpha(6, 0.25);
  std::vector<double> mc = MonteCarloTwoMode(alpha, GateLoss{kC, {}}, 12);
  Moments exact = ExactTwoMode(alpha, GateLoss{kC, {}});
  double c_bar = 0;
  for (double v : kC) c_bar += v / 6;
  for (int k = 0; k < 6; ++k) {
    double closed_form = 6.0 / (2 * 5) * (kC[k] - c_bar) / 6;
    EXPECT_NEAR(exact.mean[k], closed_form, 1e-14) << k;
    EXPECT_NEAR(mc[k], closed_form, 5 * exact.stddev[k] / std::sqrt(double{kSamples})) << k;
  }
}

TEST(EstimatorTest, TwoModeQuadraticMatchesExpectationOverPairAndActive) {
  ExpectMatchesExpectation(kAlpha, QuadraticLoss(), 13);
}

TEST(EstimatorTest, SamplePairsFollowsTheWithoutReplacementLaw) {
  // Frequencies of the unordered pair and of the active member, against pi_S and q^S.
  ArchParams ap({4});
  ap.mutable_alpha(0) = {1.0, 0.0, -0.5, 0.4};
  std::vector<double> p = ap.Probs(0);
  Rng rng(5);
  const int n = 100000;
  std::vector<std::vector<int>> count(4, std::vector<int>(4, 0));  // [active][other]
  for (int s = 0; s < n; ++s) {
    PairSample pr = ap.SamplePairs(rng)[0];
    ASSERT_NE(pr.active, pr.other);
    ++count[pr.active][pr.other];
  }
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      if (i == j) continue;
      double pi_s = p[i] * p[j] * (1 / (1 - p[i]) + 1 / (1 - p[j]));
      double prob = pi_s * p[i] / (p[i] + p[j]);  // pair {i, j} with i active
      double sd = std::sqrt(prob * (1 - prob) / n);
      EXPECT_NEAR(static_cast<double>(count[i][j]) / n, prob, 5 * sd) << i << "," << j;
    }
  }
}

}  // namespace
}  // namespace nas
