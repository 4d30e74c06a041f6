// NetworkConfig::FromReferenceJson (core/network_config.h): the reference's network configs
// (`nas latency-check --net`, exports read back), and what is computed from an accepted one.
#include "core/network_config.h"

#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nas::NetworkConfig> n =
      nas::NetworkConfig::FromReferenceJson(nas::fuzz::Text(data, size), 32, 32);
  if (!n.ok()) return 0;
  (void)n->Validate();
  (void)n->LayerKeys();
  (void)n->ParameterCount();
  (void)n->Macs();
  (void)nas::NetworkConfig::FromReferenceJson(n->ToReferenceJson(), 32, 32);
  return 0;
}
