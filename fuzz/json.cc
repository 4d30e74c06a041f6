// nas::ParseJson (core/json_fields.h): every JSON document we read goes through it; then the
// typed getters on whatever it returns.
#include "core/json_fields.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nas::Json> j = nas::ParseJson(nas::fuzz::Text(data, size), "fuzz");
  if (!j.ok() || !j->is_object()) return 0;
  for (const char* key : {"a", "name", "channels"}) {
    (void)nas::GetInt(*j, "", key);
    (void)nas::GetDouble(*j, "", key);
    (void)nas::GetString(*j, "", key);
    (void)nas::GetBool(*j, "", key);
    (void)nas::GetIntList(*j, "", key);
  }
  return 0;
}
