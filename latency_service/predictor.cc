#include "latency_service/predictor.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <new>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

constexpr char kPredictorFormat[] = "nas-latency-predictor/2";
// Percentages in a predictor file: errors of a sane model are far below this.
constexpr double kMaxPercent = 1e9;
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

void SetRange(const std::vector<Row>& rows, LatencyPredictor::KindModel* m) {
  m->min_x = rows[0].x;
  m->max_x = rows[0].x;
  for (const Row& r : rows) {
    for (size_t j = 0; j < r.x.size(); ++j) {
      m->min_x[j] = std::min(m->min_x[j], r.x[j]);
      m->max_x[j] = std::max(m->max_x[j], r.x[j]);
    }
  }
}

// Absolute percentage errors -> the kind's error summary.
KindError Summarise(const std::string& method, const std::vector<double>& apes) {
  KindError e;
  e.method = method;
  e.entries = static_cast<int64_t>(apes.size());
  double sum = 0, sq = 0;
  for (double a : apes) {
    sum += a;
    sq += a * a;
    e.max_ape_percent = std::max(e.max_ape_percent, a);
  }
  e.mape_percent = sum / apes.size();
  e.rms_percent = std::sqrt(sq / apes.size());
  return e;
}

double Ape(const LatencyPredictor::KindModel& m, const Row& r) {
  return 100.0 * std::abs(Evaluate(m, r.x) - r.y) / r.y;
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
    KindModel& model = p.models_[kind];
    model = FitKind(rows, options.ridge);
    SetRange(rows, &model);
    if (rows.size() >= 5 && options.holdout_fraction > 0) {
      // Fisher-Yates with mt19937_64 (whose output the standard fixes): the same split
      // everywhere.
      std::vector<Row> shuffled = rows;
      for (size_t i = shuffled.size() - 1; i > 0; --i)
        std::swap(shuffled[i], shuffled[rng() % (i + 1)]);
      size_t n_out = static_cast<size_t>(std::ceil(options.holdout_fraction * shuffled.size()));
      std::vector<Row> train(shuffled.begin() + n_out, shuffled.end());
      KindModel m = FitKind(train, options.ridge);
      std::vector<double> apes;
      for (size_t i = 0; i < n_out; ++i) {
        const double ape = Ape(m, shuffled[i]);
        apes.push_back(ape);
        ape_sum += ape;
        ape_max = std::max(ape_max, ape);
        ++held;
      }
      model.error = Summarise("holdout", apes);
    } else if (rows.size() >= 2) {
      std::vector<double> apes;
      for (size_t i = 0; i < rows.size(); ++i) {
        std::vector<Row> rest;
        for (size_t k = 0; k < rows.size(); ++k) {
          if (k != i) rest.push_back(rows[k]);
        }
        apes.push_back(Ape(FitKind(rest, options.ridge), rows[i]));
      }
      model.error = Summarise("leave-one-out", apes);
    }
  }
  p.report_.fitted_entries = fitted;
  p.report_.holdout_entries = held;
  p.report_.holdout_mape = held > 0 ? ape_sum / held : 0;
  p.report_.holdout_max_ape = ape_max;
  return p;
}

absl::StatusOr<PredictedLatency> LatencyPredictor::Answer(const LayerKey& key) const {
  auto it = models_.find(key.kind);
  if (it == models_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device_, " cannot predict layer key '", key.ToString(),
                     "': its table has no ", key.kind, " entries to fit a model on"));
  }
  const KindModel& m = it->second;
  const std::vector<double> x = LayerFeatures(key);
  const std::vector<std::string> names = LayerFeatureNames(key.kind);
  PredictedLatency out;
  for (size_t j = 0; j < x.size() && j < m.min_x.size() && j < m.max_x.size(); ++j) {
    const double lo = m.min_x[j], hi = m.max_x[j];
    if (x[j] > hi * (1 + 1e-9) || x[j] < lo * (1 - 1e-9)) out.extrapolated = true;
    const bool far_above = hi > 0 && x[j] > hi * kExtrapolationRefusalFactor;
    const bool far_below = lo > 0 && x[j] > 0 && x[j] < lo / kExtrapolationRefusalFactor;
    if (far_above || far_below) {
      return absl::FailedPreconditionError(absl::StrCat(
          "device ", device_, " cannot predict layer key '", key.ToString(), "': its ", names[j],
          " ", x[j], " is ", far_above ? x[j] / hi : lo / x[j], "x ",
          far_above ? "above the largest" : "below the smallest", " (", far_above ? hi : lo,
          ") of the ", m.entries, " ", key.kind, " entries the model was fitted on; the limit is ",
          kExtrapolationRefusalFactor, "x (profile such layers on the device instead)"));
    }
  }
  const double y = Evaluate(m, x);
  if (!(y > 0) || !std::isfinite(y)) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device_, " cannot predict layer key '", key.ToString(), "': the ",
                     key.kind, " model gives ", y, " ms"));
  }
  out.mean_ms = y;
  out.std_ms = m.error.method == "none" ? y : y * m.error.rms_percent / 100.0;
  return out;
}

