// ArchParams::FromJson and ArchAdam::FromJson (core/arch_params.h): alpha and the arch
// optimizer's state as checkpoints and results hold them.
#include "core/arch_params.h"

#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text = nas::fuzz::Text(data, size);
  absl::StatusOr<nas::ArchParams> a = nas::ArchParams::FromJson(text);
  if (a.ok()) {
    (void)a->AllProbs();
    (void)a->Argmax();
    (void)a->MeanEntropy();
    (void)nas::ArchParams::FromJson(a->ToJson());
  }
  absl::StatusOr<nas::ArchAdam> adam = nas::ArchAdam::FromJson(text);
  if (adam.ok()) (void)nas::ArchAdam::FromJson(adam->ToJson());
  return 0;
}
