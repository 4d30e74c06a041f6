// `nas latency-check`: calibration of a latency service's predictions against end-to-end
// measurements on this machine.
//
// Samples N architectures of a space (each edge's candidate uniform at random, seeded), asks the
// service for every layer of each network in one batch Query, sums them (the prediction a search
// optimises), measures the whole network here with the profiler's protocol
// (worker/profiler.h MeasureNetwork), and reports per network and in total: RMSE (ms), mean
// absolute percentage error, mean signed error, and the share of networks within +-10% and +-5%.
// The profiler's threads default to the device table's, so the measurement matches the set-up
// the table was profiled with.
//
// A sum of per-layer times misses what a whole network does between its layers; when that is a
// constant per-network overhead the raw error is a steady bias. So the report also fits that
// overhead (mean of measured - predicted over the even-numbered samples) and scores the
// odd-numbered samples with it added: held-out figures of "layer sum + overhead".
//
//   LatencyCheckOptions o;  o.latency_service = "localhost:50052";  o.device = "local-cpu";
//   NAS_ASSIGN_OR_RETURN(LatencyCheckReport r, RunLatencyCheck(o));
//   std::printf("%s", FormatLatencyCheck(r).c_str());
#pragma once

#include <cstdint>
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
  // How networks are measured here; threads 0 takes the device table's threads.
  // Default ProfileOptions{}.
  ProfileOptions profile;
};

struct LatencyCheckSample {
  std::vector<std::string> choices;  // candidate names per edge
  double predicted_ms = 0;
  int predicted_keys = 0;  // layers the service predicted rather than measured
  double measured_ms = 0;
  double measured_std_ms = 0;
};

struct LatencyCheckReport {
  std::string device;
  std::string space;
  int threads = 0;
  std::vector<LatencyCheckSample> samples;
  double rmse_ms = 0;
  double mape = 0;        // percent
  double mean_error = 0;  // percent, signed: (predicted - measured) / measured
  double within_10 = 0;   // share in [0, 1]
  double within_5 = 0;
  // Layer sum + a per-network overhead fitted on the even-numbered samples, scored on the
  // odd-numbered ones (at least 2 samples; otherwise heldout_samples is 0).
  double overhead_ms = 0;
  int heldout_samples = 0;
  double corrected_mape = 0;       // percent
  double corrected_within_10 = 0;  // share in [0, 1]
  double corrected_within_5 = 0;
};

// Errors: InvalidArgument naming the option; the service's errors (unknown device, a key it
// cannot answer); the profiler's.
absl::StatusOr<LatencyCheckReport> RunLatencyCheck(const LatencyCheckOptions& options);

// A markdown table of the samples and the summary lines.
std::string FormatLatencyCheck(const LatencyCheckReport& report);

}  // namespace nas
