#include "worker/runtime.h"

#include <malloc.h>
#include <torch/torch.h>

#include <thread>

#include "absl/strings/str_cat.h"

#ifdef NAS_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace nas {

void ConfigureCpuRuntime(int threads) {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(n < 1 ? 1 : n);
}

void ConfigureDeviceRuntime(bool deterministic) {
  at::globalContext().setDeterministicCuDNN(deterministic);
  at::globalContext().setBenchmarkCuDNN(!deterministic);
}

std::string CudaDeviceName(int index) {
#ifdef NAS_TORCH_CUDA
  cudaDeviceProp p;
  if (index < 0) index = 0;
  if (torch::cuda::is_available() && cudaGetDeviceProperties(&p, index) == cudaSuccess) {
    return p.name;
  }
#else
  (void)index;
#endif
  return "";
}

std::string DeviceDescription(const c10::Device& device) {
  if (!device.is_cuda()) return absl::StrCat("cpu (", at::get_num_threads(), " threads)");
#ifdef NAS_TORCH_CUDA
  cudaDeviceProp p;
  int index = device.has_index() ? device.index() : 0;
  if (cudaGetDeviceProperties(&p, index) == cudaSuccess) {
    return absl::StrCat(p.name, ", ", p.totalGlobalMem >> 30, " GiB, compute ", p.major, ".",
                        p.minor);
  }
  return absl::StrCat("cuda:", index);
#else
  return absl::StrCat(device.str(), " (this build has no NAS_TORCH_CUDA: no device details)");
#endif
}

CudaMemoryStats CudaMemory(int index) {
  CudaMemoryStats s;
#ifdef NAS_TORCH_CUDA
  if (!torch::cuda::is_available()) return s;
  using c10::cuda::CUDACachingAllocator::getDeviceStats;
  const auto stats = getDeviceStats(index < 0 ? 0 : index);
  constexpr size_t kAll = 0;  // StatType::AGGREGATE
  s.available = true;
  s.allocated = stats.allocated_bytes[kAll].current;
  s.peak_allocated = stats.allocated_bytes[kAll].peak;
#else
  (void)index;
#endif
  return s;
}

void ResetCudaPeak(int index) {
#ifdef NAS_TORCH_CUDA
  if (!torch::cuda::is_available()) return;
  c10::cuda::CUDACachingAllocator::resetPeakStats(index < 0 ? 0 : index);
#else
  (void)index;
#endif
}

}  // namespace nas
