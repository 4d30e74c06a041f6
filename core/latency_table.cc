#include "core/latency_table.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <new>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

// The key as an error message quotes it: escaped, and cut at 120 characters (a hostile key may
// be megabytes long).
std::string QuoteKey(absl::string_view key) {
  constexpr size_t kShown = 120;
  if (key.size() <= kShown) return absl::CHexEscape(key);
  return absl::StrCat(absl::CHexEscape(key.substr(0, kShown)), "... (", key.size(), " bytes)");
}

absl::Status BadKey(absl::string_view key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("layer key '", QuoteKey(key), "': ", why));
}

// A non-negative decimal integer of at most 9 digits, in one spelling: no sign, no spaces, no
// leading zeros (so a valid key is at most 96 bytes, and a table's JSON stays within its limit).
bool ParseCount(absl::string_view s, int* out) {
  if (s.empty() || s.size() > 9 || (s.size() > 1 && s[0] == '0')) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, out);
}

// "HxWxC" -> three ints.
bool ParseShape(absl::string_view s, int* h, int* w, int* c) {
  std::vector<absl::string_view> p = absl::StrSplit(s, 'x');
  return p.size() == 3 && ParseCount(p[0], h) && ParseCount(p[1], w) && ParseCount(p[2], c) &&
         *h > 0 && *w > 0 && *c > 0;
}

// A decimal number as the reference YAML writes it: [-]digits[.digits][(e|E)[+|-]digits], or
// [-].digits. Refuses what absl::SimpleAtod would also take: "inf", "nan", hex, spaces.
bool ParseDecimal(absl::string_view s, double* out) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  size_t digits = 0;
  while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
      ++i, ++exp_digits;
    }
    if (exp_digits == 0) return false;
  }
  return i == s.size() && absl::SimpleAtod(s, out);
}

absl::Status CheckText(const std::string& field, const std::string& value, size_t limit) {
  if (value.size() > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", value.size(), " bytes, over the limit of ", limit));
  }
  return absl::OkStatus();
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
  for (auto [name, v] : {std::pair<const char*, double>{"overhead_ms", c.overhead_ms},
                         {"per_layer_ms", c.per_layer_ms}}) {
    if (!std::isfinite(v) || std::abs(v) > kMaxLatencyMs) {
      return absl::InvalidArgumentError(absl::StrCat("calibration.", name, ": ", v,
                                                     " is not a finite number within +-",
                                                     kMaxLatencyMs, " ms"));
    }
  }
  if (c.model != "constant" && c.model != "linear") {
    return absl::InvalidArgumentError(absl::StrCat("calibration.model: \"",
                                                   absl::CHexEscape(c.model.substr(0, 40)),
                                                   "\" is not \"constant\" or \"linear\""));
  }
  if (c.model == "constant" && c.per_layer_ms != 0) {
    return absl::InvalidArgumentError(
        "calibration.per_layer_ms: must be 0 for the constant model");
  }
  if (c.networks < 1 || c.networks > kMaxCalibrationNetworks) {
    return absl::InvalidArgumentError(absl::StrCat("calibration.networks: ", c.networks,
                                                   " is not in 1..", kMaxCalibrationNetworks));
  }
  for (auto [name, v] : {std::pair<const char*, int>{"rejected", c.rejected},
                         {"min_layers", c.min_layers},
                         {"max_layers", c.max_layers}}) {
    if (v < 0 || v > kMaxCalibrationNetworks) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration.", name, ": ", v, " is not in 0..", kMaxCalibrationNetworks));
    }
  }
  if (c.min_layers > c.max_layers) {
    return absl::InvalidArgumentError(absl::StrCat("calibration.min_layers: ", c.min_layers,
                                                   " exceeds max_layers ", c.max_layers));
  }
  for (auto [name, v] : {std::pair<const char*, double>{"raw_rmse_ms", c.raw_rmse_ms},
                         {"rmse_ms", c.rmse_ms},
                         {"loo_rmse_ms", c.loo_rmse_ms},
                         {"max_error_pct", c.max_error_pct}}) {
    if (!(v >= 0) || !std::isfinite(v) || v > kMaxLatencyMs) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration.", name, ": ", v, " is not a finite number in [0, ", kMaxLatencyMs, "]"));
    }
  }
  return c;
}

