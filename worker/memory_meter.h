// Counts bytes that LibTorch allocates on the CPU: current and peak since the last Reset.
//
//   MemoryMeter::Install();            // once, before the tensors to be counted exist
//   MemoryMeter::Reset();
//   ... a weight step ...
//   int64_t peak = MemoryMeter::Peak() - MemoryMeter::AtReset();
//
// Wraps c10's CPU allocator (c10::SetCPUAllocator), so it sees every CPU tensor buffer.
// Thread-safe (atomics and a mutex around the size map).
#pragma once

#include <cstdint>

namespace nas {

class MemoryMeter {
 public:
  static void Install();
  static void Reset();            // peak := current
  static int64_t Current();
  static int64_t Peak();
  static int64_t AtReset();       // current at the last Reset
  static int64_t Allocations();   // number of allocations since install
};

}  // namespace nas
