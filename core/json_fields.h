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

// Bounds on a JSON document read from outside (a request field, a file, a stored record).
struct JsonLimits {
  // Largest document, bytes. Default 16 MiB.
  size_t max_bytes = size_t{16} << 20;
  // Deepest nesting of arrays and objects (`[[1]]` is 2). Every format we read is at most 6
  // deep. Default 64.
  int max_depth = 64;
};

// Parses text as JSON with one discipline for every format we read: the size and the nesting
// depth are checked before the parser runs (so no input can exhaust the stack, in parsing,
// printing or destroying the value), and every parser failure - syntax, a number beyond the
// range of a double, invalid UTF-8, memory - is InvalidArgument naming `what` (a file name or a
// field) and the reason. Never throws.
absl::StatusOr<Json> ParseJson(const std::string& text, const std::string& what,
                               const JsonLimits& limits = {});

// The nesting depth of a JSON text (brackets outside strings), without parsing it; stops
// counting once past `stop_after`.
int JsonNestingDepth(const std::string& text, int stop_after);

// A short, printable rendering of a value for error messages (at most `max_chars`).
std::string JsonSnippet(const Json& value, size_t max_chars = 80);

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

// GetInt refuses numbers outside int's range or with a fraction; GetDouble non-finite ones.

// Optional variants: return `fallback` when the member is absent, an error when it has the
// wrong type.
absl::StatusOr<int> GetIntOr(const Json& obj, const std::string& parent, const std::string& key,
                             int fallback);
absl::StatusOr<double> GetDoubleOr(const Json& obj, const std::string& parent,
                                   const std::string& key, double fallback);
absl::StatusOr<std::string> GetStringOr(const Json& obj, const std::string& parent,
                                        const std::string& key, const std::string& fallback);

std::string FieldPath(const std::string& parent, const std::string& key);

// Whole-file helpers: errors name the path and the OS reason. ReadFile refuses a file larger
// than `max_bytes` (InvalidArgument naming the path and the limit). Default 256 MiB.
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = size_t{256} << 20);
absl::Status WriteFile(const std::string& path, const std::string& content);

}  // namespace nas