// The loaders' last line of defence: whatever a library throws (nlohmann on a value of an
// unexpected type, std::bad_alloc) becomes a status naming `what`, never an escaping exception.
template <typename F>
auto Guarded(const char* what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what()));
  }
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
  if (key.size() > kMaxLayerKeyBytes) {
    return BadKey(key, absl::StrCat(key.size(), " bytes, over the limit of ", kMaxLayerKeyBytes));
  }
  std::vector<std::string> parts = absl::StrSplit(key, '-');
  if (parts.size() < 3) return BadKey(key, "expected KIND-input:HxWxC-output:...");
  LayerKey k;
  k.kind = parts[0];
  if (k.kind != "Conv" && k.kind != "expanded_conv" && k.kind != "Conv_1" && k.kind != "Logits") {
    return BadKey(key, absl::StrCat("unknown kind \"", absl::CHexEscape(k.kind),
                                    "\" (Conv, expanded_conv, Conv_1, Logits)"));
  }
  std::map<std::string, std::string> fields;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits(':', 1));
    if (kv.size() != 2 || kv[1].empty()) {
      return BadKey(key,
                    absl::StrCat("field \"", absl::CHexEscape(parts[i]), "\" is not name:value"));
    }
    if (!fields.emplace(kv[0], kv[1]).second) {
      return BadKey(key, absl::StrCat("field \"", absl::CHexEscape(kv[0]), "\" repeated"));
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
    if (!ParseCount(v, out)) {
      return BadKey(key,
                    absl::StrCat("field \"", name,
                                 "\" is not a non-negative integer (digits, no leading zeros)"));
    }
    return absl::OkStatus();
  };
  NAS_ASSIGN_OR_RETURN(std::string in, need("input"));
  if (!ParseShape(in, &k.in_h, &k.in_w, &k.in_c)) {
    return BadKey(key, "input is not HxWxC with positive sizes");
  }
  NAS_ASSIGN_OR_RETURN(std::string out, need("output"));
  if (k.kind == "Logits") {
    if (!ParseCount(out, &k.out_c) || k.out_c <= 0) {
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
  }
  if (!fields.empty()) {
    return BadKey(
        key, absl::StrCat("unexpected field \"", absl::CHexEscape(fields.begin()->first), "\""));
  }
  absl::Status valid = k.Validate();
  if (!valid.ok()) {
    // Validate names the canonical key; name the key as it was written.
    absl::string_view why = valid.message();
    why.remove_prefix(std::min(why.size(), why.find("': ") + 3));
    return BadKey(key, std::string(why));
  }
  return k;
}

