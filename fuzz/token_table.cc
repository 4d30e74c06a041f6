// TokenTable::Parse and Find (coordinator/token_auth.h): the tokens file (the Kubernetes Secret)
// and the bearer tokens looked up in it.
#include "coordinator/token_auth.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = nas::fuzz::Text(data, size);
  absl::StatusOr<nas::TokenTable> t = nas::TokenTable::Parse(text, "tokens");
  if (!t.ok()) return 0;
  // Every token of a table that parsed is found again, as the identity of its own line.
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::vector<absl::string_view> f =
        absl::StrSplit(absl::StripAsciiWhitespace(line), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() < 3 || f[0][0] == '#') continue;
    const nas::Identity* who = t->Find(f[0]);
    if (who == nullptr || who->user != f[1] || who->tenant != f[2]) __builtin_trap();
  }
  (void)t->Find(text);
  return 0;
}
