// Architecture::FromJson and FromReferenceConfig (core/architecture.h) against a preset space:
// `nas train --arch`, results read back.
#include "core/architecture.h"

#include "core/search_space.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nas::SearchSpace* space =
      new nas::SearchSpace(*nas::SearchSpace::Preset("fashion-mnist"));
  std::string text = nas::fuzz::Text(data, size);
  absl::StatusOr<nas::Architecture> a = nas::Architecture::FromJson(text, *space);
  if (a.ok()) {
    (void)a->ToString(*space);
    absl::StatusOr<nas::Architecture> b = nas::Architecture::FromJson(a->ToJson(*space), *space);
    nas::fuzz::Require(b.ok() && *b == *a, "an architecture's ToJson parses back to itself");
  }
  (void)nas::Architecture::FromReferenceConfig(text, *space);
  return 0;
}