absl::Status LayerKey::Validate() const {
  const std::string key = ToString();
  auto bad = [&](const std::string& why) { return BadKey(key, why); };
  if (kind != "Conv" && kind != "expanded_conv" && kind != "Conv_1" && kind != "Logits") {
    return bad("unknown kind (Conv, expanded_conv, Conv_1, Logits)");
  }
  auto check = [&](const char* field, int v, int limit) -> absl::Status {
    if (v < 1 || v > limit) {
      return bad(absl::StrCat(field, " ", v, " is not in 1..", limit));
    }
    return absl::OkStatus();
  };
  NAS_RETURN_IF_ERROR(check("input height", in_h, kMaxLayerSpatial));
  NAS_RETURN_IF_ERROR(check("input width", in_w, kMaxLayerSpatial));
  NAS_RETURN_IF_ERROR(check("input channels", in_c, kMaxLayerChannels));
  if (kind == "Logits") return check("output classes", out_c, kMaxLayerClasses);
  NAS_RETURN_IF_ERROR(check("output height", out_h, kMaxLayerSpatial));
  NAS_RETURN_IF_ERROR(check("output width", out_w, kMaxLayerSpatial));
  NAS_RETURN_IF_ERROR(check("output channels", out_c, kMaxLayerChannels));
  auto strided = [&](int s) { return (in_h + s - 1) / s == out_h && (in_w + s - 1) / s == out_w; };
  const std::string in_hw = absl::StrCat(in_h, "x", in_w);
  const std::string out_hw = absl::StrCat(out_h, "x", out_w);
  if (kind == "Conv") {
    if (!strided(1) && !strided(2)) {
      return bad(absl::StrCat("output ", out_hw, " is not input ", in_hw,
                              " at stride 1 or 2 (ceil(input / stride))"));
    }
    return absl::OkStatus();
  }
  if (kind == "Conv_1") {
    if (!strided(1)) {
      return bad(absl::StrCat("output ", out_hw, " differs from input ", in_hw,
                              " (a 1x1 conv keeps the size)"));
    }
    return absl::OkStatus();
  }
  // expanded_conv
  NAS_RETURN_IF_ERROR(check("expand", expand, kMaxLayerExpand));
  NAS_RETURN_IF_ERROR(check("kernel", kernel, kMaxLayerKernel));
  if (kernel % 2 != 1) return bad(absl::StrCat("kernel ", kernel, " is not odd"));
  if (stride != 1 && stride != 2) return bad(absl::StrCat("stride ", stride, " is not 1 or 2"));
  if (idskip != 0 && idskip != 1) return bad(absl::StrCat("idskip ", idskip, " is not 0 or 1"));
  if (!strided(stride)) {
    return bad(absl::StrCat("output ", out_hw, " is not input ", in_hw, " at stride ", stride,
                            " (expected ", (in_h + stride - 1) / stride, "x",
                            (in_w + stride - 1) / stride, ", ceil(input / stride))"));
  }
  if (idskip == 1 && (stride != 1 || in_c != out_c)) {
    return bad(
        absl::StrCat("idskip 1 needs stride 1 and equal input and output channels (got "
                     "stride ",
                     stride, ", ", in_c, " -> ", out_c, " channels)"));
  }
  return absl::OkStatus();
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
  if (e.count < 1 || e.count > kMaxLatencyCount) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ".count: ", e.count, " is not in 1..", kMaxLatencyCount));
  }
  if (!(e.mean_ms >= kMinLatencyMs && e.mean_ms <= kMaxLatencyMs)) {
    return absl::InvalidArgumentError(absl::StrCat(key, ".mean: ", e.mean_ms,
                                                   " ms is not a number in [", kMinLatencyMs, ", ",
                                                   kMaxLatencyMs, "] ms"));
  }
  if (!(e.var >= 0 && e.var <= kMaxLatencyVar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, ".var: ", e.var, " ms^2 is not a number in [0, ", kMaxLatencyVar, "] ms^2"));
  }
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    it->second = e;
    return absl::OkStatus();
  }
  if (entries_.size() >= kMaxLatencyTableEntries) {
    return absl::ResourceExhaustedError(
        absl::StrCat("table ", info_.device, ": adding '", key, "' exceeds the limit of ",
                     kMaxLatencyTableEntries, " entries per table"));
  }
  entries_.emplace(key, e);
  return absl::OkStatus();
}

absl::StatusOr<LatencyTable> LatencyTable::ParseYaml(const std::string& text,
                                                     const std::string& device) {
  return Guarded("latency table (YAML)", [&] { return ParseYamlUnguarded(text, device); });
}

absl::StatusOr<LatencyTable> LatencyTable::ParseJson(const std::string& text) {
  return Guarded("latency table (JSON)", [&] { return ParseJsonUnguarded(text); });
}

