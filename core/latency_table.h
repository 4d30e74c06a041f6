// Per-layer latency tables of one device, keyed in the ProxylessNAS grammar.
//
// Two formats load:
//  - the reference YAML (`mobile_trim.yaml`): `key:` then indented `count:`, `mean:`, `var:`;
//  - our JSON, which also records provenance:
//      {"format": "nas-latency-table/1", "device": "x86-2core", "runtime": "libtorch-cpu 1.13",
//       "batch_size": 1, "threads": 2, "profiled_at": "2026-11-25T20:00:00Z",
//       "method": "...", "entries": {"<key>": {"count": 50, "mean": 0.12, "var": 1e-4}},
//       "calibration": {"overhead_ms": 0.19, "per_layer_ms": 0, "model": "constant",
//                       "networks": 20, "rmse_ms": 0.02, ...}}          (optional)
// Times are milliseconds. Lookup of a key the table lacks is NotFound naming the key and the
// device: never a silent default.
//
// Every table is read as hostile input: the limits below (kMaxLatencyTable*, kMaxLayer*, ...)
// bound its size, its numbers and its keys, and every loader returns an error naming the entry
// and the limit instead of throwing (latency_service/README.md "Limits" lists them all).
//
//   NAS_ASSIGN_OR_RETURN(LatencyTable t, LatencyTable::Load("mobile_trim.yaml"));
//   NAS_ASSIGN_OR_RETURN(LatencyEntry e, t.Lookup(key));
//   NAS_ASSIGN_OR_RETURN(double ms, t.PredictNetwork(net.LayerKeys()));  // sum + calibration
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nas {

// Limits on a table and its entries (enforced by Insert and the loaders).
inline constexpr size_t kMaxLatencyTableBytes = size_t{16} << 20;  // a table's JSON or YAML text
inline constexpr size_t kMaxLatencyTableEntries = 65536;           // entries of one table
inline constexpr size_t kMaxLatencyTableTextBytes = 4096;          // runtime, profiled_at, method
inline constexpr size_t kMaxLatencyDeviceBytes = 128;              // device name
inline constexpr int64_t kMaxLatencyCount = 1000000000;            // timed runs behind one entry
inline constexpr double kMinLatencyMs = 1e-6;                      // an entry's mean: 1 ns ...
inline constexpr double kMaxLatencyMs = 1e6;                       // ... to 1000 s
inline constexpr double kMaxLatencyVar = kMaxLatencyMs * kMaxLatencyMs;  // ms^2
inline constexpr int kMaxLatencyBatchSize = 65536;
inline constexpr int kMaxLatencyThreads = 4096;
inline constexpr int kMaxCalibrationNetworks = 1000000;  // networks, rejected, layer counts

// Limits on a layer key (LayerKey::Parse / Validate).
inline constexpr size_t kMaxLayerKeyBytes = 256;  // checked first; a valid key is <= 96
inline constexpr int kMaxLayerSpatial = 4096;     // H and W
inline constexpr int kMaxLayerChannels = 65536;   // C of inputs and outputs
inline constexpr int kMaxLayerClasses = 1000000;  // Logits outputs
inline constexpr int kMaxLayerKernel = 31;        // odd, 1..31
inline constexpr int kMaxLayerExpand = 32;        // 1..32

struct LatencyEntry {
  int64_t count = 0;
  double mean_ms = 0;
  double var = 0;  // ms^2
};

// A whole-network correction of the per-layer sum. Timing each layer alone misses what a
// network does between and around its layers (per-call framework overhead, tensors that no
// longer sit in cache), so the layer sum of a network under-predicts it by a steady amount. The
// profiler (worker/profiler.h CalibrateTable) measures sampled networks of the space end to end
// and fits, by least squares on measured - layer sum:
//   predicted network latency = sum of its layers' means + overhead_ms + per_layer_ms * layers
// where `layers` counts the network's layer keys (NetworkConfig::LayerKeys: stem, first block,
// every non-Zero searched block, feature mix, logits). per_layer_ms is 0 for the constant model.
struct LatencyCalibration {
  double overhead_ms = 0;
  double per_layer_ms = 0;
  // "constant" (per_layer_ms = 0) or "linear" (overhead + per_layer * layers), the one with the
  // smaller leave-one-out error (see FitCalibration).
  std::string model = "constant";
  int networks = 0;          // networks the fit used
  int rejected = 0;          // networks measured but left out as outliers (see FitCalibration)
  int min_layers = 0;        // range of their layer counts
  int max_layers = 0;
  double raw_rmse_ms = 0;    // RMSE of the plain layer sum on those networks
  double rmse_ms = 0;        // RMSE of layer sum + correction on them (in-sample)
  double loo_rmse_ms = 0;    // leave-one-out RMSE of the chosen model (0 with 1 network)
  double max_error_pct = 0;  // worst |corrected - measured| / measured on them, percent

  double Correction(int layers) const { return overhead_ms + per_layer_ms * layers; }
};

// One network measured for calibration: the sum of its layers' table means, its number of
// layer keys, and its measured end-to-end mean.
struct CalibrationSample {
  double layer_sum_ms = 0;
  int layers = 0;
  double measured_ms = 0;
};

// Fits the correction by least squares on (measured - layer sum). First, networks whose
// measured / layer-sum ratio lies outside [median / 1.15, median * 1.15] (median: the lower
// middle ratio, so that network always stays) are left out as
// outliers (`rejected`): on a shared machine another process can slow a whole measurement by
// 1.5x or more, and one such network would drag a least-squares overhead far off; the genuine
// ratios of one space spread a few percent. Of the rest, the constant model always fits; the
// linear one is a candidate with at least 4 networks and 2 distinct layer counts and a
// non-negative per-layer term, and is chosen
// only when its leave-one-out RMSE beats the constant model's by more than 10% (a second
// coefficient must earn its keep on networks it was not fitted on). raw_rmse_ms, rmse_ms and
// max_error_pct are over the networks used.
// InvalidArgument without samples or with a non-positive or non-finite time.
absl::StatusOr<LatencyCalibration> FitCalibration(const std::vector<CalibrationSample>& samples);

struct LatencyTableInfo {
  std::string device = "unknown";
  std::string runtime;
  int batch_size = 1;
  int threads = 1;
  std::string profiled_at;
  std::string method;
  // Absent for tables without network measurements (the YAML import, tables written before
  // calibration existed): predictions are then the plain layer sum.
  std::optional<LatencyCalibration> calibration;
};

// Parsed form of a layer key. Kinds: "Conv" (stem), "expanded_conv" (MBConv), "Conv_1"
// (feature mix), "Logits" (pool + classifier).
//
// A key must describe a layer that can exist (Validate); the rules, checked against every key
// of the paper's mobile_trim.yaml and of our search-space presets:
//   every kind     1 <= H, W <= 4096; 1 <= C <= 65536; at most 256 bytes; numbers are plain
//                  digits without leading zeros (one spelling)
//   Conv           a "same"-padded stem conv: output H, W = ceil(input / s) with one s in {1, 2}
//   expanded_conv  stride in {1, 2}; output H, W = ceil(input / stride); kernel odd in 1..31;
//                  expand in 1..32; idskip 0 or 1, and 1 only with stride 1 and input C ==
//                  output C (the identity shortcut adds the input to the output)
//   Conv_1         a 1x1 conv: output H, W = input H, W
//   Logits         pool + linear: output = classes, 1..1000000
// Errors are InvalidArgument "layer key '<key>': <field> <value> <problem>", the key
// truncated to 120 characters and escaped.
struct LayerKey {
  std::string kind;
  int in_h = 0, in_w = 0, in_c = 0;
  int out_h = 0, out_w = 0, out_c = 0;  // Logits: out_c = classes
  int expand = 0, kernel = 0, stride = 0, idskip = 0;

  // Parses and Validates.
  static absl::StatusOr<LayerKey> Parse(const std::string& key);
  // The consistency rules above; the error names ToString().
  absl::Status Validate() const;
  std::string ToString() const;

 private:
  std::string LogitsKeyString() const;
};

class LatencyTable {
 public:
  LatencyTable() = default;
  explicit LatencyTable(LatencyTableInfo info) : info_(std::move(info)) {}

  // By extension: .yaml/.yml -> reference YAML, otherwise our JSON. Every loader refuses text
  // over kMaxLatencyTableBytes, numbers that are not finite (YAML: "inf", "nan", "1e999", hex)
  // or out of the entry limits, and never throws; errors name the line or the entry.
  static absl::StatusOr<LatencyTable> Load(const std::string& path);
  static absl::StatusOr<LatencyTable> ParseYaml(const std::string& text,
                                                const std::string& device);
  static absl::StatusOr<LatencyTable> ParseJson(const std::string& text);
  std::string ToJson() const;
  absl::Status Save(const std::string& path) const;

  // NotFound when absent: "device pixel1-tflite has no latency for key '...'".
  absl::StatusOr<LatencyEntry> Lookup(const std::string& key) const;
  bool Contains(const std::string& key) const { return entries_.count(key) > 0; }
  // Sum of means over keys; the first missing key is an error.
  absl::StatusOr<double> SumMeans(const std::vector<std::string>& keys) const;
  // The calibration's correction for a network of `layers` layer keys; 0 without calibration.
  double NetworkCorrection(int layers) const;
  // Latency of the network whose layer keys are `keys` (NetworkConfig::LayerKeys):
  // SumMeans(keys) + NetworkCorrection(keys.size()).
  absl::StatusOr<double> PredictNetwork(const std::vector<std::string>& keys) const;

  // Validates the key (LayerKey::Parse) and the numbers: count in 1..kMaxLatencyCount, mean in
  // [kMinLatencyMs, kMaxLatencyMs], var in [0, kMaxLatencyVar], all finite. A new key beyond
  // kMaxLatencyTableEntries is ResourceExhausted naming the limit; other errors are
  // InvalidArgument naming the key and the field.
  absl::Status Insert(const std::string& key, const LatencyEntry& e);

  const LatencyTableInfo& info() const { return info_; }
  LatencyTableInfo& mutable_info() { return info_; }
  const std::map<std::string, LatencyEntry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  static absl::StatusOr<LatencyTable> ParseYamlUnguarded(const std::string& text,
                                                         const std::string& device);
  static absl::StatusOr<LatencyTable> ParseJsonUnguarded(const std::string& text);

  LatencyTableInfo info_;
  std::map<std::string, LatencyEntry> entries_;
};

}  // namespace nas
