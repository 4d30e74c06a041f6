// core/malloc_tuning.h: the environment wins; with the tuning a large block comes from the heap
// (not an mmap) and a freed one is reused without faulting its pages in again; ReleaseFreeHeap
// gives the heap's free memory back. Counted (mallinfo2, getrusage), not timed. The allocator's
// settings are the whole process's, so each check runs in a child process of its own.
#include "core/malloc_tuning.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace nas {
namespace {

TEST(MallocTuningTest, TheEnvironmentsSettingsWin) {
  EXPECT_EQ(MallocSetBy({}), "");
  EXPECT_EQ(MallocSetBy({"HOME=/root", "MALLOC=1", "OMP_NUM_THREADS=2"}), "");
  EXPECT_EQ(MallocSetBy({"HOME=/root", "MALLOC_ARENA_MAX=2"}), "MALLOC_ARENA_MAX");
  EXPECT_EQ(MallocSetBy({"MALLOC_MMAP_THRESHOLD_=33554432"}), "MALLOC_MMAP_THRESHOLD_");
  EXPECT_EQ(MallocSetBy({"GLIBC_TUNABLES=glibc.malloc.trim_threshold=1"}), "GLIBC_TUNABLES");
  EXPECT_EQ(MallocSetBy({"GLIBC_TUNABLES=glibc.pthread.rseq=0"}), "");
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NAS_OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NAS_OWN_ALLOCATOR 1
#endif
#endif

#ifndef NAS_OWN_ALLOCATOR
constexpr size_t kBytes = size_t{64} << 20;

int64_t MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// A written block of kBytes (the compiler may not drop the writes: a block written and then freed
// unread is otherwise a dead store).
char* Written(char value) {
  char* p = static_cast<char*>(std::malloc(kBytes));
  if (p == nullptr) std::_Exit(90);
  std::memset(p, value, kBytes);
  asm volatile("" : : "r"(p) : "memory");
  return p;
}

// Exits 0 when the untuned allocator mmaps a 64 MiB block and the tuned one takes it from the
// heap, reusing a freed one without a fault, and ReleaseFreeHeap then gives it back; else the
// number of the check that failed.
[[noreturn]] void CheckInThisProcess() {
  const size_t mapped = mallinfo2().hblks;
  char* untuned = Written(1);
  if (mallinfo2().hblks != mapped + 1) std::_Exit(1);  // glibc's default: its own mmap
  std::free(untuned);
  if (TuneMallocForTensors() !=
      "allocator: glibc, blocks kept in the heap for reuse (no mmap, no trimming)") {
    std::_Exit(2);
  }
  char* first = Written(2);
  if (mallinfo2().hblks != mapped) std::_Exit(3);  // from the heap
  std::free(first);
  const int64_t before = MinorFaults();
  char* second = Written(3);  // the first block's pages again
  if (MinorFaults() - before >= 64) std::_Exit(4);
  std::free(second);
  const size_t heap = mallinfo2().arena;
  if (!ReleaseFreeHeap() || mallinfo2().arena + kBytes / 2 > heap) std::_Exit(5);
  std::_Exit(0);
}
#endif

TEST(MallocTuningTest, LargeBlocksComeFromTheHeapAndAreReusedWithoutFaults) {
#ifdef NAS_OWN_ALLOCATOR
  GTEST_SKIP() << "a sanitizer's allocator replaces glibc's here";
#else
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) environment.emplace_back(*e);
  if (const std::string by = MallocSetBy(environment); !by.empty()) {
    GTEST_SKIP() << by << " in the environment sets the allocator";
  }
  // Exit codes: 1 untuned block not mmapped, 2 tuning refused, 3 tuned block mmapped, 4 the
  // reused block faulted, 5 nothing released.
  EXPECT_EXIT(CheckInThisProcess(), testing::ExitedWithCode(0), "");
#endif
}

}  // namespace
}  // namespace nas