absl::StatusOr<LatencyTable> LatencyTable::ParseYamlUnguarded(const std::string& text,
                                                              const std::string& device) {
  if (text.size() > kMaxLatencyTableBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latency table: ", text.size(), " bytes, over the limit of ", kMaxLatencyTableBytes));
  }
  NAS_RETURN_IF_ERROR(CheckText("device", device, kMaxLatencyDeviceBytes));
  LatencyTableInfo info;
  info.device = device;
  info.runtime = "imported";
  info.method = "ProxylessNAS lookup table (YAML)";
  LatencyTable t(info);
  std::string current;
  int entry_line = 0;  // line of `current`'s "KEY:"; errors about the entry point there
  LatencyEntry entry;
  int seen = 0;  // bitmask of count/mean/var
  auto flush = [&]() -> absl::Status {
    if (current.empty()) return absl::OkStatus();
    if (seen != 7) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", entry_line, ": entry '", QuoteKey(current), "' lacks ",
          (seen & 1) ? "" : "count ", (seen & 2) ? "" : "mean ", (seen & 4) ? "" : "var"));
    }
    if (t.Contains(current)) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", entry_line, ": key '", QuoteKey(current), "' appears twice"));
    }
    absl::Status s = t.Insert(current, entry);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("line ", entry_line, ": ", s.message()));
    }
    current.clear();
    return absl::OkStatus();
  };
  int line_no = 0;
  // Lines are visited lazily: a text of only newlines never becomes millions of strings.
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
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
      if (current.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": empty key"));
      }
      absl::Status key_ok = LayerKey::Parse(current).status();
      if (!key_ok.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", key_ok.message()));
      }
      entry_line = line_no;
      entry = LatencyEntry();
      seen = 0;
      continue;
    }
    if (current.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": indented field before any key"));
    }
    std::vector<absl::string_view> kv = absl::StrSplit(stripped, absl::MaxSplits(':', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": expected 'name: value'"));
    }
    absl::string_view name = absl::StripAsciiWhitespace(kv[0]);
    absl::string_view value = absl::StripAsciiWhitespace(kv[1]);
    const std::string field = absl::StrCat("line ", line_no, ": ", current, ".", name);
    auto shown = [](absl::string_view v) {
      return absl::CHexEscape(v.substr(0, 40)) + (v.size() > 40 ? "..." : "");
    };
    int bit = 0;
    if (name == "count") {
      bit = 1;
      // A whole number; as a double first so that "1e30" says "out of range", not "not a number".
      double v = 0;
      if (!ParseDecimal(value, &v) || v != std::floor(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": \"", shown(value), "\" is not a whole number"));
      }
      if (!(v >= 1 && v <= static_cast<double>(kMaxLatencyCount))) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": ", shown(value), " is not in 1..", kMaxLatencyCount));
      }
      entry.count = static_cast<int64_t>(v);
    } else if (name == "mean" || name == "var") {
      bit = name == "mean" ? 2 : 4;
      double v = 0;
      if (!ParseDecimal(value, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": \"", shown(value), "\" is not a number (plain decimal digits)"));
      }
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": ", shown(value), " is beyond the range of a double"));
      }
      (name == "mean" ? entry.mean_ms : entry.var) = v;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": unknown field \"",
                                                     shown(name), "\" (count, mean, var)"));
    }
    if (seen & bit) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": repeated"));
    }
    seen |= bit;
  }
  NAS_RETURN_IF_ERROR(flush());
  if (t.size() == 0) return absl::InvalidArgumentError("latency table: no entries");
  return t;
}

