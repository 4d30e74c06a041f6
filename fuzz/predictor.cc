// LatencyPredictor::FromJson (latency_service/predictor.h): the latency service's stored
// predictors (fitted per device table) as it reads them back at start.
#include "latency_service/predictor.h"

#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nas::LatencyPredictor> p =
      nas::LatencyPredictor::FromJson(nas::fuzz::Text(data, size));
  if (!p.ok()) return 0;
  for (const char* key :
       {"Conv_1-input:7x7x320-output:7x7x1280", "Logits-input:7x7x1280-output:1000",
        "expanded_conv-input:28x28x40-output:28x28x40-expand:3-kernel:5-stride:1-"
        "idskip:1"}) {
    absl::StatusOr<nas::LayerKey> k = nas::LayerKey::Parse(key);
    if (k.ok()) (void)p->Predict(*k);
  }
  (void)nas::LatencyPredictor::FromJson(p->ToJson());
  return 0;
}
