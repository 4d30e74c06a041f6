// The JobSpec `nasctl submit` sends: the --spec file (JobSpec as JSON; unknown or mistyped
// fields are errors naming the field), then one override per field given on the command line.
// Every JobSpec field but `owner` (the coordinator sets it from the caller's token) has a flag of
// the field's own name (--batch_size, --no_baseline, ...); the values are set by reflection, so
// a field added to the .proto needs only its ABSL_FLAG in nasctl.cc.
//
//   NAS_ASSIGN_OR_RETURN(JobSpec spec, BuildJobSpec("job.json", {{"seed", "7"}}));
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nas/search.pb.h"

namespace nas {

// JobSpec fields without a flag: set by the coordinator, never taken from the request.
inline constexpr const char* kSpecFieldsWithoutFlag[] = {"owner"};

// Names of every JobSpec field a flag can set, in the .proto's order.
std::vector<std::string> SpecFlagNames();

// The spec: the JSON file `spec_file` (empty: none), then `overrides` (field name -> the flag's
// value as text: numbers, true/false; for space_json, "@FILE" reads the document from FILE).
// InvalidArgument naming the file or --field on a bad value; NotFound for an unreadable file.
absl::StatusOr<JobSpec> BuildJobSpec(const std::string& spec_file,
                                     const std::map<std::string, std::string>& overrides);

}  // namespace nas
