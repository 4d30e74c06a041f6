#include "core/malloc_tuning.h"

#include <malloc.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace nas {

std::string MallocSetBy(const std::vector<std::string>& environment) {
  for (const std::string& e : environment) {
    const std::string name = e.substr(0, e.find('='));
    // glibc reads MALLOC_ARENA_MAX and MALLOC_ARENA_TEST, and MALLOC_..._ for the others.
    if (absl::StartsWith(name, "MALLOC_")) return name;
    if (name == "GLIBC_TUNABLES" && absl::StrContains(e, "glibc.malloc.")) return name;
  }
  return "";
}

std::string TuneMallocForTensors() {
  std::vector<std::string> environment;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) environment.emplace_back(*e);
  if (const std::string by = MallocSetBy(environment); !by.empty()) {
    return absl::StrCat("allocator: glibc's as ", by, " sets it");
  }
  // mallopt returns 1 on success. -1 as M_TRIM_THRESHOLD turns trimming off (mallopt(3)).
  const bool ok = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 &&
                  mallopt(M_TOP_PAD, 256 << 20) == 1;
  return ok ? "allocator: glibc, blocks kept in the heap for reuse (no mmap, no trimming)"
            : "allocator: glibc's defaults (mallopt refused the settings)";
}

bool ReleaseFreeHeap() { return malloc_trim(0) == 1; }

}  // namespace nas
