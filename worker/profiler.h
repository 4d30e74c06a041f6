// The layer profiler: times layers on the device it runs on and writes a LatencyTable.
//
// Layer keys describe their layer completely (ProxylessNAS grammar), so the profiler builds
// each layer from its key: Conv (stem) and Conv_1 (feature mix) as conv-BN-ReLU6, expanded_conv
// as an MBConv (plus the identity add when idskip:1), Logits as pool + linear. Each layer runs
// in inference mode on a random input of the recorded batch size: `warmup` untimed runs, then
// `repeats` timed runs; the fastest and slowest quarter are dropped (a stalled OpenMP thread on a
// shared core otherwise dominates) and the middle half gives mean and
// variance (ms). Every layer is timed in `passes` interleaved passes (all layers in order, then all
// again in a shuffled order, ...) and keeps its median pass, so a slow phase of the machine
// lasting a few seconds moves one pass of a layer, not its entry.
// A timing whose middle-half mean exceeds 1.5x its fastest run was dominated by
// stalls (another process held a core for more than a quarter of the runs: a 0.05 ms layer then
// reads 3 ms) and is re-timed, up to 3 more times; the first clean timing is kept, else the
// lowest of them.
//
// Calibration: per-layer times miss what a whole network costs beyond its layers. ProfileSpace
// therefore also measures `calibration_networks` networks sampled from the space (spanning its
// layer counts) end to end (same protocol, passes included) and fits the table's LatencyCalibration
// (core/latency_table.h: overhead, optionally per layer, least squares), so that layer sum +
// correction predicts a network.
//
//   ProfileOptions o;  o.threads = 2;  o.device = "x86-2core";
//   // Layers and calibration:
//   NAS_ASSIGN_OR_RETURN(LatencyTable t, ProfileSpace(space, o, nullptr));
//   // Layers only:
//   NAS_ASSIGN_OR_RETURN(LatencyTable t, ProfileKeys(space.AllLayerKeys(), o, nullptr));
//   NAS_ASSIGN_OR_RETURN(LatencyEntry e, MeasureNetwork(net_config, o));
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/latency_table.h"
#include "core/network_config.h"
#include "core/search_space.h"

