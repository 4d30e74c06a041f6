#include "core/json_fields.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <optional>

#include "absl/strings/str_cat.h"

namespace nas {

std::string FieldPath(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : absl::StrCat(parent, ".", key);
}

int JsonNestingDepth(const std::string& text, int stop_after) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > stop_after) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

absl::StatusOr<Json> ParseJson(const std::string& text, const std::string& what,
                               const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", text.size(), " bytes of JSON, over the limit of ", limits.max_bytes));
  }
  if (JsonNestingDepth(text, limits.max_depth) > limits.max_depth) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": JSON nested deeper than the limit of ", limits.max_depth, " levels"));
  }
  try {
    return Json::parse(text);
  } catch (const Json::out_of_range& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": a number out of range (beyond a double): ", e.what()));
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON: ", e.what()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": out of memory parsing ", text.size(), " bytes of JSON"));
  }
}

std::string JsonSnippet(const Json& value, size_t max_chars) {
  std::string s;
  try {
    s = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  } catch (const std::exception&) {
    return value.type_name();
  }
  if (s.size() > max_chars) {
    s.resize(max_chars);
    s += "...";
  }
  return s;
}

absl::StatusOr<const Json*> GetMember(const Json& obj, const std::string& parent,
                                      const std::string& key) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(parent.empty() ? "document" : parent,
                                                   ": expected an object, got ", obj.type_name()));
  }
  auto it = obj.find(key);
  if (it == obj.end()) {
    return absl::InvalidArgumentError(absl::StrCat(FieldPath(parent, key), ": missing"));
  }
  return &*it;
}

namespace {
absl::Status WrongType(const std::string& parent, const std::string& key, const char* want,
                       const Json& got) {
  return absl::InvalidArgumentError(absl::StrCat(FieldPath(parent, key), ": expected ", want,
                                                 ", got ", got.type_name(), " ", JsonSnippet(got)));
}

// The value as an int: integers in int's range, and floats with no fraction in that range.
std::optional<int> AsInt(const Json& v) {
  constexpr int64_t kMin = std::numeric_limits<int>::min();
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u <= static_cast<uint64_t>(kMax)) return static_cast<int>(u);
    return std::nullopt;
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i >= kMin && i <= kMax) return static_cast<int>(i);
    return std::nullopt;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d >= static_cast<double>(kMin) && d <= static_cast<double>(kMax) && d == std::trunc(d)) {
      return static_cast<int>(d);
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<int> GetInt(const Json& obj, const std::string& parent, const std::string& key) {
  auto m = GetMember(obj, parent, key);
  if (!m.ok()) return m.status();
  std::optional<int> v = AsInt(**m);
  if (!v.has_value()) {
    const bool whole =
        (*m)->is_number_integer() ||
        ((*m)->is_number_float() && (*m)->get<double>() == std::trunc((*m)->get<double>()));
    return WrongType(parent, key, whole ? "an integer in the range of int" : "an integer", **m);
  }
  return *v;
}

absl::StatusOr<double> GetDouble(const Json& obj, const std::string& parent,
                                 const std::string& key) {
  auto m = GetMember(obj, parent, key);
  if (!m.ok()) return m.status();
  if (!(*m)->is_number()) return WrongType(parent, key, "a number", **m);
  double d = (*m)->get<double>();
  if (!std::isfinite(d)) return WrongType(parent, key, "a finite number", **m);
  return d;
}

absl::StatusOr<std::string> GetString(const Json& obj, const std::string& parent,
                                      const std::string& key) {
  auto m = GetMember(obj, parent, key);
  if (!m.ok()) return m.status();
  if (!(*m)->is_string()) return WrongType(parent, key, "a string", **m);
  return (*m)->get<std::string>();
}

absl::StatusOr<bool> GetBool(const Json& obj, const std::string& parent, const std::string& key) {
  auto m = GetMember(obj, parent, key);
  if (!m.ok()) return m.status();
  if (!(*m)->is_boolean()) return WrongType(parent, key, "true or false", **m);
  return (*m)->get<bool>();
}

absl::StatusOr<std::vector<int>> GetIntList(const Json& obj, const std::string& parent,
                                            const std::string& key) {
  auto m = GetMember(obj, parent, key);
  if (!m.ok()) return m.status();
  if (!(*m)->is_array()) return WrongType(parent, key, "a list of integers", **m);
  std::vector<int> out;
  out.reserve((*m)->size());
  for (size_t i = 0; i < (*m)->size(); ++i) {
    const Json& e = (**m)[i];
    if (!e.is_number_integer()) return WrongType(parent, key, "a list of integers", **m);
    std::optional<int> v = AsInt(e);
    if (!v.has_value()) {
      return WrongType(parent, absl::StrCat(key, "[", i, "]"), "an integer in the range of int", e);
    }
    out.push_back(*v);
  }
  return out;
}

absl::StatusOr<int> GetIntOr(const Json& obj, const std::string& parent, const std::string& key,
                             int fallback) {
  if (obj.is_object() && !obj.contains(key)) return fallback;
  return GetInt(obj, parent, key);
}

absl::StatusOr<double> GetDoubleOr(const Json& obj, const std::string& parent,
                                   const std::string& key, double fallback) {
  if (obj.is_object() && !obj.contains(key)) return fallback;
  return GetDouble(obj, parent, key);
}

absl::StatusOr<std::string> GetStringOr(const Json& obj, const std::string& parent,
                                        const std::string& key, const std::string& fallback) {
  if (obj.is_object() && !obj.contains(key)) return fallback;
  return GetString(obj, parent, key);
}

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  // Read at most max_bytes + 1 (a pipe or a device has no size to look at first).
  std::string out;
  char buf[1 << 16];
  while (in) {
    in.read(buf, sizeof(buf));
    out.append(buf, static_cast<size_t>(in.gcount()));
    if (out.size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than the limit of ", max_bytes, " bytes"));
    }
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat(path, ": read failed: ", std::strerror(errno)));
  }
  return out;
}

absl::Status WriteFile(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": cannot write: ", std::strerror(errno)));
    }
    out << content;
    if (!out.flush()) {
      return absl::DataLossError(absl::StrCat(path, ": write failed: ", std::strerror(errno)));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": rename failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace nas
