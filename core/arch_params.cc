#include "core/arch_params.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

std::vector<double> Softmax(const std::vector<double>& x) {
  std::vector<double> p(x.size());
  if (x.empty()) return p;
  double mx = *std::max_element(x.begin(), x.end());
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    p[i] = std::exp(x[i] - mx);
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  return p;
}

ArchParams::ArchParams(const std::vector<int>& candidates_per_edge) {
  for (int n : candidates_per_edge) alpha_.emplace_back(n, 0.0);
}

void ArchParams::InitNormal(double stddev, Rng& rng) {
  for (auto& a : alpha_) {
    for (double& v : a) v = stddev * rng.Normal();
  }
}

std::vector<double> ArchParams::Probs(int e) const { return Softmax(alpha_[e]); }

std::vector<std::vector<double>> ArchParams::AllProbs() const {
  std::vector<std::vector<double>> p;
  for (int e = 0; e < num_edges(); ++e) p.push_back(Probs(e));
  return p;
}

std::vector<int> ArchParams::SamplePath(Rng& rng) const {
  std::vector<int> path;
  for (int e = 0; e < num_edges(); ++e) {
    std::vector<double> p = Probs(e);
    path.push_back(rng.Categorical(p.data(), static_cast<int>(p.size())));
  }
  return path;
}

std::vector<PairSample> ArchParams::SamplePairs(Rng& rng) const {
  std::vector<PairSample> pairs;
  for (int e = 0; e < num_edges(); ++e) {
    std::vector<double> p = Probs(e);
    int n = static_cast<int>(p.size());
    int first = rng.Categorical(p.data(), n);
    if (n == 1) {
      pairs.push_back({first, first});
      continue;
    }
    std::vector<double> rest = p;
    rest[first] = 0;
    int second = rng.Categorical(rest.data(), n);
    // Active one from the renormalised pair probabilities.
    std::vector<double> pair = Softmax({alpha_[e][first], alpha_[e][second]});
    int c = rng.Categorical(pair.data(), 2);
    pairs.push_back(c == 0 ? PairSample{first, second} : PairSample{second, first});
  }
  return pairs;
}

std::vector<int> ArchParams::Argmax() const {
  std::vector<int> out;
  for (const auto& a : alpha_) {
    out.push_back(static_cast<int>(std::max_element(a.begin(), a.end()) - a.begin()));
  }
  return out;
}

double ArchParams::MeanEntropy() const {
  if (alpha_.empty()) return 0;
  double total = 0;
  for (int e = 0; e < num_edges(); ++e) {
    for (double q : Probs(e)) {
      if (q > 0) total -= q * std::log(q);
    }
  }
  return total / num_edges();
}

std::string ArchParams::ToJson() const { return Json(alpha_).dump(); }

absl::StatusOr<ArchParams> ArchParams::FromJson(const std::string& text) {
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "alpha"));
  if (!j.is_array()) return absl::InvalidArgumentError("alpha: expected a list of lists");
  ArchParams ap;
  for (size_t e = 0; e < j.size(); ++e) {
    if (!j[e].is_array() || j[e].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("alpha[", e, "]: expected a non-empty list"));
    }
    std::vector<double> a;
    for (const Json& v : j[e]) {
      if (!v.is_number()) {
        return absl::InvalidArgumentError(absl::StrCat("alpha[", e, "]: expected numbers"));
      }
      a.push_back(v.get<double>());
    }
    ap.alpha_.push_back(a);
  }
  return ap;
}

std::vector<double> GateGradToAlphaGrad(const std::vector<double>& alpha,
                                        const std::vector<int>& involved,
                                        const std::vector<double>& gate_grads) {
  std::vector<double> grad(alpha.size(), 0.0);
  std::vector<double> sub;
  for (int idx : involved) sub.push_back(alpha[idx]);
  std::vector<double> p = Softmax(sub);
  for (size_t i = 0; i < involved.size(); ++i) {
    for (size_t j = 0; j < involved.size(); ++j) {
      double delta = i == j ? 1.0 : 0.0;
      grad[involved[i]] += gate_grads[j] * p[j] * (delta - p[i]);
    }
  }
  return grad;
}

