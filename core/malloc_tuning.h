// glibc's allocator, set for processes that run LibTorch steps on the CPU (`nas`, `nas_worker`).
//
// By default glibc serves every block above its mmap threshold (128 KiB, rising to at most
// 32 MiB) with a fresh mmap and unmaps it when freed, and trims the heap's free top above 128 KiB.
// A search step allocates and frees about a gigabyte of activations and gradients, many larger
// than 32 MiB, so every step faulted all of it in again, a page at a time: 3.4-5.2 M minor page
// faults and 32-48 s of system time in a 60 s search (bench/RESULTS.md, "glibc's allocator and
// the search"). Here blocks come from the heap (M_MMAP_MAX 0) and freed memory stays in it for
// the next step (no trimming; M_TOP_PAD 256 MiB): the same searches ran 1.8x (in memory) and 2.1x
// (streamed) as fast, with 1.3 M faults, and the same peak resident set. This covers the main
// arena (the thread that runs the steps); a block over 64 MiB asked for on another thread is
// still mmapped (glibc's per-thread heaps are 64 MiB at most). The cost: freed memory stays with
// the process until ReleaseFreeHeap (a worker calls it when it has been idle a while).
//
//   int main(...) { nas::TuneMallocForTensors(); ... }
#pragma once

#include <string>
#include <vector>

namespace nas {

// What the environment says of glibc's allocator: "" when nothing, else the first variable that
// sets it (any MALLOC_* variable, or GLIBC_TUNABLES with a glibc.malloc. tunable), e.g.
// "MALLOC_ARENA_MAX".
std::string MallocSetBy(const std::vector<std::string>& environment);

// Sets the allocator as above, unless the process's environment sets it (the user's choice
// wins). Returns a line for the log saying which. Call first thing in main.
std::string TuneMallocForTensors();

// Hands the free memory of glibc's heaps back to the system (malloc_trim). True if any was.
bool ReleaseFreeHeap();

}  // namespace nas
