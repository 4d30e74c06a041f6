// LatencyTable::ParseYaml (core/latency_table.h): the reference's latency tables
// (mobile_trim.yaml), imported with `latency_ctl put` and `nas latency-check`.
#include "core/latency_table.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nas::LatencyTable> t =
      nas::LatencyTable::ParseYaml(nas::fuzz::Text(data, size), "fuzz-device");
  if (!t.ok()) return 0;
  (void)nas::LatencyTable::ParseJson(t->ToJson());
  return 0;
}