void RescaleInvolved(std::vector<double>& alpha, const std::vector<int>& involved,
                     const std::vector<double>& old_involved_alpha) {
  // log-sum-exp of both sets, stably.
  auto lse = [](const std::vector<double>& v) {
    double mx = *std::max_element(v.begin(), v.end());
    double s = 0;
    for (double x : v) s += std::exp(x - mx);
    return mx + std::log(s);
  };
  std::vector<double> now;
  for (int idx : involved) now.push_back(alpha[idx]);
  double offset = lse(now) - lse(old_involved_alpha);
  for (int idx : involved) alpha[idx] -= offset;
}

ArchAdam::ArchAdam(const std::vector<int>& candidates_per_edge, ArchAdamOptions options)
    : options_(options) {
  for (int n : candidates_per_edge) {
    m_.emplace_back(n, 0.0);
    v_.emplace_back(n, 0.0);
    step_.push_back(0);
  }
}

void ArchAdam::StepEdge(int e, std::vector<double>& alpha, const std::vector<double>& g) {
  const ArchAdamOptions& o = options_;
  int64_t t = ++step_[e];
  double bc1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
  double bc2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
  for (size_t i = 0; i < alpha.size(); ++i) {
    double grad = g[i] + o.weight_decay * alpha[i];
    m_[e][i] = o.beta1 * m_[e][i] + (1 - o.beta1) * grad;
    v_[e][i] = o.beta2 * v_[e][i] + (1 - o.beta2) * grad * grad;
    // As torch.optim.Adam: step = lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps).
    double denom = std::sqrt(v_[e][i]) / std::sqrt(bc2) + o.eps;
    alpha[i] -= o.lr / bc1 * m_[e][i] / denom;
  }
}

std::string ArchAdam::ToJson() const {
  Json j = {{"lr", options_.lr},   {"beta1", options_.beta1},
            {"beta2", options_.beta2}, {"eps", options_.eps},
            {"weight_decay", options_.weight_decay},
            {"m", m_}, {"v", v_}, {"step", step_}};
  return j.dump();
}

absl::StatusOr<ArchAdam> ArchAdam::FromJson(const std::string& text) {
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "arch optimizer"));
  ArchAdam a;
  NAS_ASSIGN_OR_RETURN(a.options_.lr, GetDouble(j, "", "lr"));
  NAS_ASSIGN_OR_RETURN(a.options_.beta1, GetDouble(j, "", "beta1"));
  NAS_ASSIGN_OR_RETURN(a.options_.beta2, GetDouble(j, "", "beta2"));
  NAS_ASSIGN_OR_RETURN(a.options_.eps, GetDouble(j, "", "eps"));
  NAS_ASSIGN_OR_RETURN(a.options_.weight_decay, GetDouble(j, "", "weight_decay"));
  try {
    a.m_ = j.at("m").get<std::vector<std::vector<double>>>();
    a.v_ = j.at("v").get<std::vector<std::vector<double>>>();
    a.step_ = j.at("step").get<std::vector<int64_t>>();
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("arch optimizer state: ", e.what()));
  }
  if (a.m_.size() != a.v_.size() || a.m_.size() != a.step_.size()) {
    return absl::InvalidArgumentError("arch optimizer state: m, v and step disagree in length");
  }
  return a;
}

double LatencyModel::Expected(const ArchParams& ap) const {
  double e = fixed_ms_;
  for (int k = 0; k < ap.num_edges(); ++k) {
    std::vector<double> p = ap.Probs(k);
    for (size_t i = 0; i < p.size(); ++i) e += p[i] * edge_ms_[k][i];
  }
  return e;
}

