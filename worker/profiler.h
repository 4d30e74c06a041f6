// The layer profiler: times layers on the device it runs on and writes a LatencyTable.
//
// Layer keys describe their layer completely (ProxylessNAS grammar), so the profiler builds
// each layer from its key: Conv (stem) and Conv_1 (feature mix) as conv-BN-ReLU6, expanded_conv
// as an MBConv (plus the identity add when idskip:1), Logits as pool + linear. Each layer runs
// in inference mode on a random input of the recorded batch size: `warmup` untimed runs, then
// `repeats` timed runs; the fastest and slowest quarter are dropped (a stalled OpenMP thread on a
// shared core otherwise dominates) and the middle half gives mean and
// variance (ms).
//
//   ProfileOptions o;  o.threads = 2;  o.device = "x86-2core";
//   NAS_ASSIGN_OR_RETURN(LatencyTable t, ProfileKeys(space.AllLayerKeys(), o, nullptr));
//   NAS_ASSIGN_OR_RETURN(LatencyEntry e, MeasureNetwork(net_config, o));
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/latency_table.h"
#include "core/network_config.h"

namespace nas {

struct ProfileOptions {
  // Device name recorded in the table (the latency service's key for it).
  std::string device = "local-cpu";
  // "cpu" or "cuda" (CUDA timings synchronise around each run). Default "cpu".
  std::string backend = "cpu";
  // Batch size of the timed inputs. Default 1 (single-image latency).
  int batch_size = 1;
  // Intra-op threads; 0 keeps LibTorch's setting. Default 0.
  int threads = 0;
  // Untimed runs before timing. Default 10.
  int warmup = 10;
  // Timed runs per layer. Default 50.
  int repeats = 50;
  uint64_t seed = 0;
};

// Times every key; progress(i, n, key) after each.
absl::StatusOr<LatencyTable> ProfileKeys(
    const std::vector<std::string>& keys, const ProfileOptions& options,
    const std::function<void(int, int, const std::string&)>& progress);

// End-to-end latency of a whole network (same protocol as layers).
absl::StatusOr<LatencyEntry> MeasureNetwork(const NetworkConfig& net,
                                            const ProfileOptions& options);

// The protocol, recorded as the table's `method`; a cached table is reused only when it matches.
std::string ProfileMethod(const ProfileOptions& options);

// "libtorch-cpu 1.13.1, 2 threads" etc.
std::string RuntimeDescription(const ProfileOptions& options);

}  // namespace nas
