// Per-layer latency tables of one device, keyed in the ProxylessNAS grammar.
//
// Two formats load:
//  - the reference YAML (`mobile_trim.yaml`): `key:` then indented `count:`, `mean:`, `var:`;
//  - our JSON, which also records provenance:
//      {"format": "nas-latency-table/1", "device": "x86-2core", "runtime": "libtorch-cpu 1.13",
//       "batch_size": 1, "threads": 2, "profiled_at": "2026-11-25T20:00:00Z",
//       "method": "...", "entries": {"<key>": {"count": 50, "mean": 0.12, "var": 1e-4}}}
// Times are milliseconds. Lookup of a key the table lacks is NotFound naming the key and the
// device: never a silent default.
//
//   NAS_ASSIGN_OR_RETURN(LatencyTable t, LatencyTable::Load("mobile_trim.yaml"));
//   NAS_ASSIGN_OR_RETURN(LatencyEntry e, t.Lookup(key));
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nas {

struct LatencyEntry {
  int64_t count = 0;
  double mean_ms = 0;
  double var = 0;  // ms^2
};

struct LatencyTableInfo {
  std::string device = "unknown";
  std::string runtime;
  int batch_size = 1;
  int threads = 1;
  std::string profiled_at;
  std::string method;
};

// Parsed form of a layer key. Kinds: "Conv" (stem), "expanded_conv" (MBConv), "Conv_1"
// (feature mix), "Logits" (pool + classifier).
struct LayerKey {
  std::string kind;
  int in_h = 0, in_w = 0, in_c = 0;
  int out_h = 0, out_w = 0, out_c = 0;  // Logits: out_c = classes
  int expand = 0, kernel = 0, stride = 0, idskip = 0;

  static absl::StatusOr<LayerKey> Parse(const std::string& key);
  std::string ToString() const;

 private:
  std::string LogitsKeyString() const;
};

class LatencyTable {
 public:
  LatencyTable() = default;
  explicit LatencyTable(LatencyTableInfo info) : info_(std::move(info)) {}

  // By extension: .yaml/.yml -> reference YAML, otherwise our JSON.
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

  // Validates the key grammar and the numbers (count >= 1, mean > 0, var >= 0).
  absl::Status Insert(const std::string& key, const LatencyEntry& e);

  const LatencyTableInfo& info() const { return info_; }
  LatencyTableInfo& mutable_info() { return info_; }
  const std::map<std::string, LatencyEntry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  LatencyTableInfo info_;
  std::map<std::string, LatencyEntry> entries_;
};

}  // namespace nas