namespace nas {

struct ProfileOptions {
  // Device name recorded in the table (the latency service's key for it).
  std::string device = "local-cpu";
  // "cpu" or "cuda" (GPU 0; each timed run ends with a device synchronisation, so a layer's time
  // is its kernels' on the GPU, not their launch). Default "cpu".
  std::string backend = "cpu";
  // Batch size of the timed inputs. Default 1 (single-image latency).
  int batch_size = 1;
  // Intra-op threads; 0 keeps LibTorch's setting. Default 0.
  int threads = 0;
  // Untimed runs before timing. Default 10.
  int warmup = 10;
  // Timed runs per layer. Default 50.
  int repeats = 50;
  // Networks of the space measured end to end by ProfileSpace to fit the table's calibration;
  // 0 writes no calibration. Default 20.
  int calibration_networks = 20;
  // A calibration that misses some network by more than this (percent) is not kept: the table
  // then predicts plain layer sums. Default 50.
  double max_calibration_error_pct = 50.0;
  // Re-timings of a stall-dominated timing before the lowest one is kept. Default 3.
  int max_retimes = 3;
  // Layers, and whole networks (calibration, `nas latency-check`), are timed in this many passes
  // over all of them, and each keeps its median pass: a slow phase of the machine lasting
  // seconds then moves one pass of what it covers, not the result. Default 3.
  int passes = 3;
  uint64_t seed = 0;
};

// How often a timing was repeated, and how much CPU other processes used during the kept one
// (Linux /proc/stat minus this process, steal included, in cores averaged over the timed runs;
// 0 where unreadable). Counted in 10 ms clock ticks, so one short window is coarse (an idle
// machine can read 0.3 over 60 ms); averages over many windows are what to read.
struct TimingReport {
  int retimed = 0;        // timings repeated because stalls dominated them
  double window_ms = 0;   // wall time of the kept timing's timed runs
  double others_cpu = 0;  // cores used by other processes meanwhile
};
// Adds `t` to `sum`: re-timings and windows add up, others' cores are averaged weighted by
// window.
void AddTiming(const TimingReport& t, TimingReport* sum);

// How undisturbed a profile was: timings taken while other processes used this machine's cores
// are slower than the table should say, so `nas profile` warns above kBusyMachineCores.
struct ProfileReport {
  double layers_others_cpu = 0;    // cores other processes used while the layers were timed
  double networks_others_cpu = 0;  // ... while the calibration networks were timed
  int retimed = 0;                 // timings repeated because stalls dominated them
  int calibration_attempts = 0;    // times the calibration networks were measured
  bool calibration_steady = false; // the kept fit had no outliers and no network off by > 10%
};
inline constexpr double kBusyMachineCores = 0.25;

// Times every key (in options.passes passes); progress(i, n, key) after each timing.
absl::StatusOr<LatencyTable> ProfileKeys(
    const std::vector<std::string>& keys, const ProfileOptions& options,
    const std::function<void(int, int, const std::string&)>& progress,
    ProfileReport* report = nullptr);

// End-to-end latency of a whole network (same protocol as layers); `report`, if given, says
// what other processes took meanwhile.
absl::StatusOr<LatencyEntry> MeasureNetwork(const NetworkConfig& net,
                                            const ProfileOptions& options,
                                            TimingReport* report = nullptr);

// Each network measured end to end in options.passes interleaved passes (pass 1 over all
// networks in order, then pass 2 in a shuffled order, ...); each network's entry is its median pass
// (by mean), and its report adds up its passes (re-timings, windows; others' cores weighted by
// window). progress(i, n) after each timing (n = networks x passes).
absl::StatusOr<std::vector<LatencyEntry>> MeasureNetworks(
    const std::vector<NetworkConfig>& nets, const ProfileOptions& options,
    std::vector<TimingReport>* reports, const std::function<void(int, int)>& progress = nullptr);

// Measures options.calibration_networks networks sampled from `space` end to end and sets
// table->info().calibration from them (FitCalibration). When the fit looks disturbed (networks
// left out as outliers, or one off the fit by more than 10%) the same networks are measured
// again, up to 3 times in all, and the steadiest fit is kept (ProfileReport says which). The networks are stratified by size:
// network i skips i mod (S + 1) of the S edges that have a Zero candidate (which ones at random),
// the other edges take a non-Zero candidate uniformly at random; the random stream is
// options.seed's but not `nas latency-check`'s. Every layer of those networks must be in the
// table. progress(i, n) after each network.
absl::Status CalibrateTable(const SearchSpace& space, const ProfileOptions& options,
                            LatencyTable* table, const std::function<void(int, int)>& progress,
                            ProfileReport* report = nullptr);

// The timings ProfileSpace reports progress for: every key and calibration network, per pass.
int ProfileSteps(const SearchSpace& space, const ProfileOptions& options);

// ProfileKeys(space.AllLayerKeys()) then, unless options.calibration_networks is 0,
// CalibrateTable. progress(i, n, what) after each layer and each network (n counts both).
absl::StatusOr<LatencyTable> ProfileSpace(
    const SearchSpace& space, const ProfileOptions& options,
    const std::function<void(int, int, const std::string&)>& progress,
    ProfileReport* report = nullptr);

// "" for an undisturbed profile, else a warning naming what was disturbed and by how much.
std::string ProfileWarning(const ProfileReport& report);

// The protocol, recorded as the table's `method`; a cached table is reused only when it matches.
std::string ProfileMethod(const ProfileOptions& options);

// The device name a table records: options.device, except that a CUDA profile under the
// default name ("local-cpu") is named after the GPU ("cuda-NVIDIA-H100-80GB-HBM3"; "cuda" in a
// build without NAS_TORCH_CUDA), so that `nas profile --backend cuda` writes a GPU table.
std::string ProfileDeviceName(const ProfileOptions& options);

// "libtorch-cpu 1.13.1, 2 threads", "libtorch-cuda 2.9.0, 16 threads, NVIDIA H200,
// cudnn.benchmark" etc.
std::string RuntimeDescription(const ProfileOptions& options);

}  // namespace nas
