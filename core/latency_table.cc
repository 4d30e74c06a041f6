#include "core/latency_table.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

absl::Status BadKey(const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("layer key '", key, "': ", why));
}

// "HxWxC" -> three ints.
bool ParseShape(absl::string_view s, int* h, int* w, int* c) {
  std::vector<absl::string_view> p = absl::StrSplit(s, 'x');
  return p.size() == 3 && absl::SimpleAtoi(p[0], h) && absl::SimpleAtoi(p[1], w) &&
         absl::SimpleAtoi(p[2], c) && *h > 0 && *w > 0 && *c > 0;
}

// Least squares of r on (1, x); false when x does not vary.
bool FitLine(const std::vector<double>& x, const std::vector<double>& r, double* a, double* b) {
  const double n = static_cast<double>(x.size());
  double mx = 0, mr = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    mx += x[i] / n;
    mr += r[i] / n;
  }
  double sxx = 0, sxr = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxr += (x[i] - mx) * (r[i] - mr);
  }
  if (!(sxx > 1e-12)) return false;
  *b = sxr / sxx;
  *a = mr - *b * mx;
  return true;
}

absl::StatusOr<LatencyCalibration> ParseCalibration(const Json& j) {
  const std::string path = "calibration";
  if (!j.is_object()) return absl::InvalidArgumentError("calibration: expected an object");
  LatencyCalibration c;
  NAS_ASSIGN_OR_RETURN(c.overhead_ms, GetDouble(j, path, "overhead_ms"));
  NAS_ASSIGN_OR_RETURN(c.per_layer_ms, GetDoubleOr(j, path, "per_layer_ms", 0.0));
  NAS_ASSIGN_OR_RETURN(c.model, GetStringOr(j, path, "model", "constant"));
  NAS_ASSIGN_OR_RETURN(c.networks, GetInt(j, path, "networks"));
  NAS_ASSIGN_OR_RETURN(c.rejected, GetIntOr(j, path, "rejected", 0));
  NAS_ASSIGN_OR_RETURN(c.min_layers, GetIntOr(j, path, "min_layers", 0));
  NAS_ASSIGN_OR_RETURN(c.max_layers, GetIntOr(j, path, "max_layers", 0));
  NAS_ASSIGN_OR_RETURN(c.raw_rmse_ms, GetDoubleOr(j, path, "raw_rmse_ms", 0.0));
  NAS_ASSIGN_OR_RETURN(c.rmse_ms, GetDoubleOr(j, path, "rmse_ms", 0.0));
  NAS_ASSIGN_OR_RETURN(c.loo_rmse_ms, GetDoubleOr(j, path, "loo_rmse_ms", 0.0));
  NAS_ASSIGN_OR_RETURN(c.max_error_pct, GetDoubleOr(j, path, "max_error_pct", 0.0));
  if (!std::isfinite(c.overhead_ms)) {
    return absl::InvalidArgumentError("calibration.overhead_ms: must be a finite number");
  }
  if (!std::isfinite(c.per_layer_ms)) {
    return absl::InvalidArgumentError("calibration.per_layer_ms: must be a finite number");
  }
  if (c.model != "constant" && c.model != "linear") {
    return absl::InvalidArgumentError(absl::StrCat("calibration.model: \"", c.model,
                                                   "\" is not \"constant\" or \"linear\""));
  }
  if (c.model == "constant" && c.per_layer_ms != 0) {
    return absl::InvalidArgumentError(
        "calibration.per_layer_ms: must be 0 for the constant model");
  }
  if (c.networks < 1) return absl::InvalidArgumentError("calibration.networks: must be >= 1");
  if (c.rejected < 0) return absl::InvalidArgumentError("calibration.rejected: must be >= 0");
  for (double v : {c.raw_rmse_ms, c.rmse_ms, c.loo_rmse_ms, c.max_error_pct}) {
    if (!(v >= 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(
          "calibration: rmse_ms, raw_rmse_ms, loo_rmse_ms and max_error_pct must be >= 0");
    }
  }
  return c;
}

Json CalibrationJson(const LatencyCalibration& c) {
  return {{"overhead_ms", c.overhead_ms}, {"per_layer_ms", c.per_layer_ms},
          {"model", c.model},             {"networks", c.networks},
          {"rejected", c.rejected},
          {"min_layers", c.min_layers},   {"max_layers", c.max_layers},
          {"raw_rmse_ms", c.raw_rmse_ms}, {"rmse_ms", c.rmse_ms},
          {"loo_rmse_ms", c.loo_rmse_ms}, {"max_error_pct", c.max_error_pct}};
}

}  // namespace

