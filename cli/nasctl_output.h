// How nasctl prints what it reads (`-o table|json|yaml`): protobuf messages as JSON with
// protobuf's own mapping (field names as in the .proto, every field printed, defaults included,
// so `nasctl -o json status J` has exactly JobStatus's fields), and YAML written from that JSON
// tree (every string double-quoted with JSON's escapes, which YAML reads the same).
//
//   NAS_ASSIGN_OR_RETURN(OutputFormat f, ParseOutputFormat("json"));
//   NAS_ASSIGN_OR_RETURN(std::string text, FormatMessage(status, f));   // ends with a newline
//
// 64-bit integers are JSON strings ("round": "12"), as protobuf's JSON mapping has them.
#pragma once

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace nas {

// JSON values keep their members in the order they were added (the .proto's order).
using OrderedJson = nlohmann::ordered_json;

enum class OutputFormat { kTable, kJson, kYaml };

// "table", "json" or "yaml"; InvalidArgument naming -o otherwise.
absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name);

// The message as a JSON value (proto field names, every primitive field printed).
absl::StatusOr<OrderedJson> MessageToJsonValue(const google::protobuf::Message& message);

// YAML for a JSON value: block mappings and sequences, strings double-quoted, empty containers
// as {} and []. Ends with a newline.
std::string JsonToYaml(const OrderedJson& value);

// `value` as `format` (kJson: indented; kYaml: JsonToYaml; kTable is the caller's). Ends with a
// newline.
std::string FormatJson(const OrderedJson& value, OutputFormat format);

// The message as `format` (kJson or kYaml). Ends with a newline.
absl::StatusOr<std::string> FormatMessage(const google::protobuf::Message& message,
                                          OutputFormat format);

}  // namespace nas
