#include "latency_service/predictor.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

constexpr double kMega = 1e6;
constexpr double kBytesPerElement = 4;  // float32 activations and weights

bool IsMbconv(const std::string& kind) { return kind == "expanded_conv"; }

size_t MinLinearEntries(size_t features) { return std::max<size_t>(8, 2 * (features + 1)); }

struct Row {
  std::vector<double> x;
  double y = 0;
};

// Solves A[F,F] c_F = b[F] by Gaussian elimination with partial pivoting; c is 0 outside F.
// False when the system is singular.
bool SolveSubset(const std::vector<double>& a, const std::vector<double>& b, size_t n,
                 const std::vector<size_t>& free, std::vector<double>* c) {
  const size_t k = free.size();
  std::vector<double> m(k * (k + 1));
  for (size_t r = 0; r < k; ++r) {
    for (size_t q = 0; q < k; ++q) m[r * (k + 1) + q] = a[free[r] * n + free[q]];
    m[r * (k + 1) + k] = b[free[r]];
  }
  for (size_t col = 0; col < k; ++col) {
    size_t piv = col;
    for (size_t r = col + 1; r < k; ++r) {
      if (std::abs(m[r * (k + 1) + col]) > std::abs(m[piv * (k + 1) + col])) piv = r;
    }
    if (std::abs(m[piv * (k + 1) + col]) < 1e-300) return false;
    for (size_t q = 0; q <= k; ++q) std::swap(m[col * (k + 1) + q], m[piv * (k + 1) + q]);
    for (size_t r = 0; r < k; ++r) {
      if (r == col) continue;
      double f = m[r * (k + 1) + col] / m[col * (k + 1) + col];
      for (size_t q = col; q <= k; ++q) m[r * (k + 1) + q] -= f * m[col * (k + 1) + q];
    }
  }
  c->assign(n, 0.0);
  for (size_t r = 0; r < k; ++r) {
    double v = m[r * (k + 1) + k] / m[r * (k + 1) + r];
    if (!std::isfinite(v)) return false;
    (*c)[free[r]] = v;
  }
  return true;
}

// Minimises sum_i w_i (y_i - c0 - sum_j c_j x_ij / s_j)^2 + lambda * sum_{j>0} c_j^2 over
// c >= 0, with w_i = 1 / y_i^2.
LatencyPredictor::KindModel FitLinear(const std::vector<Row>& rows, double ridge) {
  const size_t p = rows[0].x.size();
  const size_t n = p + 1;
  LatencyPredictor::KindModel m;
  m.form = "linear";
  m.scale.assign(p, 1.0);
  for (size_t j = 0; j < p; ++j) {
    double s = 0;
    for (const Row& r : rows) s = std::max(s, std::abs(r.x[j]));
    m.scale[j] = s > 0 ? s : 1.0;
  }
  std::vector<double> a(n * n, 0.0), b(n, 0.0), z(n);
  for (const Row& r : rows) {
    const double w = 1.0 / (r.y * r.y);
    z[0] = 1.0;
    for (size_t j = 0; j < p; ++j) z[j + 1] = r.x[j] / m.scale[j];
    for (size_t u = 0; u < n; ++u) {
      b[u] += w * z[u] * r.y;
      for (size_t v = 0; v < n; ++v) a[u * n + v] += w * z[u] * z[v];
    }
  }
  double trace = 0;
  for (size_t u = 0; u < n; ++u) trace += a[u * n + u];
  const double lambda = ridge * trace / static_cast<double>(n);
  for (size_t u = 1; u < n; ++u) a[u * n + u] += lambda;
  // Exact non-negative solution: every subset of free coefficients (at most 2^7), the others
  // at 0; keep the feasible one with the smallest objective 1/2 c'Ac - b'c.
  std::vector<double> best(n, 0.0);
  double best_obj = 0;  // c = 0
  for (uint32_t mask = 1; mask < (1u << n); ++mask) {
    std::vector<size_t> free;
    for (size_t u = 0; u < n; ++u) {
      if (mask & (1u << u)) free.push_back(u);
    }
    std::vector<double> c;
    if (!SolveSubset(a, b, n, free, &c)) continue;
    if (std::any_of(c.begin(), c.end(), [](double v) { return v < 0; })) continue;
    double obj = 0;
    for (size_t u = 0; u < n; ++u) {
      double au = 0;
      for (size_t v = 0; v < n; ++v) au += a[u * n + v] * c[v];
      obj += 0.5 * c[u] * au - b[u] * c[u];
    }
    if (obj < best_obj) {
      best_obj = obj;
      best = c;
    }
  }
  std::vector<double> c = best;
  m.coef = c;
  m.entries = static_cast<int64_t>(rows.size());
  return m;
}