absl::StatusOr<double> LatencyPredictor::Predict(const LayerKey& key) const {
  NAS_ASSIGN_OR_RETURN(PredictedLatency a, Answer(key));
  return a.mean_ms;
}

std::string LatencyPredictor::ToJson() const {
  Json models = Json::object();
  for (const auto& [kind, m] : models_) {
    Json jm = {{"form", m.form},
               {"coef", m.coef},
               {"entries", m.entries},
               {"min", m.min_x},
               {"max", m.max_x},
               {"error",
                {{"method", m.error.method},
                 {"entries", m.error.entries},
                 {"mape_percent", m.error.mape_percent},
                 {"max_ape_percent", m.error.max_ape_percent},
                 {"rms_percent", m.error.rms_percent}}}};
    if (m.form == "linear") {
      jm["features"] = LayerFeatureNames(kind);
      jm["scale"] = m.scale;
    }
    models[kind] = jm;
  }
  Json j = {{"format", kPredictorFormat},
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
  try {
    return FromJsonUnguarded(text);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("latency predictor: out of memory");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("latency predictor: ", e.what()));
  }
}

absl::StatusOr<LatencyPredictor> LatencyPredictor::FromJsonUnguarded(const std::string& text) {
  if (text.size() > kMaxPredictorBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latency predictor: ", text.size(), " bytes, over the limit of ", kMaxPredictorBytes));
  }
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "latency predictor"));
  if (!j.is_object()) return absl::InvalidArgumentError("latency predictor: expected an object");
  NAS_ASSIGN_OR_RETURN(std::string format, GetString(j, "", "format"));
  if (format == "nas-latency-predictor/1") {
    return absl::InvalidArgumentError(
        absl::StrCat("format: \"nas-latency-predictor/1\" predates per-kind errors and fitted "
                     "ranges; expected \"",
                     kPredictorFormat, "\" (refit the predictor from its table)"));
  }
  if (format != kPredictorFormat) {
    return absl::InvalidArgumentError(absl::StrCat("format: expected \"", kPredictorFormat,
                                                   "\", got \"",
                                                   absl::CHexEscape(format.substr(0, 40)), "\""));
  }
  LatencyPredictor p;
  NAS_ASSIGN_OR_RETURN(p.device_, GetString(j, "", "device"));
  if (p.device_.empty() || p.device_.size() > kMaxLatencyDeviceBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: must have 1 to ", kMaxLatencyDeviceBytes, " characters"));
  }
  NAS_ASSIGN_OR_RETURN(const Json* version, GetMember(j, "", "table_version"));
  if (!version->is_number_unsigned()) {
    return absl::InvalidArgumentError("table_version: expected a non-negative integer");
  }
  p.table_version_ = version->get<uint64_t>();
  auto count = [](const Json& obj, const std::string& path, const std::string& key,
                  int64_t max) -> absl::StatusOr<int64_t> {
    NAS_ASSIGN_OR_RETURN(int v, GetInt(obj, path, key));
    if (v < 0 || v > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(FieldPath(path, key), ": ", v, " is not in 0..", max));
    }
    return v;
  };
  auto percent = [](const Json& obj, const std::string& path,
                    const std::string& key) -> absl::StatusOr<double> {
    NAS_ASSIGN_OR_RETURN(double v, GetDouble(obj, path, key));
    if (!(v >= 0 && v <= kMaxPercent)) {
      return absl::InvalidArgumentError(absl::StrCat(FieldPath(path, key), ": ", v,
                                                     " is not a number in [0, ", kMaxPercent, "]"));
    }
    return v;
  };
  const int64_t max_entries = static_cast<int64_t>(kMaxLatencyTableEntries);
  NAS_ASSIGN_OR_RETURN(const Json* report, GetMember(j, "", "report"));
  if (!report->is_object()) return absl::InvalidArgumentError("report: expected an object");
  NAS_ASSIGN_OR_RETURN(p.report_.fitted_entries,
                       count(*report, "report", "fitted_entries", max_entries));
  NAS_ASSIGN_OR_RETURN(p.report_.holdout_entries,
                       count(*report, "report", "holdout_entries", p.report_.fitted_entries));
  NAS_ASSIGN_OR_RETURN(p.report_.holdout_mape, percent(*report, "report", "holdout_mape_percent"));
  NAS_ASSIGN_OR_RETURN(p.report_.holdout_max_ape,
                       percent(*report, "report", "holdout_max_ape_percent"));
  NAS_ASSIGN_OR_RETURN(const Json* models, GetMember(j, "", "models"));
  if (!models->is_object()) return absl::InvalidArgumentError("models: expected an object");
  auto numbers = [](const Json& v, const std::string& path, size_t n,
                    double min) -> absl::StatusOr<std::vector<double>> {
    if (!v.is_array() || v.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected ", n, " numbers"));
    }
    std::vector<double> out;
    for (const Json& x : v) {
      if (!x.is_number() || !std::isfinite(x.get<double>())) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": expected ", n, " numbers"));
      }
      if (!(x.get<double>() >= min)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": ", x.get<double>(), " is below ", min));
      }
      out.push_back(x.get<double>());
    }
    return out;
  };
  for (auto it = models->begin(); it != models->end(); ++it) {
    if (it.key() != "Conv" && it.key() != "expanded_conv" && it.key() != "Conv_1" &&
        it.key() != "Logits") {
      return absl::InvalidArgumentError(absl::StrCat(
          "models.", absl::CHexEscape(it.key().substr(0, 40)), ": unknown layer kind"));
    }
    const std::string path = absl::StrCat("models.", it.key());
    if (!it.value().is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected an object"));
    }
    KindModel m;
    NAS_ASSIGN_OR_RETURN(m.form, GetString(it.value(), path, "form"));
    NAS_ASSIGN_OR_RETURN(m.entries, count(it.value(), path, "entries", max_entries));
    if (m.entries < 1) return absl::InvalidArgumentError(path + ".entries: must be >= 1");
    NAS_ASSIGN_OR_RETURN(const Json* coef, GetMember(it.value(), path, "coef"));
    const size_t p_features = LayerFeatureNames(it.key()).size();
    // Coefficients are fitted non-negative: latency never falls when a layer does more work.
    if (m.form == "linear") {
      NAS_ASSIGN_OR_RETURN(m.coef, numbers(*coef, path + ".coef", p_features + 1, 0.0));
      NAS_ASSIGN_OR_RETURN(const Json* scale, GetMember(it.value(), path, "scale"));
      NAS_ASSIGN_OR_RETURN(m.scale, numbers(*scale, path + ".scale", p_features, 0.0));
      for (double s : m.scale) {
        if (!(s > 0)) return absl::InvalidArgumentError(path + ".scale: must be positive");
      }
    } else if (m.form == "ratio") {
      NAS_ASSIGN_OR_RETURN(m.coef, numbers(*coef, path + ".coef", 1, 0.0));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".form: expected \"linear\" or \"ratio\", got \"",
                       absl::CHexEscape(m.form.substr(0, 40)), "\""));
    }
    NAS_ASSIGN_OR_RETURN(const Json* min_x, GetMember(it.value(), path, "min"));
    NAS_ASSIGN_OR_RETURN(m.min_x, numbers(*min_x, path + ".min", p_features, 0.0));
    NAS_ASSIGN_OR_RETURN(const Json* max_x, GetMember(it.value(), path, "max"));
    NAS_ASSIGN_OR_RETURN(m.max_x, numbers(*max_x, path + ".max", p_features, 0.0));
    for (size_t k = 0; k < p_features; ++k) {
      if (m.min_x[k] > m.max_x[k]) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ".min[", k, "]: ", m.min_x[k], " exceeds max ", m.max_x[k]));
      }
    }
    NAS_ASSIGN_OR_RETURN(const Json* error, GetMember(it.value(), path, "error"));
    const std::string epath = path + ".error";
    if (!error->is_object()) return absl::InvalidArgumentError(epath + ": expected an object");
    NAS_ASSIGN_OR_RETURN(m.error.method, GetString(*error, epath, "method"));
    if (m.error.method != "holdout" && m.error.method != "leave-one-out" &&
        m.error.method != "none") {
      return absl::InvalidArgumentError(absl::StrCat(
          epath, ".method: expected \"holdout\", \"leave-one-out\" or \"none\", got \"",
          absl::CHexEscape(m.error.method.substr(0, 40)), "\""));
    }
    NAS_ASSIGN_OR_RETURN(m.error.entries, count(*error, epath, "entries", m.entries));
    NAS_ASSIGN_OR_RETURN(m.error.mape_percent, percent(*error, epath, "mape_percent"));
    NAS_ASSIGN_OR_RETURN(m.error.max_ape_percent, percent(*error, epath, "max_ape_percent"));
    NAS_ASSIGN_OR_RETURN(m.error.rms_percent, percent(*error, epath, "rms_percent"));
    p.models_[it.key()] = m;
  }
  return p;
}

}  // namespace nas
