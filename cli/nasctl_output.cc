#include "cli/nasctl_output.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace nas {
namespace {

bool PlainKey(const std::string& key) {
  if (key.empty() || !(absl::ascii_isalpha(key[0]) || key[0] == '_')) return false;
  for (char c : key) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  // Words YAML 1.1 readers take for booleans or null.
  static const char* const kReserved[] = {"y",   "n",    "yes",   "no",  "on",
                                          "off", "true", "false", "null"};
  std::string lower = absl::AsciiStrToLower(key);
  for (const char* r : kReserved) {
    if (lower == r) return false;
  }
  return true;
}

std::string Quoted(const std::string& s) {
  return OrderedJson(s).dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

std::string Key(const std::string& key) { return PlainKey(key) ? key : Quoted(key); }

bool Scalar(const OrderedJson& v) { return !(v.is_object() || v.is_array()) || v.empty(); }

std::string ScalarText(const OrderedJson& v) {
  if (v.is_string()) return Quoted(v.get<std::string>());
  if (v.is_object()) return "{}";
  if (v.is_array()) return "[]";
  return v.dump();  // numbers, true, false, null: the same in YAML
}

void Emit(const OrderedJson& v, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      absl::StrAppend(out, pad, Key(it.key()), ":");
      if (Scalar(it.value())) {
        absl::StrAppend(out, " ", ScalarText(it.value()), "\n");
      } else {
        absl::StrAppend(out, "\n");
        Emit(it.value(), indent + 2, out);
      }
    }
    return;
  }
  for (const OrderedJson& item : v) {  // an array
    if (Scalar(item)) {
      absl::StrAppend(out, pad, "- ", ScalarText(item), "\n");
      continue;
    }
    // "- " then the first line of the nested block on the same line.
    std::string nested;
    Emit(item, indent + 2, &nested);
    absl::StrAppend(out, pad, "- ", nested.substr(indent + 2));
  }
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name) {
  if (name == "table" || name.empty()) return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "yaml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError(
      absl::StrCat("-o: \"", name, "\" is not one of table, json, yaml"));
}

absl::StatusOr<OrderedJson> MessageToJsonValue(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string text;
  auto st = google::protobuf::util::MessageToJsonString(message, &text, options);
  if (!st.ok()) return absl::InternalError(absl::StrCat("JSON: ", st.ToString()));
  OrderedJson v = OrderedJson::parse(text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return absl::InternalError("JSON: protobuf's output does not parse");
  return v;
}

std::string JsonToYaml(const OrderedJson& value) {
  if (Scalar(value)) return ScalarText(value) + "\n";
  std::string out;
  Emit(value, 0, &out);
  return out;
}

std::string FormatJson(const OrderedJson& value, OutputFormat format) {
  if (format == OutputFormat::kYaml) return JsonToYaml(value);
  return value.dump(2, ' ', false, OrderedJson::error_handler_t::replace) + "\n";
}

absl::StatusOr<std::string> FormatMessage(const google::protobuf::Message& message,
                                          OutputFormat format) {
  auto v = MessageToJsonValue(message);
  if (!v.ok()) return v.status();
  return FormatJson(*v, format);
}

}  // namespace nas
