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

// Raises glibc's mmap and trim thresholds; sets intra-op threads (0: all cores).
void ConfigureCpuRuntime(int threads = 0);

}  // namespace nas