double RatioCost(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return s;
}

LatencyPredictor::KindModel FitRatio(const std::vector<Row>& rows) {
  double num = 0, den = 0;
  for (const Row& r : rows) {
    double c = RatioCost(r.x);
    num += c / r.y;
    den += c * c / (r.y * r.y);
  }
  LatencyPredictor::KindModel m;
  m.form = "ratio";
  m.coef = {den > 0 ? num / den : 0.0};
  m.entries = static_cast<int64_t>(rows.size());
  return m;
}

LatencyPredictor::KindModel FitKind(const std::vector<Row>& rows, double ridge) {
  if (rows.size() >= MinLinearEntries(rows[0].x.size())) return FitLinear(rows, ridge);
  return FitRatio(rows);
}

double Evaluate(const LatencyPredictor::KindModel& m, const std::vector<double>& x) {
  if (m.form == "ratio") return m.coef[0] * RatioCost(x);
  double y = m.coef[0];
  for (size_t j = 0; j < x.size(); ++j) y += m.coef[j + 1] * x[j] / m.scale[j];
  return y;
}

}  // namespace

std::vector<std::string> LayerFeatureNames(const std::string& kind) {
  if (IsMbconv(kind)) {
    return {"expand_mmacs", "depthwise_mmacs", "project_mmacs",
            "io_mbytes",    "mid_mbytes",      "weight_mbytes"};
  }
  return {"mmacs", "activation_mbytes", "weight_mbytes"};
}

std::vector<double> LayerFeatures(const LayerKey& k) {
  const double hw_in = double{1} * k.in_h * k.in_w;
  const double hw_out = double{1} * k.out_h * k.out_w;
  const double mb = kBytesPerElement / kMega;
  if (IsMbconv(k.kind)) {
    const double in = k.in_c, out = k.out_c, kk = double{1} * k.kernel * k.kernel;
    const double mid = std::round(in * k.expand);  // as BlockConfig::mid_channels
    const double expand_macs = k.expand != 1 ? in * mid * hw_in : 0.0;
    const double dw_macs = mid * kk * hw_out;
    const double project_macs = mid * out * hw_out;
    double io = in * hw_in + out * hw_out;
    if (k.idskip) io += out * hw_out;  // the shortcut reads the input again and adds
    const double mid_elems = (k.expand != 1 ? mid * hw_in : 0.0) + mid * hw_out;
    const double weights = (k.expand != 1 ? in * mid : 0.0) + mid * kk + mid * out;
    return {expand_macs / kMega, dw_macs / kMega, project_macs / kMega, io * mb,
            mid_elems * mb,      weights * mb};
  }
  if (k.kind == "Logits") {
    // Global average pool over HxW, then a linear layer to out_c classes.
    const double in = k.in_c, classes = k.out_c;
    const double macs = in * hw_in + in * classes;
    return {macs / kMega, (in * hw_in + classes) * mb, (in * classes + classes) * mb};
  }
  // Conv (the 3x3 stem) and Conv_1 (the 1x1 feature mix): conv - BN - ReLU6.
  const double kk = k.kind == "Conv" ? 9.0 : 1.0;
  const double in = k.in_c, out = k.out_c;
  const double macs = in * out * kk * hw_out;
  return {macs / kMega, (in * hw_in + out * hw_out) * mb, in * out * kk * mb};
}

