#include "worker/runtime.h"

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
}

}  // namespace nas
