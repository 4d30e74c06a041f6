// The latency service's domain logic: the tables of every device, their predictors, batch
// queries with a per-device cache, uploads (replace or merge, versioned) and persistence.
// No gRPC here: latency_grpc_service.cc adapts it.
//
// Query answers each key from the device's table (MEASURED) or, when the table lacks it, from
// the device's predictor (PREDICTED; predictor.h). A batch is all-or-nothing: the first key that
// cannot be answered fails the call with an error naming its index and the key:
//   more keys than max_keys_per_query    RESOURCE_EXHAUSTED "layer_keys: N keys exceed the limit"
//   device name not 1-128 of [A-Za-z0-9._-]  INVALID_ARGUMENT "device: device name ..."
//   unknown device                       NOT_FOUND         "device: unknown device \"x\" ..."
//   malformed or inconsistent key        INVALID_ARGUMENT  "layer_keys[3]: layer key '...': ..."
//   (core/latency_table.h LayerKey: grammar, bounds, output = ceil(input / stride), idskip ...)
//   key the predictor cannot answer      FAILED_PRECONDITION "layer_keys[7]: device d cannot ..."
//   (a kind the table has no entries of, a key far outside the fitted range, or a non-positive
//   prediction): never a default.
// A predicted answer carries its spread (std_ms from the kind's held-out error) and whether it
// is extrapolated beyond the fitted range (predictor.h).
// Keys are compared in canonical form (LayerKey::ToString), so a key with its fields in another
// order still finds its measured entry.
//
// PutTable validates the table (keys, entry numbers and sizes within core/latency_table.h's
// limits; the core parser already did) and a device name usable as a file name; a merge whose
// result would exceed kMaxLatencyTableEntries (or a pooled count beyond kMaxLatencyCount) is
// refused, the stored table unchanged. Replace swaps the table; merge keeps
// the stored entries, adds the new ones, and pools the two measurements of a key present in
// both (count-weighted mean and variance); a merge needs the same runtime, batch size and
// threads, since timings from different set-ups do not mix. Every accepted upload bumps the
// device's version (1 for a first table); `if_version` != 0 makes the upload conditional on the
// stored version (FAILED_PRECONDITION otherwise), so two uploaders cannot overwrite each other
// unseen. The predictor is refitted on each upload, persisted next to the table (table_store.h)
// and only then swapped in: a failed write leaves the served table unchanged.
//
// A table's calibration (the whole-network correction of core/latency_table.h) travels with it:
// PutTable keeps it, GetTable and the table file return it, ListDevices/Describe report it, so
// a client predicts a network as the sum of its layers' answers + the correction. A merge takes
// the upload's calibration, or keeps the stored one when the upload has none.
//
// Thread-safety: every method may be called concurrently. Queries read an immutable per-device
// snapshot (shared_ptr) and never wait for an upload, which builds the next snapshot aside.
//
//   LatencyRegistryOptions o;  o.table_dir = "/var/lib/nas-latency";
//   o.builtin_tables = {{"pixel1-tflite", "data/proxylessnas/mobile_trim.yaml"}};
//   NAS_ASSIGN_OR_RETURN(std::unique_ptr<LatencyRegistry> r, LatencyRegistry::Open(o));
//   std::vector<LayerLatency> answers;
//   NAS_RETURN_IF_ERROR(r->Query("pixel1-tflite", keys, &answers));
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/latency_table.h"
#include "latency_service/metrics.h"
#include "latency_service/predictor.h"
#include "latency_service/table_store.h"
#include "latency_service/types.h"

namespace nas {

// A table shipped with the server: loaded at start under `device` unless the table directory
// already holds an uploaded table of that device (the upload wins).
struct BuiltinTable {
  std::string device;
  std::string path;  // ProxylessNAS YAML or our JSON (LatencyTable::Load)
};

struct LatencyRegistryOptions {
  // Directory of persisted tables (table_store.h); empty keeps uploads in memory only.
  // Default "".
  std::string table_dir;
  // Tables loaded at start (see BuiltinTable). Default none.
  std::vector<BuiltinTable> builtin_tables;
  // Predicted answers cached per device; a full cache is cleared. Default 100000.
  size_t cache_capacity = 100000;
  // Most keys accepted in one Query. Default 1000000.
  size_t max_keys_per_query = 1000000;
  // How predictors are fitted (predictor.h). Default PredictorOptions{}.
  PredictorOptions predictor;
  // Where query counts and times go; may be null. Not owned: must outlive the registry.
  // Default nullptr.
  LatencyMetrics* metrics = nullptr;
};

enum class PutMode { kReplace, kMerge };

class LatencyRegistry {
 public:
  // Loads the table directory, then the built-in tables it lacks, and fits predictors that are
  // missing or stale. Errors name the file and the reason.
  static absl::StatusOr<std::unique_ptr<LatencyRegistry>> Open(LatencyRegistryOptions options);

  // Answers[i] answers keys[i]. On error `answers` is unspecified (see the file comment).
  absl::Status Query(absl::string_view device, absl::Span<const absl::string_view> keys,
                     std::vector<LayerLatency>* answers) const;

  // Every device, sorted by name.
  std::vector<DeviceSummary> ListDevices() const;
  // NOT_FOUND for an unknown device.
  absl::StatusOr<DeviceSummary> Describe(absl::string_view device) const;
  // The device's table in our JSON format, with its "version". NOT_FOUND for an unknown device.
  absl::StatusOr<std::string> GetTableJson(absl::string_view device) const;
  absl::StatusOr<LatencyTable> GetTable(absl::string_view device) const;

  // Installs `table` for table.info().device (see the file comment). Returns the new summary.
  absl::StatusOr<DeviceSummary> PutTable(LatencyTable table, PutMode mode, uint64_t if_version = 0);

  ~LatencyRegistry();

 private:
  struct DeviceState;
  explicit LatencyRegistry(LatencyRegistryOptions options);
  std::shared_ptr<const DeviceState> Find(absl::string_view device) const;
  absl::StatusOr<std::shared_ptr<const DeviceState>> FindOrError(absl::string_view device) const;
  absl::StatusOr<std::shared_ptr<DeviceState>> MakeState(
      LatencyTable table, uint64_t version, std::optional<LatencyPredictor> predictor) const;
  absl::Status QueryImpl(const DeviceState& state, absl::Span<const absl::string_view> keys,
                         std::vector<LayerLatency>* answers, QueryCounts* counts) const;

  const LatencyRegistryOptions options_;
  std::unique_ptr<TableStore> store_;  // null when options_.table_dir is empty

  // Serialises uploads (read-modify-write of a device's table and its files).
  absl::Mutex put_mu_;
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(put_mu_);
  // Invariant: every state's table has at least one entry and a valid device name equal to
  // its key.
  absl::flat_hash_map<std::string, std::shared_ptr<const DeviceState>> devices_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace nas