absl::StatusOr<LatencyTable> LatencyTable::ParseJsonUnguarded(const std::string& text) {
  if (text.size() > kMaxLatencyTableBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latency table: ", text.size(), " bytes, over the limit of ", kMaxLatencyTableBytes));
  }
  NAS_ASSIGN_OR_RETURN(Json j, nas::ParseJson(text, "latency table"));
  if (!j.is_object()) return absl::InvalidArgumentError("latency table: expected an object");
  NAS_ASSIGN_OR_RETURN(std::string format, GetString(j, "", "format"));
  if (format != "nas-latency-table/1") {
    return absl::InvalidArgumentError(
        absl::StrCat("format: expected \"nas-latency-table/1\", got \"",
                     absl::CHexEscape(format.substr(0, 40)), "\""));
  }
  LatencyTableInfo info;
  NAS_ASSIGN_OR_RETURN(info.device, GetString(j, "", "device"));
  if (info.device.empty()) return absl::InvalidArgumentError("device: must not be empty");
  NAS_RETURN_IF_ERROR(CheckText("device", info.device, kMaxLatencyDeviceBytes));
  NAS_ASSIGN_OR_RETURN(info.runtime, GetStringOr(j, "", "runtime", ""));
  NAS_ASSIGN_OR_RETURN(info.batch_size, GetIntOr(j, "", "batch_size", 1));
  NAS_ASSIGN_OR_RETURN(info.threads, GetIntOr(j, "", "threads", 1));
  NAS_ASSIGN_OR_RETURN(info.profiled_at, GetStringOr(j, "", "profiled_at", ""));
  NAS_ASSIGN_OR_RETURN(info.method, GetStringOr(j, "", "method", ""));
  NAS_RETURN_IF_ERROR(CheckText("runtime", info.runtime, kMaxLatencyTableTextBytes));
  NAS_RETURN_IF_ERROR(CheckText("profiled_at", info.profiled_at, kMaxLatencyTableTextBytes));
  NAS_RETURN_IF_ERROR(CheckText("method", info.method, kMaxLatencyTableTextBytes));
  if (info.batch_size < 1 || info.batch_size > kMaxLatencyBatchSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size: ", info.batch_size, " is not in 1..", kMaxLatencyBatchSize));
  }
  if (info.threads < 1 || info.threads > kMaxLatencyThreads) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads: ", info.threads, " is not in 1..", kMaxLatencyThreads));
  }
  if (auto c = j.find("calibration"); c != j.end() && !c->is_null()) {
    NAS_ASSIGN_OR_RETURN(info.calibration, ParseCalibration(*c));
  }
  LatencyTable t(info);
  NAS_ASSIGN_OR_RETURN(const Json* entries, GetMember(j, "", "entries"));
  if (!entries->is_object()) return absl::InvalidArgumentError("entries: expected an object");
  if (entries->size() > kMaxLatencyTableEntries) {
    return absl::ResourceExhaustedError(absl::StrCat("entries: ", entries->size(),
                                                     " entries exceed the limit of ",
                                                     kMaxLatencyTableEntries, " per table"));
  }
  for (auto it = entries->begin(); it != entries->end(); ++it) {
    std::string path = absl::StrCat("entries['", QuoteKey(it.key()), "']");
    if (!it.value().is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected an object"));
    }
    LatencyEntry e;
    NAS_ASSIGN_OR_RETURN(int count, GetInt(it.value(), path, "count"));
    if (count < 1 || count > kMaxLatencyCount) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".count: ", count, " is not in 1..", kMaxLatencyCount));
    }
    e.count = static_cast<int64_t>(count);
    NAS_ASSIGN_OR_RETURN(e.mean_ms, GetDouble(it.value(), path, "mean"));
    NAS_ASSIGN_OR_RETURN(e.var, GetDouble(it.value(), path, "var"));
    absl::Status s = t.Insert(it.key(), e);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
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
  std::error_code ec;
  const uintmax_t bytes = std::filesystem::file_size(path, ec);
  if (!ec && bytes > kMaxLatencyTableBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", bytes, " bytes, over the limit of ",
                                                   kMaxLatencyTableBytes, " for a latency table"));
  }
  NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  absl::StatusOr<LatencyTable> t;
  if (absl::EndsWith(path, ".yaml") || absl::EndsWith(path, ".yml")) {
    std::string device = path.substr(path.find_last_of('/') + 1);
    device = device.substr(0, device.find('.'));
    t = ParseYaml(text, device);
  } else {
    t = ParseJson(text);
  }
  if (!t.ok())
    return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
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
