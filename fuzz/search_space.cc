// SearchSpace::FromJson (core/search_space.h): a job's space_json, a --space file. What an
// accepted space must survive: its JSON, its layer keys, its candidates.
#include "core/search_space.h"

#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nas::SearchSpace> s = nas::SearchSpace::FromJson(nas::fuzz::Text(data, size));
  if (!s.ok()) return 0;
  std::string again = s->ToJson();
  nas::fuzz::Require(nas::SearchSpace::FromJson(again).ok(), "a space's ToJson parses back");
  (void)s->FixedLayerKeys();
  (void)s->AllLayerKeys();
  return 0;
}
