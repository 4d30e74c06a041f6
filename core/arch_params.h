// Architecture parameters (alpha) and the ProxylessNAS update rules; plain C++.
//
// Per edge e with N candidates: alpha_e (N values, init N(0, 1e-3)), p_e = softmax(alpha_e).
//  - Weight steps sample one candidate per edge from p (SamplePath).
//  - Arch steps ('two' mode) sample two candidates without replacement, renormalise their
//    probabilities and make one active (SamplePairs). The worker returns dL/dg for the two
//    binary gates; GateGradToAlphaGrad turns them into
//        dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i)     (p over the pair),
//    ArchAdam (betas (0, 0.999)) steps, and RescaleInvolved shifts the pair's alphas so that
//    the unsampled candidates' probabilities do not change.
//  - An edge whose active candidate is Zero gets no update that step.
//
//   ArchParams ap(space.CandidatesPerEdge());
//   ap.InitNormal(1e-3, rng);
//   std::vector<PairSample> pairs = ap.SamplePairs(rng);
//   ... worker computes gate gradients ...
//   ArchUpdate(ap, adam, pairs, gate_grads, ...);
//
// Not thread-safe; the coordinator owns one ArchParams per job.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/rng.h"
#include "core/search_defaults.h"

namespace nas {

// The pair sampled on one edge for an arch step. When the edge has a single candidate,
// other == active and the edge is not updated.
struct PairSample {
  int active = 0;
  int other = 0;
};

class ArchParams {
 public:
  ArchParams() = default;
  explicit ArchParams(const std::vector<int>& candidates_per_edge);

  void InitNormal(double stddev, Rng& rng);

  int num_edges() const { return static_cast<int>(alpha_.size()); }
  int num_candidates(int e) const { return static_cast<int>(alpha_[e].size()); }
  const std::vector<double>& alpha(int e) const { return alpha_[e]; }
  std::vector<double>& mutable_alpha(int e) { return alpha_[e]; }
  const std::vector<std::vector<double>>& all() const { return alpha_; }

  std::vector<double> Probs(int e) const;
  std::vector<std::vector<double>> AllProbs() const;

  // One candidate per edge, drawn from p.
  std::vector<int> SamplePath(Rng& rng) const;
  // Two distinct candidates per edge drawn from p without replacement; the active one is then
  // drawn from their renormalised probabilities.
  std::vector<PairSample> SamplePairs(Rng& rng) const;
  // argmax p per edge (first index on ties).
  std::vector<int> Argmax() const;
  // Mean over edges of the entropy of p (nats).
  double MeanEntropy() const;

  // JSON: [[a00, a01, ...], [a10, ...], ...]
  std::string ToJson() const;
  static absl::StatusOr<ArchParams> FromJson(const std::string& text);

 private:
  std::vector<std::vector<double>> alpha_;
};

// Numerically stable softmax.
std::vector<double> Softmax(const std::vector<double>& x);

// dL/dalpha over all candidates of one edge (zeros outside `involved`) from the binary-gate
// gradients of the involved candidates: p is softmax(alpha[involved]).
std::vector<double> GateGradToAlphaGrad(const std::vector<double>& alpha,
                                        const std::vector<int>& involved,
                                        const std::vector<double>& gate_grads);

// After an optimizer step: alpha[involved] -= log(sum exp(new) / sum exp(old)), so that the
// probabilities of candidates outside `involved` are those before the step.
void RescaleInvolved(std::vector<double>& alpha, const std::vector<int>& involved,
                     const std::vector<double>& old_involved_alpha);

// Adam on alpha with per-edge moments and step counts (as one torch Parameter per edge).
struct ArchAdamOptions {
  double lr = 1e-3;
  double beta1 = 0.0;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class ArchAdam {
 public:
  ArchAdam() = default;
  ArchAdam(const std::vector<int>& candidates_per_edge, ArchAdamOptions options);

  // Steps edge e with gradient g (size = candidates of e).
  void StepEdge(int e, std::vector<double>& alpha, const std::vector<double>& g);

  const ArchAdamOptions& options() const { return options_; }
  int64_t steps(int e) const { return step_[e]; }
  std::string ToJson() const;
  static absl::StatusOr<ArchAdam> FromJson(const std::string& text);

 private:
  ArchAdamOptions options_;
  std::vector<std::vector<double>> m_, v_;
  std::vector<int64_t> step_;
};

// Per-candidate latencies of a space on one device and the expected latency under p.
class LatencyModel {
 public:
  LatencyModel() = default;
  LatencyModel(double fixed_ms, std::vector<std::vector<double>> edge_ms)
      : fixed_ms_(fixed_ms), edge_ms_(std::move(edge_ms)) {}

