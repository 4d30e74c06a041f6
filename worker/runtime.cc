#include "worker/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <torch/torch.h>

#include <thread>

namespace nas {

void ConfigureCpuRuntime(int threads) {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  at::set_num_threads(n < 1 ? 1 : n);
  // One BLAS thread: Debian's LibTorch calls OpenBLAS for matrix products, and OpenBLAS keeps a
  // pool of its own threads (one per core) that spin after every call on the cores LibTorch's
  // OpenMP threads use. Looked up at run time: a LibTorch on another BLAS has no such symbol.
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(1);
  }
}

}  // namespace nas