std::vector<double> LatencyModel::ExpectedGrad(const ArchParams& ap, int e) const {
  std::vector<double> p = ap.Probs(e);
  double mean = 0;
  for (size_t i = 0; i < p.size(); ++i) mean += p[i] * edge_ms_[e][i];
  std::vector<double> g(p.size());
  for (size_t i = 0; i < p.size(); ++i) g[i] = p[i] * (edge_ms_[e][i] - mean);
  return g;
}

double LatencyModel::PathLatency(const std::vector<int>& choices) const {
  double t = fixed_ms_;
  for (size_t e = 0; e < choices.size(); ++e) t += edge_ms_[e][choices[e]];
  return t;
}

absl::StatusOr<HardwareLossOptions::Type> HardwareLossOptions::ParseType(const std::string& name) {
  if (name == "mul#log") return Type::kMulLog;
  if (name == "add#linear") return Type::kAddLinear;
  if (name == "none") return Type::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("loss: \"", name, "\" is not one of mul#log, add#linear, none"));
}

std::string HardwareLossOptions::TypeName(Type t) {
  switch (t) {
    case Type::kMulLog:
      return "mul#log";
    case Type::kAddLinear:
      return "add#linear";
    case Type::kNone:
      return "none";
  }
  return "none";
}

absl::Status HardwareLossOptions::Validate() const {
  if (type == Type::kNone) return absl::OkStatus();
  if (!(target_ms > 0)) {
    return absl::InvalidArgumentError("target_latency_ms: must be positive");
  }
  if (type == Type::kMulLog) {
    if (target_ms <= 1.0) {
      return absl::InvalidArgumentError(
          "target_latency_ms: mul#log divides by ln(target), so the target must exceed 1 ms; "
          "use add#linear for sub-millisecond targets");
    }
    if (!(alpha > 0)) return absl::InvalidArgumentError("loss alpha: must be positive");
    if (!(beta > 0)) return absl::InvalidArgumentError("loss beta: must be positive");
  }
  if (type == Type::kAddLinear && !(lambda >= 0)) {
    return absl::InvalidArgumentError("loss lambda: must be >= 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<HardwareLossValue> EvaluateHardwareLoss(const HardwareLossOptions& o, double ce,
                                                       double expected_ms) {
  HardwareLossValue v;
  switch (o.type) {
    case HardwareLossOptions::Type::kNone:
      v.loss = ce;
      return v;
    case HardwareLossOptions::Type::kAddLinear:
      v.loss = ce + o.lambda * (expected_ms - o.target_ms) / o.target_ms;
      v.dloss_dce = 1.0;
      v.dloss_dlat = o.lambda / o.target_ms;
      return v;
    case HardwareLossOptions::Type::kMulLog: {
      if (!(expected_ms > 1.0)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "mul#log: expected latency ", expected_ms, " ms is not above 1 ms, so ln(E) <= 0"));
      }
      double ln_t = std::log(o.target_ms);
      double r = std::log(expected_ms) / ln_t;
      double rb = std::pow(r, o.beta);
      v.loss = ce * o.alpha * rb;
      v.dloss_dce = o.alpha * rb;
      v.dloss_dlat = ce * o.alpha * o.beta * std::pow(r, o.beta - 1) / (expected_ms * ln_t);
      return v;
    }
  }
  return v;
}

