// LayerKey::Parse (core/latency_table.h): the layer key grammar of latency tables and queries.
#include "core/latency_table.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nas::LayerKey> k = nas::LayerKey::Parse(nas::fuzz::Text(data, size));
  if (!k.ok()) return 0;
  (void)nas::LayerKey::Parse(k->ToString());
  return 0;
}