absl::StatusOr<LatencyCalibration> FitCalibration(const std::vector<CalibrationSample>& all) {
  if (all.empty()) return absl::InvalidArgumentError("calibration: no networks measured");
  std::vector<double> ratios;
  for (size_t i = 0; i < all.size(); ++i) {
    const CalibrationSample& s = all[i];
    if (!(s.layer_sum_ms > 0) || !std::isfinite(s.layer_sum_ms) || !(s.measured_ms > 0) ||
        !std::isfinite(s.measured_ms) || s.layers < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration: network ", i, ": layer sum ", s.layer_sum_ms, " ms, measured ",
          s.measured_ms, " ms, ", s.layers, " layers: times must be positive, layers >= 1"));
    }
    ratios.push_back(s.measured_ms / s.layer_sum_ms);
  }
  // Outliers: a ratio outside [median / band, median * band]. The median is the lower middle
  // one, a measured network's own ratio, so that network always stays: with an even count, the
  // mean of two middle ratios more than band^2 apart would leave no network at all.
  constexpr double kBand = 1.15;
  std::vector<double> sorted = ratios;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[(sorted.size() - 1) / 2];
  std::vector<CalibrationSample> samples;
  for (size_t i = 0; i < all.size(); ++i) {
    if (ratios[i] <= median * kBand && ratios[i] >= median / kBand) samples.push_back(all[i]);
  }
  const size_t n = samples.size();  // >= 1: the median network stays
  std::vector<double> x, r;
  for (const CalibrationSample& s : samples) {
    x.push_back(s.layers);
    r.push_back(s.measured_ms - s.layer_sum_ms);
  }
  auto mean_of = [](const std::vector<double>& v, size_t skip) {
    double sum = 0;
    int k = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      if (i == skip) continue;
      sum += v[i];
      ++k;
    }
    return sum / k;
  };
  auto rms = [](const std::vector<double>& e) {
    double sq = 0;
    for (double v : e) sq += v * v;
    return std::sqrt(sq / e.size());
  };
  // Leave-one-out errors of each model.
  std::vector<double> loo_const, loo_line;
  bool line_ok = n >= 4;
  for (size_t i = 0; n >= 2 && i < n; ++i) {
    loo_const.push_back(r[i] - mean_of(r, i));
    if (!line_ok) continue;
    std::vector<double> xs, rs;
    for (size_t k = 0; k < n; ++k) {
      if (k == i) continue;
      xs.push_back(x[k]);
      rs.push_back(r[k]);
    }
    double a = 0, b = 0;
    if (!FitLine(xs, rs, &a, &b)) {
      line_ok = false;
      continue;
    }
    loo_line.push_back(r[i] - (a + b * x[i]));
  }
  LatencyCalibration c;
  c.networks = static_cast<int>(n);
  c.rejected = static_cast<int>(all.size() - n);
  c.min_layers = static_cast<int>(*std::min_element(x.begin(), x.end()));
  c.max_layers = static_cast<int>(*std::max_element(x.begin(), x.end()));
  c.overhead_ms = mean_of(r, n);
  c.loo_rmse_ms = loo_const.empty() ? 0 : rms(loo_const);
  double a = 0, b = 0;
  // A negative per-layer term is what a machine slowing down while the smaller networks were
  // measured fits; extrapolated to the space's smallest networks it can predict negative
  // latency (the coordinator then refuses the table), so only a non-negative one is kept.
  if (line_ok && FitLine(x, r, &a, &b) && b >= 0 && rms(loo_line) < 0.9 * c.loo_rmse_ms) {
    c.model = "linear";
    c.overhead_ms = a;
    c.per_layer_ms = b;
    c.loo_rmse_ms = rms(loo_line);
  }
  std::vector<double> resid;
  c.raw_rmse_ms = rms(r);
  for (size_t i = 0; i < n; ++i) {
    const double e = r[i] - c.Correction(samples[i].layers);
    resid.push_back(e);
    c.max_error_pct = std::max(c.max_error_pct, 100.0 * std::abs(e) / samples[i].measured_ms);
  }
  c.rmse_ms = rms(resid);
  return c;
}