absl::StatusOr<ArchUpdateStats> ArchUpdate(ArchParams& ap, ArchAdam& adam,
                                           const std::vector<PairSample>& pairs,
                                           const std::vector<std::vector<double>>& gate_grads,
                                           const std::vector<bool>& active_is_zero, double ce,
                                           const LatencyModel* latency,
                                           const HardwareLossOptions& loss) {
  int n = ap.num_edges();
  if (static_cast<int>(pairs.size()) != n || static_cast<int>(gate_grads.size()) != n ||
      static_cast<int>(active_is_zero.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("arch update: expected ", n,
                                                   " pairs, gate gradients and flags"));
  }
  if (latency != nullptr) {
    bool fits = static_cast<int>(latency->edge_ms().size()) == n;
    for (int e = 0; fits && e < n; ++e) {
      fits = static_cast<int>(latency->edge_ms()[e].size()) == ap.num_candidates(e);
    }
    if (!fits) {
      return absl::InvalidArgumentError(
          "arch update: the latency model's edges and candidates do not match alpha");
    }
  }
  ArchUpdateStats stats;
  HardwareLossValue hw;
  hw.loss = ce;
  if (latency != nullptr && loss.type != HardwareLossOptions::Type::kNone) {
    stats.expected_ms = latency->Expected(ap);
    NAS_ASSIGN_OR_RETURN(hw, EvaluateHardwareLoss(loss, ce, stats.expected_ms));
  }
  stats.loss = hw.loss;
  // Validate every edge before changing any, so an error leaves alpha and Adam untouched.
  for (int e = 0; e < n; ++e) {
    const PairSample& pr = pairs[e];
    int nc = ap.num_candidates(e);
    if (pr.active < 0 || pr.active >= nc || pr.other < 0 || pr.other >= nc) {
      return absl::InvalidArgumentError(absl::StrCat("pairs[", e, "]: candidate index outside [0, ",
                                                     nc, ")"));
    }
    if (active_is_zero[e] || pr.active == pr.other) continue;
    if (gate_grads[e].size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("gate_grads[", e, "]: expected 2 values, got ", gate_grads[e].size()));
    }
    if (!std::isfinite(gate_grads[e][0]) || !std::isfinite(gate_grads[e][1])) {
      return absl::InvalidArgumentError(absl::StrCat("gate_grads[", e, "]: not finite"));
    }
  }
  for (int e = 0; e < n; ++e) {
    const PairSample& pr = pairs[e];
    if (active_is_zero[e] || pr.active == pr.other) continue;
    std::vector<int> involved = {pr.active, pr.other};
    std::vector<double> g = GateGradToAlphaGrad(
        ap.alpha(e), involved,
        {hw.dloss_dce * gate_grads[e][0], hw.dloss_dce * gate_grads[e][1]});
    if (latency != nullptr && hw.dloss_dlat != 0) {
      std::vector<double> dl = latency->ExpectedGrad(ap, e);
      for (size_t i = 0; i < g.size(); ++i) g[i] += hw.dloss_dlat * dl[i];
    }
    std::vector<double>& a = ap.mutable_alpha(e);
    std::vector<double> old = {a[pr.active], a[pr.other]};
    adam.StepEdge(e, a, g);
    RescaleInvolved(a, involved, old);
    ++stats.edges_updated;
  }
  return stats;
}

double ReinforceReward(const ReinforceOptions& o, double accuracy, double latency_ms,
                       double target_ms) {
  if (target_ms <= 0 || latency_ms <= 0) return accuracy;
  return accuracy * std::pow(target_ms / latency_ms, o.latency_exponent);
}

void ReinforceUpdate(ArchParams& ap, ArchAdam& adam, const std::vector<int>& path,
                     double reward, const ReinforceOptions& o, ReinforceState& state) {
  if (!state.initialised) {
    state.baseline = reward;
    state.initialised = true;
  }
  double advantage = reward - state.baseline;
  for (int e = 0; e < ap.num_edges(); ++e) {
    std::vector<double> p = ap.Probs(e);
    std::vector<double> g(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      g[i] = -advantage * ((static_cast<int>(i) == path[e] ? 1.0 : 0.0) - p[i]);
    }
    adam.StepEdge(e, ap.mutable_alpha(e), g);
  }
  state.baseline = o.baseline_decay * state.baseline + (1 - o.baseline_decay) * reward;
}

}  // namespace nas
