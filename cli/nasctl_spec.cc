#include "cli/nasctl_spec.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nas {
namespace {

using google::protobuf::FieldDescriptor;

absl::StatusOr<std::string> ReadText(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f) return absl::NotFoundError(absl::StrCat(what, ": cannot read ", path));
  return ss.str();
}

bool HasFlag(const FieldDescriptor* field) {
  for (const char* name : kSpecFieldsWithoutFlag) {
    if (field->name() == name) return false;
  }
  return !field->is_repeated() && field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE;
}

absl::Status SetField(JobSpec* spec, const FieldDescriptor* field, const std::string& text) {
  const google::protobuf::Reflection* r = spec->GetReflection();
  auto bad = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat("--", field->name(), ": \"", text, "\" is not a ", field->type_name()));
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string value = text;
      if (field->name() == "space_json" && !text.empty() && text[0] == '@') {
        auto file = ReadText(text.substr(1), "--space_json");
        if (!file.ok()) return file.status();
        value = *file;
      }
      r->SetString(spec, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(text, &v)) return bad();
      r->SetInt32(spec, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) return bad();
      r->SetInt64(spec, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(text, &v)) return bad();
      r->SetUInt32(spec, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(text, &v)) return bad();
      r->SetUInt64(spec, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(text, &v)) return bad();
      r->SetDouble(spec, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      float v;
      if (!absl::SimpleAtof(text, &v)) return bad();
      r->SetFloat(spec, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(text, &v)) return bad();
      r->SetBool(spec, field, v);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("--", field->name(), ": no flag"));
  }
}

}  // namespace

std::vector<std::string> SpecFlagNames() {
  std::vector<std::string> names;
  const google::protobuf::Descriptor* d = JobSpec::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    if (HasFlag(d->field(i))) names.push_back(d->field(i)->name());
  }
  return names;
}

absl::StatusOr<JobSpec> BuildJobSpec(const std::string& spec_file,
                                     const std::map<std::string, std::string>& overrides) {
  JobSpec spec;
  if (!spec_file.empty()) {
    auto text = ReadText(spec_file, "--spec");
    if (!text.ok()) return text.status();
    auto st = google::protobuf::util::JsonStringToMessage(*text, &spec);
    if (!st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--spec ", spec_file, ": ", st.ToString()));
    }
  }
  const google::protobuf::Descriptor* d = JobSpec::descriptor();
  for (const auto& [name, text] : overrides) {
    const FieldDescriptor* field = d->FindFieldByName(name);
    if (field == nullptr || !HasFlag(field)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": not a JobSpec field"));
    }
    if (absl::Status s = SetField(&spec, field, text); !s.ok()) return s;
  }
  return spec;
}

}  // namespace nas
