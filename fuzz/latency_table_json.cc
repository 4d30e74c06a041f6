// LatencyTable::ParseJson (core/latency_table.h): our latency table files with their provenance
// and calibration (the profiler's output, uploads to the latency service, job records).
#include "core/latency_table.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nas::LatencyTable> t = nas::LatencyTable::ParseJson(nas::fuzz::Text(data, size));
  if (!t.ok()) return 0;
  std::vector<std::string> keys;
  for (const auto& [key, entry] : t->entries()) keys.push_back(key);
  (void)t->PredictNetwork(keys);
  (void)nas::LatencyTable::ParseJson(t->ToJson());
  return 0;
}
