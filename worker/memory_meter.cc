#include "worker/memory_meter.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

namespace nas {

namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_at_reset{0};
std::atomic<int64_t> g_allocations{0};
std::mutex g_mu;
std::unordered_map<void*, size_t>* g_sizes = new std::unordered_map<void*, size_t>();

void Delete(void* p) {
  size_t n = 0;
  {
    std::lock_guard<std::mutex> l(g_mu);
    auto it = g_sizes->find(p);
    if (it != g_sizes->end()) {
      n = it->second;
      g_sizes->erase(it);
    }
  }
  g_current -= static_cast<int64_t>(n);
  c10::free_cpu(p);
}

class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) const override {
    void* p = c10::alloc_cpu(n);
    {
      std::lock_guard<std::mutex> l(g_mu);
      (*g_sizes)[p] = n;
    }
    int64_t now = g_current += static_cast<int64_t>(n);
    int64_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    ++g_allocations;
    return {p, p, &Delete, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Delete; }
};

}  // namespace

void MemoryMeter::Install() {
  static CountingAllocator* allocator = [] {
    auto* a = new CountingAllocator();
    c10::SetCPUAllocator(a, /*priority=*/100);
    return a;
  }();
  (void)allocator;
}

void MemoryMeter::Reset() {
  int64_t now = g_current.load();
  g_peak = now;
  g_at_reset = now;
}

int64_t MemoryMeter::Current() { return g_current.load(); }
int64_t MemoryMeter::Peak() { return g_peak.load(); }
int64_t MemoryMeter::AtReset() { return g_at_reset.load(); }
int64_t MemoryMeter::Allocations() { return g_allocations.load(); }

}  // namespace nas