absl::StatusOr<LayerKey> LayerKey::Parse(const std::string& key) {
  std::vector<std::string> parts = absl::StrSplit(key, '-');
  if (parts.size() < 3) return BadKey(key, "expected KIND-input:HxWxC-output:...");
  LayerKey k;
  k.kind = parts[0];
  if (k.kind != "Conv" && k.kind != "expanded_conv" && k.kind != "Conv_1" && k.kind != "Logits") {
    return BadKey(key, absl::StrCat("unknown kind \"", k.kind,
                                    "\" (Conv, expanded_conv, Conv_1, Logits)"));
  }
  std::map<std::string, std::string> fields;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits(':', 1));
    if (kv.size() != 2 || kv[1].empty()) {
      return BadKey(key, absl::StrCat("field \"", parts[i], "\" is not name:value"));
    }
    if (!fields.emplace(kv[0], kv[1]).second) {
      return BadKey(key, absl::StrCat("field \"", kv[0], "\" repeated"));
    }
  }
  auto need = [&](const std::string& name) -> absl::StatusOr<std::string> {
    auto it = fields.find(name);
    if (it == fields.end()) return BadKey(key, absl::StrCat("missing field \"", name, "\""));
    std::string v = it->second;
    fields.erase(it);
    return v;
  };
  auto need_int = [&](const std::string& name, int* out) -> absl::Status {
    NAS_ASSIGN_OR_RETURN(std::string v, need(name));
    if (!absl::SimpleAtoi(v, out) || *out < 0) {
      return BadKey(key, absl::StrCat("field \"", name, "\" is not a non-negative integer"));
    }
    return absl::OkStatus();
  };
  NAS_ASSIGN_OR_RETURN(std::string in, need("input"));
  if (!ParseShape(in, &k.in_h, &k.in_w, &k.in_c)) {
    return BadKey(key, "input is not HxWxC with positive sizes");
  }
  NAS_ASSIGN_OR_RETURN(std::string out, need("output"));
  if (k.kind == "Logits") {
    if (!absl::SimpleAtoi(out, &k.out_c) || k.out_c <= 0) {
      return BadKey(key, "Logits output must be the number of classes");
    }
  } else if (!ParseShape(out, &k.out_h, &k.out_w, &k.out_c)) {
    return BadKey(key, "output is not HxWxC with positive sizes");
  }
  if (k.kind == "expanded_conv") {
    NAS_RETURN_IF_ERROR(need_int("expand", &k.expand));
    NAS_RETURN_IF_ERROR(need_int("kernel", &k.kernel));
    NAS_RETURN_IF_ERROR(need_int("stride", &k.stride));
    NAS_RETURN_IF_ERROR(need_int("idskip", &k.idskip));
    if (k.expand < 1) return BadKey(key, "expand must be >= 1");
    if (k.kernel % 2 != 1) return BadKey(key, "kernel must be odd");
    if (k.stride < 1) return BadKey(key, "stride must be >= 1");
    if (k.idskip > 1) return BadKey(key, "idskip must be 0 or 1");
  }
  if (!fields.empty()) {
    return BadKey(key, absl::StrCat("unexpected field \"", fields.begin()->first, "\""));
  }
  return k;
}

std::string LayerKey::ToString() const {
  if (kind == "Logits") return LogitsKeyString();
  std::string s = absl::StrCat(kind, "-input:", in_h, "x", in_w, "x", in_c, "-output:", out_h,
                               "x", out_w, "x", out_c);
  if (kind == "expanded_conv") {
    absl::StrAppend(&s, "-expand:", expand, "-kernel:", kernel, "-stride:", stride,
                    "-idskip:", idskip);
  }
  return s;
}