absl::StatusOr<LatencyPredictor> LatencyPredictor::Fit(const LatencyTable& table,
                                                       const PredictorOptions& options) {
  if (!(options.ridge >= 0)) return absl::InvalidArgumentError("ridge: must be >= 0");
  if (!(options.holdout_fraction >= 0 && options.holdout_fraction < 1)) {
    return absl::InvalidArgumentError("holdout_fraction: must be in [0, 1)");
  }
  LatencyPredictor p;
  p.device_ = table.info().device;
  std::map<std::string, std::vector<Row>> by_kind;
  for (const auto& [key, e] : table.entries()) {
    NAS_ASSIGN_OR_RETURN(LayerKey k, LayerKey::Parse(key));
    by_kind[k.kind].push_back(Row{LayerFeatures(k), e.mean_ms});
  }
  double ape_sum = 0, ape_max = 0;
  int64_t held = 0, fitted = 0;
  std::mt19937_64 rng(options.seed);
  for (auto& [kind, rows] : by_kind) {
    fitted += static_cast<int64_t>(rows.size());
    p.models_[kind] = FitKind(rows, options.ridge);
    if (rows.size() < 5 || options.holdout_fraction == 0) continue;
    // Fisher-Yates with mt19937_64 (whose output the standard fixes): the same split everywhere.
    std::vector<Row> shuffled = rows;
    for (size_t i = shuffled.size() - 1; i > 0; --i)
      std::swap(shuffled[i], shuffled[rng() % (i + 1)]);
    size_t n_out = static_cast<size_t>(std::ceil(options.holdout_fraction * shuffled.size()));
    std::vector<Row> train(shuffled.begin() + n_out, shuffled.end());
    KindModel m = FitKind(train, options.ridge);
    for (size_t i = 0; i < n_out; ++i) {
      double ape = 100.0 * std::abs(Evaluate(m, shuffled[i].x) - shuffled[i].y) / shuffled[i].y;
      ape_sum += ape;
      ape_max = std::max(ape_max, ape);
      ++held;
    }
  }
  p.report_.fitted_entries = fitted;
  p.report_.holdout_entries = held;
  p.report_.holdout_mape = held > 0 ? ape_sum / held : 0;
  p.report_.holdout_max_ape = ape_max;
  return p;
}

absl::StatusOr<double> LatencyPredictor::Predict(const LayerKey& key) const {
  auto it = models_.find(key.kind);
  if (it == models_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device_, " cannot predict layer key '", key.ToString(),
                     "': its table has no ", key.kind, " entries to fit a model on"));
  }
  double y = Evaluate(it->second, LayerFeatures(key));
  if (!(y > 0) || !std::isfinite(y)) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device_, " cannot predict layer key '", key.ToString(), "': the ",
                     key.kind, " model gives ", y, " ms"));
  }
  return y;
}

std::string LatencyPredictor::ToJson() const {
  Json models = Json::object();
  for (const auto& [kind, m] : models_) {
    Json jm = {{"form", m.form}, {"coef", m.coef}, {"entries", m.entries}};
    if (m.form == "linear") {
      jm["features"] = LayerFeatureNames(kind);
      jm["scale"] = m.scale;
    }
    models[kind] = jm;
  }
  Json j = {{"format", "nas-latency-predictor/1"},
            {"device", device_},
            {"table_version", table_version_},
            {"report",
             {{"fitted_entries", report_.fitted_entries},
              {"holdout_entries", report_.holdout_entries},
              {"holdout_mape_percent", report_.holdout_mape},
              {"holdout_max_ape_percent", report_.holdout_max_ape}}},
            {"models", models}};
  return j.dump(2);
}

