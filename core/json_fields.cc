#include "core/json_fields.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace nas {

std::string FieldPath(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : absl::StrCat(parent, ".", key);
}

absl::StatusOr<Json> ParseJson(const std::string& text, const std::string& what) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON: ", e.what()));
  }
}

absl::StatusOr<const Json*> GetMember(const Json& obj, const std::string& parent,
                                      const std::string& key) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(parent.empty() ? "document" : parent, ": expected an object, got ",
                     obj.type_name()));
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
                                                 ", got ", got.type_name(), " ", got.dump()));
}
}  // namespace

absl::StatusOr<int> GetInt(const Json& obj, const std::string& parent, const std::string& key) {
  auto m = GetMember(obj, parent, key);
  if (!m.ok()) return m.status();
  const Json& v = **m;
  if (v.is_number_integer()) return v.get<int>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d == static_cast<int>(d)) return static_cast<int>(d);
  }
  return WrongType(parent, key, "an integer", v);
}

absl::StatusOr<double> GetDouble(const Json& obj, const std::string& parent,
                                 const std::string& key) {
  auto m = GetMember(obj, parent, key);
  if (!m.ok()) return m.status();
  if (!(*m)->is_number()) return WrongType(parent, key, "a number", **m);
  return (*m)->get<double>();
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
  for (const Json& e : **m) {
    if (!e.is_number_integer()) return WrongType(parent, key, "a list of integers", **m);
    out.push_back(e.get<int>());
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

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
