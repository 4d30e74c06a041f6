// A submitted job spec: the JobSpec message as gRPC decodes it (binary protobuf) or as it comes
// from JSON (protobuf's JsonStringToMessage, what the Python client and nasctl's --spec read),
// then NormalizeJobSpec and JobSearchSpace (coordinator/job_spec.h) when this build has them.
// The first input byte picks the encoding.
#include <google/protobuf/util/json_util.h>

#include "fuzz/fuzz_input.h"
#include "nas/search.pb.h"
#ifdef NAS_FUZZ_HAVE_JOB_SPEC
#include "coordinator/job_spec.h"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  nas::JobSpec spec;
  if (data[0] % 2 == 0) {
    if (!spec.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  } else {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    if (!google::protobuf::util::JsonStringToMessage(nas::fuzz::Text(data + 1, size - 1), &spec,
                                                     options)
             .ok()) {
      return 0;
    }
  }
#ifdef NAS_FUZZ_HAVE_JOB_SPEC
  absl::StatusOr<nas::JobSpec> normal = nas::NormalizeJobSpec(spec);
  if (!normal.ok()) return 0;
  absl::StatusOr<nas::JobSpec> twice = nas::NormalizeJobSpec(*normal);
  nas::fuzz::Require(twice.ok(), "a normalised spec normalises again");
  (void)nas::JobSearchSpace(*normal);
#endif
  return 0;
}
