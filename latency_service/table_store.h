// Where a latency service keeps its device tables across restarts: a directory of files in our
// own JSON formats, one pair per device, each written atomically.
//
//   <dir>/<device>.table.json      the table (core/latency_table.h's format) plus "version"
//   <dir>/<device>.predictor.json  the fitted predictor (predictor.h), with "table_version"
//
// Why files and not RocksDB: a device table is small (tens to a few thousand entries), written
// rarely (a profiling upload), and served entirely from memory, so a database buys no query
// speed; the files are the exact format `nas profile` writes and `GetTable` returns, so an
// operator can read, diff, back up or hand-edit them, and a table dir can be copied to seed
// another server. Each write goes to a temporary file in the same directory, is fsync'ed,
// renamed over the old file and the directory is fsync'ed: a crash leaves the old or the new
// file, never a torn one. The two files of a device are not written as one unit; the predictor
// records the table version it was fitted to, and a predictor that does not match its table
// is ignored and refitted on load (fitting is deterministic and takes milliseconds).
//
// Thread-safety: none; the registry serialises writes.
//
//   TableStore store("/var/lib/nas-latency");
//   NAS_RETURN_IF_ERROR(store.SaveTable(table, /*version=*/3));
//   NAS_ASSIGN_OR_RETURN(std::vector<StoredTable> all, store.LoadAll());
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/latency_table.h"
#include "latency_service/predictor.h"

namespace nas {

// A device name usable as a file name and a metric label: 1-128 characters of [A-Za-z0-9._-],
// not starting with '.' or '-'. InvalidArgument naming `field` otherwise (a name that is too
// long is not echoed; others are, escaped).
absl::Status ValidateDeviceName(absl::string_view name, const std::string& field);

struct StoredTable {
  LatencyTable table;
  uint64_t version = 0;
  // Present when the predictor file exists and matches `version`.
  std::optional<LatencyPredictor> predictor;
};

class TableStore {
 public:
  // `dir` is created on first write if missing.
  explicit TableStore(std::string dir) : dir_(std::move(dir)) {}

  // Every <device>.table.json in the directory, sorted by device. A missing directory is an
  // empty store. An unreadable or invalid file is an error naming the path (the server then
  // refuses to start rather than silently forget a table); leftover temporary files are ignored.
  absl::StatusOr<std::vector<StoredTable>> LoadAll() const;

  // Atomically replaces the table file of table.info().device.
  absl::Status SaveTable(const LatencyTable& table, uint64_t version) const;
  // Atomically replaces the predictor file of predictor.device().
  absl::Status SavePredictor(const LatencyPredictor& predictor) const;

  std::string TablePath(const std::string& device) const;
  std::string PredictorPath(const std::string& device) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Writes `content` to `path` via a temporary file in the same directory, fsync and rename, then
// fsyncs the directory. Errors name the path and the OS reason.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

}  // namespace nas
