// core/malloc_tuning.h: the environment wins, and with the tuning a freed large block is reused
// without faulting its pages in again (counted with getrusage, not timed).
#include "core/malloc_tuning.h"

#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace nas {
namespace {

TEST(MallocTuningTest, TheEnvironmentsSettingsWin) {
  EXPECT_EQ(MallocSetBy({}), "");
  EXPECT_EQ(MallocSetBy({"HOME=/root", "MALLOC=1", "OMP_NUM_THREADS=2"}), "");
  EXPECT_EQ(MallocSetBy({"HOME=/root", "MALLOC_ARENA_MAX_=2"}), "MALLOC_ARENA_MAX_");
  EXPECT_EQ(MallocSetBy({"MALLOC_MMAP_THRESHOLD_=33554432"}), "MALLOC_MMAP_THRESHOLD_");
  EXPECT_EQ(MallocSetBy({"GLIBC_TUNABLES=glibc.malloc.trim_threshold=1"}), "GLIBC_TUNABLES");
  EXPECT_EQ(MallocSetBy({"GLIBC_TUNABLES=glibc.pthread.rseq=0"}), "");
}

int64_t MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Writes a fresh block of `bytes`; the compiler may not drop the writes (a block written and then
// freed unread is otherwise a dead store).
void WriteAndFree(size_t bytes, char value) {
  char* p = static_cast<char*>(std::malloc(bytes));
  ASSERT_NE(p, nullptr);
  std::memset(p, value, bytes);
  asm volatile("" : : "r"(p) : "memory");
  std::free(p);
}

// Faults taken while a 64 MiB block is written, after one was written and freed.
int64_t FaultsOfASecondBlock() {
  constexpr size_t kBytes = size_t{64} << 20;
  WriteAndFree(kBytes, 1);
  const int64_t before = MinorFaults();
  WriteAndFree(kBytes, 2);
  return MinorFaults() - before;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NAS_OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NAS_OWN_ALLOCATOR 1
#endif
#endif

TEST(MallocTuningTest, AFreedLargeBlockIsReusedWithoutFaultingAgain) {
#ifdef NAS_OWN_ALLOCATOR
  GTEST_SKIP() << "a sanitizer's allocator replaces glibc's here";
#else
  // Untuned (this test is the only one that tunes), the second block is a fresh mmap: 16,384
  // faults of 4 KiB pages. Tuned, it is the first block's memory again.
  const int64_t untuned = FaultsOfASecondBlock();
  const std::string line = TuneMallocForTensors();
  if (line.find("sets it") != std::string::npos) GTEST_SKIP() << line;
  EXPECT_EQ(line, "allocator: glibc, blocks kept in the heap for reuse (no mmap, no trimming)");
  EXPECT_GT(untuned, 4096);
  EXPECT_LT(FaultsOfASecondBlock(), 64);
#endif
}

}  // namespace
}  // namespace nas