std::string LayerKey::LogitsKeyString() const {
  return absl::StrCat("Logits-input:", in_h, "x", in_w, "x", in_c, "-output:", out_c);
}

absl::Status LatencyTable::Insert(const std::string& key, const LatencyEntry& e) {
  NAS_ASSIGN_OR_RETURN(LayerKey parsed, LayerKey::Parse(key));
  (void)parsed;
  if (e.count < 1) return absl::InvalidArgumentError(absl::StrCat(key, ".count: must be >= 1"));
  if (!(e.mean_ms > 0) || !std::isfinite(e.mean_ms)) {
    return absl::InvalidArgumentError(absl::StrCat(key, ".mean: must be a positive number"));
  }
  if (!(e.var >= 0) || !std::isfinite(e.var)) {
    return absl::InvalidArgumentError(absl::StrCat(key, ".var: must be >= 0"));
  }
  entries_[key] = e;
  return absl::OkStatus();
}

absl::StatusOr<LatencyTable> LatencyTable::ParseYaml(const std::string& text,
                                                     const std::string& device) {
  LatencyTableInfo info;
  info.device = device;
  info.runtime = "imported";
  info.method = "ProxylessNAS lookup table (YAML)";
  LatencyTable t(info);
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  std::string current;
  int entry_line = 0;  // line of `current`'s "KEY:"; errors about the entry point there
  LatencyEntry entry;
  int seen = 0;  // bitmask of count/mean/var
  auto flush = [&]() -> absl::Status {
    if (current.empty()) return absl::OkStatus();
    if (seen != 7) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", entry_line, ": entry '", current, "' lacks ",
          (seen & 1) ? "" : "count ", (seen & 2) ? "" : "mean ", (seen & 4) ? "" : "var"));
    }
    if (t.Contains(current)) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", entry_line, ": key '", current, "' appears twice"));
    }
    absl::Status s = t.Insert(current, entry);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", entry_line, ": ", s.message()));
    }
    current.clear();
    return absl::OkStatus();
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    int line_no = static_cast<int>(i) + 1;
    std::string line = lines[i];
    if (!line.empty() && line.back() == '\r') line.pop_back();
    absl::string_view stripped = absl::StripAsciiWhitespace(line);
    if (stripped.empty() || stripped[0] == '#') continue;
    bool indented = line[0] == ' ' || line[0] == '\t';
    if (!indented) {
      NAS_RETURN_IF_ERROR(flush());
      if (stripped.back() != ':') {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_no, ": expected 'KEY:' at the start of an entry"));
      }
      current = std::string(stripped.substr(0, stripped.size() - 1));
      entry_line = line_no;
      entry = LatencyEntry();
      seen = 0;
      continue;
    }
    if (current.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": indented field before any key"));
    }
    std::vector<std::string> kv = absl::StrSplit(stripped, absl::MaxSplits(':', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": expected 'name: value'"));
    }
    std::string name(absl::StripAsciiWhitespace(kv[0]));
    std::string value(absl::StripAsciiWhitespace(kv[1]));
    double v = 0;
    if (!absl::SimpleAtod(value, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", current, ".", name,
                                                     ": \"", value, "\" is not a number"));
    }
    if (name == "count") {
      entry.count = static_cast<int64_t>(v);
      seen |= 1;
    } else if (name == "mean") {
      entry.mean_ms = v;
      seen |= 2;
    } else if (name == "var") {
      entry.var = v;
      seen |= 4;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": unknown field \"",
                                                     name, "\" (count, mean, var)"));
    }
  }
  NAS_RETURN_IF_ERROR(flush());
  if (t.size() == 0) return absl::InvalidArgumentError("latency table: no entries");
  return t;
}