absl::StatusOr<LatencyPredictor> LatencyPredictor::FromJson(const std::string& text) {
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "latency predictor"));
  NAS_ASSIGN_OR_RETURN(std::string format, GetString(j, "", "format"));
  if (format != "nas-latency-predictor/1") {
    return absl::InvalidArgumentError(
        absl::StrCat("format: expected \"nas-latency-predictor/1\", got \"", format, "\""));
  }
  LatencyPredictor p;
  NAS_ASSIGN_OR_RETURN(p.device_, GetString(j, "", "device"));
  NAS_ASSIGN_OR_RETURN(const Json* version, GetMember(j, "", "table_version"));
  if (!version->is_number_unsigned()) {
    return absl::InvalidArgumentError("table_version: expected a non-negative integer");
  }
  p.table_version_ = version->get<uint64_t>();
  NAS_ASSIGN_OR_RETURN(const Json* report, GetMember(j, "", "report"));
  NAS_ASSIGN_OR_RETURN(int fitted, GetInt(*report, "report", "fitted_entries"));
  NAS_ASSIGN_OR_RETURN(int held, GetInt(*report, "report", "holdout_entries"));
  p.report_.fitted_entries = fitted;
  p.report_.holdout_entries = held;
  NAS_ASSIGN_OR_RETURN(p.report_.holdout_mape,
                       GetDouble(*report, "report", "holdout_mape_percent"));
  NAS_ASSIGN_OR_RETURN(p.report_.holdout_max_ape,
                       GetDouble(*report, "report", "holdout_max_ape_percent"));
  NAS_ASSIGN_OR_RETURN(const Json* models, GetMember(j, "", "models"));
  if (!models->is_object()) return absl::InvalidArgumentError("models: expected an object");
  auto numbers = [](const Json& v, const std::string& path,
                    size_t n) -> absl::StatusOr<std::vector<double>> {
    if (!v.is_array() || v.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected ", n, " numbers"));
    }
    std::vector<double> out;
    for (const Json& x : v) {
      if (!x.is_number() || !std::isfinite(x.get<double>())) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": expected ", n, " numbers"));
      }
      out.push_back(x.get<double>());
    }
    return out;
  };
  for (auto it = models->begin(); it != models->end(); ++it) {
    const std::string path = absl::StrCat("models.", it.key());
    if (it.key() != "Conv" && it.key() != "expanded_conv" && it.key() != "Conv_1" &&
        it.key() != "Logits") {
      return absl::InvalidArgumentError(absl::StrCat(path, ": unknown layer kind"));
    }
    KindModel m;
    NAS_ASSIGN_OR_RETURN(m.form, GetString(it.value(), path, "form"));
    NAS_ASSIGN_OR_RETURN(int entries, GetInt(it.value(), path, "entries"));
    m.entries = entries;
    NAS_ASSIGN_OR_RETURN(const Json* coef, GetMember(it.value(), path, "coef"));
    const size_t p_features = LayerFeatureNames(it.key()).size();
    if (m.form == "linear") {
      NAS_ASSIGN_OR_RETURN(m.coef, numbers(*coef, path + ".coef", p_features + 1));
      NAS_ASSIGN_OR_RETURN(const Json* scale, GetMember(it.value(), path, "scale"));
      NAS_ASSIGN_OR_RETURN(m.scale, numbers(*scale, path + ".scale", p_features));
      for (double s : m.scale) {
        if (!(s > 0)) return absl::InvalidArgumentError(path + ".scale: must be positive");
      }
    } else if (m.form == "ratio") {
      NAS_ASSIGN_OR_RETURN(m.coef, numbers(*coef, path + ".coef", 1));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".form: expected \"linear\" or \"ratio\", got \"", m.form, "\""));
    }
    p.models_[it.key()] = m;
  }
  return p;
}

}  // namespace nas
