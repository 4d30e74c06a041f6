#include "core/latency_table.h"

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

}  // namespace

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

}  // namespace nas