absl::StatusOr<LatencyTable> LatencyTable::ParseJson(const std::string& text) {
  NAS_ASSIGN_OR_RETURN(Json j, nas::ParseJson(text, "latency table"));
  NAS_ASSIGN_OR_RETURN(std::string format, GetString(j, "", "format"));
  if (format != "nas-latency-table/1") {
    return absl::InvalidArgumentError(
        absl::StrCat("format: expected \"nas-latency-table/1\", got \"", format, "\""));
  }
  LatencyTableInfo info;
  NAS_ASSIGN_OR_RETURN(info.device, GetString(j, "", "device"));
  if (info.device.empty()) return absl::InvalidArgumentError("device: must not be empty");
  NAS_ASSIGN_OR_RETURN(info.runtime, GetStringOr(j, "", "runtime", ""));
  NAS_ASSIGN_OR_RETURN(info.batch_size, GetIntOr(j, "", "batch_size", 1));
  NAS_ASSIGN_OR_RETURN(info.threads, GetIntOr(j, "", "threads", 1));
  NAS_ASSIGN_OR_RETURN(info.profiled_at, GetStringOr(j, "", "profiled_at", ""));
  NAS_ASSIGN_OR_RETURN(info.method, GetStringOr(j, "", "method", ""));
  if (info.batch_size < 1) return absl::InvalidArgumentError("batch_size: must be >= 1");
  if (info.threads < 1) return absl::InvalidArgumentError("threads: must be >= 1");
  if (auto c = j.find("calibration"); c != j.end() && !c->is_null()) {
    NAS_ASSIGN_OR_RETURN(info.calibration, ParseCalibration(*c));
  }
  LatencyTable t(info);
  NAS_ASSIGN_OR_RETURN(const Json* entries, GetMember(j, "", "entries"));
  if (!entries->is_object()) return absl::InvalidArgumentError("entries: expected an object");
  for (auto it = entries->begin(); it != entries->end(); ++it) {
    std::string path = absl::StrCat("entries['", it.key(), "']");
    LatencyEntry e;
    NAS_ASSIGN_OR_RETURN(int count, GetInt(it.value(), path, "count"));
    e.count = count;
    NAS_ASSIGN_OR_RETURN(e.mean_ms, GetDouble(it.value(), path, "mean"));
    NAS_ASSIGN_OR_RETURN(e.var, GetDouble(it.value(), path, "var"));
    absl::Status s = t.Insert(it.key(), e);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return t;
}

std::string LatencyTable::ToJson() const {
  Json entries = Json::object();
  for (const auto& [k, e] : entries_) {
    entries[k] = {{"count", e.count}, {"mean", e.mean_ms}, {"var", e.var}};
  }
  Json j = {{"format", "nas-latency-table/1"},
            {"device", info_.device},
            {"runtime", info_.runtime},
            {"batch_size", info_.batch_size},
            {"threads", info_.threads},
            {"profiled_at", info_.profiled_at},
            {"method", info_.method},
            {"entries", entries}};
  if (info_.calibration.has_value()) j["calibration"] = CalibrationJson(*info_.calibration);
  return j.dump(2);
}

absl::StatusOr<LatencyTable> LatencyTable::Load(const std::string& path) {
  NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  absl::StatusOr<LatencyTable> t;
  if (absl::EndsWith(path, ".yaml") || absl::EndsWith(path, ".yml")) {
    std::string device = path.substr(path.find_last_of('/') + 1);
    device = device.substr(0, device.find('.'));
    t = ParseYaml(text, device);
  } else {
    t = ParseJson(text);
  }
  if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", t.status().message()));
  return t;
}

absl::Status LatencyTable::Save(const std::string& path) const { return WriteFile(path, ToJson()); }

absl::StatusOr<LatencyEntry> LatencyTable::Lookup(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat("device ", info_.device, " has no latency for key '", key, "'"));
  }
  return it->second;
}

absl::StatusOr<double> LatencyTable::SumMeans(const std::vector<std::string>& keys) const {
  double sum = 0;
  for (const std::string& k : keys) {
    NAS_ASSIGN_OR_RETURN(LatencyEntry e, Lookup(k));
    sum += e.mean_ms;
  }
  return sum;
}

double LatencyTable::NetworkCorrection(int layers) const {
  return info_.calibration.has_value() ? info_.calibration->Correction(layers) : 0.0;
}

absl::StatusOr<double> LatencyTable::PredictNetwork(const std::vector<std::string>& keys) const {
  NAS_ASSIGN_OR_RETURN(double sum, SumMeans(keys));
  return sum + NetworkCorrection(static_cast<int>(keys.size()));
}

}  // namespace nas
