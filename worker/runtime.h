// Process-wide runtime settings for LibTorch work; call once at start-up (main, tests,
// benchmarks) before any tensor is allocated.
//
// Why (CPU): LibTorch's CPU convolutions allocate and free activation-sized buffers (MBs) on
// every call. glibc serves those with fresh mmap()s by default, so each call page-faults its
// memory in again; on small VMs that made depthwise convolutions up to 100x slower and erratic.
// Keeping freed memory in the heap (high mmap/trim thresholds) removes that. Channels-last
// tensors (see ops.h) pick oneDNN's fast depthwise kernels.
//
// GPU: cuDNN either autotunes (fast; the algorithm may differ between runs) or runs
// deterministic algorithms only (the equivalence tests). The CUDA-only calls (device names,
// allocator statistics) compile only where the build defines NAS_TORCH_CUDA (CMake option
// NAS_TORCH_CUDA, a LibTorch with CUDA); elsewhere they say that CUDA is not built in.
#pragma once

#include <cstdint>
#include <string>

namespace c10 {
struct Device;
}

namespace nas {

// Raises glibc's mmap and trim thresholds; sets intra-op threads (0: all cores).
void ConfigureCpuRuntime(int threads = 0);

// cuDNN: deterministic algorithms and no autotuning when `deterministic`, else autotuning
// (cudnn.benchmark) on. Harmless without a GPU.
void ConfigureDeviceRuntime(bool deterministic);

// "cpu (N threads)" or the GPU's name and memory, e.g. "NVIDIA H100 80GB HBM3, 79 GiB,
// compute 9.0".
std::string DeviceDescription(const c10::Device& device);

// The GPU's name ("NVIDIA H100 80GB HBM3"); "" for the CPU or a build without NAS_TORCH_CUDA.
std::string CudaDeviceName(int index);

// The CUDA caching allocator's statistics of a device (bytes), for memory tests and benchmarks.
struct CudaMemoryStats {
  bool available = false;  // false: a build without NAS_TORCH_CUDA, or no GPU
  int64_t allocated = 0;       // now
  int64_t peak_allocated = 0;  // since the last ResetCudaPeak
};
CudaMemoryStats CudaMemory(int index);
void ResetCudaPeak(int index);

}  // namespace nas
