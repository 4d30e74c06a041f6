// A job record as the coordinator reads it back from its checkpoint store at recovery
// (coordinator/job_manager.cc RecoverJob): the JobRecord message, its spec normalised and its
// space built (coordinator/job_spec.h, when this build has it), its stored latency table parsed
// and the latency model built from the two.
#include "core/latency_table.h"
#include "core/search_driver.h"
#include "core/search_space.h"
#include "fuzz/fuzz_input.h"
#include "nas/coordinator.pb.h"
#ifdef NAS_FUZZ_HAVE_JOB_SPEC
#include "coordinator/job_spec.h"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nas::JobRecord rec;
  if (!rec.ParseFromArray(data, static_cast<int>(size))) return 0;
#ifdef NAS_FUZZ_HAVE_JOB_SPEC
  (void)nas::NormalizeJobSpec(rec.spec());
  absl::StatusOr<nas::SearchSpace> space = nas::JobSearchSpace(rec.spec());
#else
  absl::StatusOr<nas::SearchSpace> space =
      rec.spec().space_json().empty() ? nas::SearchSpace::Preset(rec.spec().space())
                                      : nas::SearchSpace::FromJson(rec.spec().space_json());
#endif
  (void)nas::SearchSpace::FromJson(rec.space_json());
  absl::StatusOr<nas::LatencyTable> table = nas::LatencyTable::ParseJson(rec.latency_table_json());
  if (space.ok() && table.ok()) (void)nas::BuildLatencyModel(*space, *table);
  return 0;
}
