// Process-wide CPU runtime settings for LibTorch work; call once at start-up (main, tests,
// benchmarks) before any tensor is allocated.
//
// Why: LibTorch's CPU convolutions allocate and free activation-sized buffers (MBs) on every
// call. glibc serves those with fresh mmap()s by default, so each call page-faults its memory
// in again; on small VMs that made depthwise convolutions up to 100x slower and erratic.
// Keeping freed memory in the heap (high mmap/trim thresholds) removes that. Channels-last
// tensors (see ops.h) pick oneDNN's fast depthwise kernels.
#pragma once

namespace nas {

// Also: OpenBLAS (the BLAS of Debian's LibTorch) runs one thread, called from LibTorch's OpenMP
// threads; with its own pool beside them the 2-core search ran ~26% slower (its threads spin
// after each call on the same cores; bench/RESULTS.md).
//
// Raises glibc's mmap and trim thresholds; sets intra-op threads (0: all cores) and OpenBLAS's
// threads (1).
void ConfigureCpuRuntime(int threads = 0);

}  // namespace nas
