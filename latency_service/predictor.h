// Predicts the latency of layer keys a device's table lacks, from features of the layer that the
// key itself describes.
//
// Features (layer_features.cc; MACs in millions, bytes in MB of float32 tensors):
//   expanded_conv: MACs of the 1x1 expand, the kxk depthwise and the 1x1 project convs; bytes of
//                  the block's input + output, of its expanded (mid) activations, and of weights
//   Conv (3x3 stem), Conv_1 (1x1 feature mix), Logits (pool + linear): MACs, activation bytes,
//                  weight bytes
// Model, one per key kind, fitted on that kind's table entries:
//   - "linear": mean_ms = c0 + sum_j c_j * x_j with every c >= 0 (latency never falls when a layer
//     does more work), by least squares on relative error (rows weighted 1/mean^2, so a 0.3 ms
//     layer counts as much as a 17 ms one) with a small ridge term, solved exactly (the best of
//     every subset of free coefficients: at most 2^7 small solves). Used when the kind has at
//     least max(8, 2 * (features + 1)) entries.
//   - "ratio": mean_ms = c * (total MACs + total MB), the relative-error least-squares c, for
//     kinds with fewer entries (e.g. the single stem entry of a table).
// A kind with no entries cannot be predicted: FailedPrecondition naming the key and the kind,
// never a default. A prediction that is not a positive number is FailedPrecondition too.
//
// Error report: entries of each kind with at least 5 entries are shuffled with a fixed seed,
// 20% are held out, the same model form is fitted on the rest and scored on them (absolute
// percentage error); the served predictor is then refitted on every entry. The device's report
// pools those kinds. Each kind also keeps its own error (KindError): that hold-out for kinds of
// 5 or more entries, leave-one-out for kinds of 2 to 4, none for a kind of one entry.
//
// How sure an answer is (Answer):
//   - spread: std_ms = predicted mean x the kind's held-out RMS relative error; a kind without an
//     error estimate (a single entry) gets std_ms = the mean itself (100%: unknown).
//   - extrapolated: some feature of the key lies outside the [min, max] of that feature over the
//     kind's fitted entries; the held-out error does not cover such a key.
//   - refused (FailedPrecondition naming the key, the feature and the factor): a feature more
//     than kExtrapolationRefusalFactor times above the largest fitted value, or below the
//     smallest positive fitted value divided by it. (A feature the fitted entries never had
//     non-zero, e.g. the expand conv when every fitted block has expand 1, is only flagged.)
//
// Stored as plain JSON next to the table (no pickles):
//   {"format": "nas-latency-predictor/2", "device": "...", "table_version": 3,
//    "report": {...}, "models": {"expanded_conv": {"form": "linear", "features": [...],
//    "scale": [...], "coef": [c0, c1, ...], "entries": 66, "min": [...], "max": [...],
//    "error": {"method": "holdout", "entries": 14, "mape_percent": 7.1,
//              "max_ape_percent": 16.9, "rms_percent": 8.3}}, ...}}
// Format 1 files (before per-kind errors and ranges) are refused by FromJson with an error that
// says so; the registry then refits from the table (fitting is deterministic) and rewrites them.
//
//   NAS_ASSIGN_OR_RETURN(LatencyPredictor p, LatencyPredictor::Fit(table, {}));
//   NAS_ASSIGN_OR_RETURN(double ms, p.Predict(key));
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/latency_table.h"
#include "latency_service/types.h"

namespace nas {

// Feature names and values of a parsed key, in a fixed order per kind.
std::vector<std::string> LayerFeatureNames(const std::string& kind);
std::vector<double> LayerFeatures(const LayerKey& key);

// A predictor file is a few kilobytes (four kinds, a handful of numbers each); FromJson refuses
// a larger text.
inline constexpr size_t kMaxPredictorBytes = size_t{1} << 20;

// A key with a feature this many times beyond its kind's fitted range is refused (see above).
inline constexpr double kExtrapolationRefusalFactor = 100;

// Held-out error of one kind's model.
struct KindError {
  std::string method = "none";  // "holdout", "leave-one-out" or "none" (a single entry)
  int64_t entries = 0;          // entries scored
  double mape_percent = 0;      // mean absolute percentage error
  double max_ape_percent = 0;   // worst absolute percentage error
  double rms_percent = 0;       // root mean square relative error: the spread of an answer
};

// A predicted latency and how sure it is (see the file comment).
struct PredictedLatency {
  double mean_ms = 0;
  double std_ms = 0;
  bool extrapolated = false;
};

struct PredictorOptions {
  // Ridge penalty on the standardised coefficients, relative to the mean diagonal of the
  // weighted normal equations. Default 1e-6.
  double ridge = 1e-6;
  // Share of each kind's entries held out to measure the error. Default 0.2.
  double holdout_fraction = 0.2;
  // Seed of the hold-out shuffle. Default 1.
  uint64_t seed = 1;
};

class LatencyPredictor {
 public:
  LatencyPredictor() = default;

  // Fits one model per kind present in `table` and measures the held-out error. Errors:
  // InvalidArgument for bad options; an empty table fits nothing (every Predict then fails).
  static absl::StatusOr<LatencyPredictor> Fit(const LatencyTable& table,
                                              const PredictorOptions& options);

  // Predicted latency of `key` with its spread and extrapolation flag. FailedPrecondition when
  // the table had no entries of key.kind, the key is far outside the fitted range, or the model
  // gives a non-positive number.
  absl::StatusOr<PredictedLatency> Answer(const LayerKey& key) const;
  // Answer(key)->mean_ms.
  absl::StatusOr<double> Predict(const LayerKey& key) const;

  const PredictorReport& report() const { return report_; }
  const std::string& device() const { return device_; }
  uint64_t table_version() const { return table_version_; }
  void set_table_version(uint64_t v) { table_version_ = v; }

  std::string ToJson() const;
  // Errors name the field ("models.Conv.coef: expected 4 numbers"); never throws. Numbers must
  // be finite and in range (coefficients >= 0, min <= max, counts within the table limits).
  static absl::StatusOr<LatencyPredictor> FromJson(const std::string& text);

  struct KindModel {
    std::string form;           // "linear" or "ratio"
    std::vector<double> scale;  // per feature (linear); coefficients apply to x / scale
    std::vector<double> coef;   // linear: intercept then one per feature; ratio: one
    int64_t entries = 0;        // table entries fitted
    std::vector<double> min_x;  // per feature: the smallest value over the fitted entries
    std::vector<double> max_x;  // per feature: the largest
    KindError error;
  };
  const std::map<std::string, KindModel>& models() const { return models_; }

 private:
  static absl::StatusOr<LatencyPredictor> FromJsonUnguarded(const std::string& text);

  std::string device_;
  uint64_t table_version_ = 0;
  std::map<std::string, KindModel> models_;  // by kind
  PredictorReport report_;
};

}  // namespace nas
