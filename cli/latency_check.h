// `nas latency-check`: calibration of a latency service's predictions against end-to-end
// measurements on this machine.
//
// Samples N architectures of a space (each edge's candidate uniform at random, seeded), asks the
// service for every layer of each network in one batch Query, sums them (the prediction a search
// optimises), measures the whole networks here with the profiler's calibration protocol
// (worker/profiler.h MeasureNetworks: interleaved passes over all of them, each network's median
// pass kept, so that a slow phase of the machine lasting seconds moves one pass, not the
// result), and reports per network and in total: RMSE (ms), mean
// absolute percentage error, mean signed error, and the share of networks within +-10% and +-5%.
// The profiler's threads default to the device table's, so the measurement matches the set-up
// the table was profiled with.
//
// A sum of per-layer times misses what a whole network does between its layers; the device's
// table carries a whole-network calibration for that (core/latency_table.h LatencyCalibration,
// fitted by `nas profile` on other sampled networks), reported by ListDevices. The prediction of
// a network is its layer sum plus that correction; the report scores both the plain layer sum
// ("before") and the calibrated prediction ("after") against the same measurements. A table
// without calibration is scored on the layer sum alone.
//
// A shared machine's speed drifts (this development VM's by up to ~1.5x within minutes), and a
// table profiled at one speed then mispredicts every network at another. The check re-times
// `probe_layers` of the table's measured layers before and after the networks and reports the
// ratio to the table's times (and warns beyond +-10%), so that a miss can be told apart from a
// wrong table. It is a sign, not a correction: isolated layers and whole networks do not always
// drift together here (layers at 0.92x while the networks ran 3% slower than predicted), so the
// predictions are never rescaled by it.
//
//   LatencyCheckOptions o;  o.latency_service = "localhost:50052";  o.device = "local-cpu";
//   NAS_ASSIGN_OR_RETURN(LatencyCheckReport r, RunLatencyCheck(o));
//   std::printf("%s", FormatLatencyCheck(r).c_str());
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/profiler.h"

namespace nas {

struct LatencyCheckOptions {
  // host:port of the latency service. Required; default "".
  std::string latency_service;
  // Device whose table (and predictor) answers. Default "local-cpu".
  std::string device = "local-cpu";
  // Search space the networks are sampled from: preset or JSON file. Default "fashion-mnist".
  std::string space = "fashion-mnist";
  // Networks sampled. Default 20.
  int samples = 20;
  // Seed of the sampling. Default 0.
  uint64_t seed = 0;
  // Layers of the table re-timed before and after the networks (the machine's speed against
  // the table's); 0: none. Default 8.
  int probe_layers = 8;
  // How networks are measured here; threads 0 takes the device table's threads.
  // Default ProfileOptions{}.
  ProfileOptions profile;
};

struct LatencyCheckSample {
  std::vector<std::string> choices;  // candidate names per edge
  int layers = 0;                    // layer keys of the network
  double layer_sum_ms = 0;           // sum of the service's per-layer answers
  double predicted_ms = 0;           // layer_sum_ms + the table's calibration correction
  int predicted_keys = 0;  // layers the service predicted rather than measured
  double measured_ms = 0;
  double measured_std_ms = 0;
  TimingReport timing;  // re-timings and what other processes took (worker/profiler.h)
};

// Errors of predictions against the measurements.
struct LatencyErrorStats {
  double rmse_ms = 0;
  double mape = 0;        // percent
  double mean_error = 0;  // percent, signed: (predicted - measured) / measured
  double mean_error_ms = 0;
  double within_10 = 0;   // share in [0, 1]
  double within_5 = 0;
};

struct LatencyCheckReport {
  std::string device;
  std::string space;
  int threads = 0;
  int passes = 0;  // each network measured in this many interleaved passes, median kept
  // The device table's calibration as the service reports it; absent: none.
  std::optional<LatencyCalibration> calibration;
  std::vector<LatencyCheckSample> samples;
  // Cores other processes used while the networks were timed (window-weighted mean of the
  // samples' TimingReport::others_cpu): 0 on an otherwise idle machine.
  double others_cpu = 0;
  LatencyErrorStats layer_sum;  // the plain per-layer sum (before calibration)
  LatencyErrorStats predicted;  // layer sum + calibration (what a search optimises)
  // The machine's speed against the table's: the median over `probe_layers` measured layers of
  // the sampled networks of (their time re-measured now / the table's), before and after the
  // networks are measured. ~1 when the machine runs as it did when profiled.
  int probe_layers = 0;
  double speed_before = 0;
  double speed_after = 0;
};

// Errors: InvalidArgument naming the option; the service's errors (unknown device, a key it
// cannot answer); the profiler's.
absl::StatusOr<LatencyCheckReport> RunLatencyCheck(const LatencyCheckOptions& options);

// A markdown table of the samples and the summary lines.
std::string FormatLatencyCheck(const LatencyCheckReport& report);

}  // namespace nas