  // E[lat] = fixed + sum_e sum_i p_ei * lat_ei (Zero costs 0).
  double Expected(const ArchParams& ap) const;
  // dE/dalpha_ei = p_ei * (lat_ei - sum_j p_ej lat_ej).
  std::vector<double> ExpectedGrad(const ArchParams& ap, int e) const;
  // Latency of one concrete path.
  double PathLatency(const std::vector<int>& choices) const;

  double fixed_ms() const { return fixed_ms_; }
  const std::vector<std::vector<double>>& edge_ms() const { return edge_ms_; }

 private:
  double fixed_ms_ = 0;
  std::vector<std::vector<double>> edge_ms_;
};

// The hardware-aware loss and its partial derivatives.
//  mul#log:    L = CE * alpha_h * (ln E / ln T)^beta
//  add#linear: L = CE + lambda * (E - T) / T
//  none:       L = CE
struct HardwareLossOptions {
  enum class Type { kNone, kMulLog, kAddLinear };
  Type type = Type::kMulLog;
  double target_ms = 0;   // T
  double alpha = 0.2;     // mul#log
  double beta = 0.3;      // mul#log
  double lambda = defaults::kLossLambda;  // add#linear

  static absl::StatusOr<Type> ParseType(const std::string& name);
  static std::string TypeName(Type t);
  absl::Status Validate() const;
};

struct HardwareLossValue {
  double loss = 0;
  double dloss_dce = 1;   // multiplies the gate gradients of CE
  double dloss_dlat = 0;  // multiplies dE/dalpha
};

absl::StatusOr<HardwareLossValue> EvaluateHardwareLoss(const HardwareLossOptions& options,
                                                       double ce, double expected_ms);

// One 'two'-mode architecture update, in the reference's order: gate gradients (of CE, as the
// worker returns them) are scaled by dL/dCE and mapped to alpha, the latency gradient is added
// over all candidates, Adam steps every edge whose active candidate is not Zero, and the pair's
// alphas are rescaled. gate_grads[e] = {dCE/dg_active, dCE/dg_other}.
struct ArchUpdateStats {
  double loss = 0;
  double expected_ms = 0;
  int edges_updated = 0;
};
absl::StatusOr<ArchUpdateStats> ArchUpdate(ArchParams& ap, ArchAdam& adam,
                                           const std::vector<PairSample>& pairs,
                                           const std::vector<std::vector<double>>& gate_grads,
                                           const std::vector<bool>& active_is_zero, double ce,
                                           const LatencyModel* latency,
                                           const HardwareLossOptions& loss);

// REINFORCE ('--arch-algo rl'): reward = acc * (T / lat)^w, advantage = reward - baseline,
// dL/dalpha_ei = -advantage * (1[i == path_e] - p_ei); then baseline <- d*baseline + (1-d)*reward.
struct ReinforceOptions {
  double latency_exponent = 0.1;  // w
  double baseline_decay = 0.95;   // d
};
struct ReinforceState {
  double baseline = 0;
  bool initialised = false;
};
double ReinforceReward(const ReinforceOptions& o, double accuracy, double latency_ms,
                       double target_ms);
void ReinforceUpdate(ArchParams& ap, ArchAdam& adam, const std::vector<int>& path,
                     double reward, const ReinforceOptions& o, ReinforceState& state);

}  // namespace nas
