// Plain value types of the latency service, shared by the registry, the gRPC adapter and the
// client. No gRPC, no protobuf: these are what domain code and tests see.
//
//   LayerLatency l = answers[i];
//   if (l.source == LatencySource::kPredicted) ...   // the table lacked the key
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/latency_table.h"

namespace nas {

// Where an answer came from: the device's profiled table, or the device's fitted predictor.
enum class LatencySource { kMeasured, kPredicted };

// "measured" / "predicted": the label value used in metrics and printouts.
const char* LatencySourceName(LatencySource s);

// The latency of one layer key on one device, in milliseconds.
struct LayerLatency {
  double mean_ms = 0;
  // Measured: sqrt(var) of the table entry. Predicted: the mean x the predictor's held-out RMS
  // relative error for the key's kind (the mean itself when the kind has no error estimate).
  double std_ms = 0;
  int64_t count = 0;  // measured: timed runs behind the mean; predicted: 0
  LatencySource source = LatencySource::kMeasured;
  // Predicted only: the key lies outside the range of the entries the predictor was fitted on
  // (predictor.h), so its error is not covered by the held-out error.
  bool extrapolated = false;
};

// Held-out error of a device's predictor (see predictor.h).
struct PredictorReport {
  int64_t fitted_entries = 0;   // table entries the served predictor was fitted on
  int64_t holdout_entries = 0;  // entries held out to measure the error (0: too few to hold out)
  double holdout_mape = 0;      // mean absolute percentage error on them, in percent
  double holdout_max_ape = 0;   // worst absolute percentage error on them, in percent
};

// What ListDevices / PutTable report about one device's table.
struct DeviceSummary {
  std::string name;
  std::string runtime;
  int batch_size = 1;
  int threads = 1;
  int64_t entries = 0;
  std::string profiled_at;
  std::string method;
  // Bumped by every accepted PutTable of this device; 1 for the first table.
  uint64_t version = 0;
  PredictorReport predictor;
  // The table's whole-network correction (core/latency_table.h): a network's latency is the sum
  // of its layers' answers plus calibration->Correction(layers). Absent: the plain sum.
  std::optional<LatencyCalibration> calibration;
};

}  // namespace nas
