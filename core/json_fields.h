// Typed field access on nlohmann::json with errors that name the field path.
//
//   NAS_ASSIGN_OR_RETURN(int c, GetInt(obj, "stem.channels", "channels"));
// returns InvalidArgument("stem.channels: missing") or "stem.channels: expected an integer, got
// string". `path` is the caller's name for the object (a dotted path); `key` the member.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace nas {

using Json = nlohmann::json;

// Parses text as JSON; the error names `what` (a file name or a field) and the parser's reason.
absl::StatusOr<Json> ParseJson(const std::string& text, const std::string& what);

// Member lookups. `parent` is the dotted path of `obj` ("" at the top level).
absl::StatusOr<const Json*> GetMember(const Json& obj, const std::string& parent,
                                      const std::string& key);
absl::StatusOr<int> GetInt(const Json& obj, const std::string& parent, const std::string& key);
absl::StatusOr<double> GetDouble(const Json& obj, const std::string& parent,
                                 const std::string& key);
absl::StatusOr<std::string> GetString(const Json& obj, const std::string& parent,
                                      const std::string& key);
absl::StatusOr<bool> GetBool(const Json& obj, const std::string& parent, const std::string& key);
absl::StatusOr<std::vector<int>> GetIntList(const Json& obj, const std::string& parent,
                                            const std::string& key);

// Optional variants: return `fallback` when the member is absent, an error when it has the
// wrong type.
absl::StatusOr<int> GetIntOr(const Json& obj, const std::string& parent, const std::string& key,
                             int fallback);
absl::StatusOr<double> GetDoubleOr(const Json& obj, const std::string& parent,
                                   const std::string& key, double fallback);
absl::StatusOr<std::string> GetStringOr(const Json& obj, const std::string& parent,
                                        const std::string& key, const std::string& fallback);

std::string FieldPath(const std::string& parent, const std::string& key);

// Whole-file helpers: errors name the path and the OS reason.
absl::StatusOr<std::string> ReadFile(const std::string& path);
absl::Status WriteFile(const std::string& path, const std::string& content);

}  // namespace nas
