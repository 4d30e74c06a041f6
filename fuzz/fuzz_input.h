// Helpers shared by the fuzz targets (fuzz/README.md): the input as text, and a check that
// aborts (a crash libFuzzer reports) when an invariant of a parser's output does not hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace nas::fuzz {

inline std::string Text(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// Aborts with `what` when `ok` is false: an input the parser accepted broke an invariant.
inline void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant failed: %s\n", what);
    std::abort();
  }
}

}  // namespace nas::fuzz
