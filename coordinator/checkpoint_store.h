// The coordinator's durable state: one RocksDB database holding every job's record, its last
// committed search state, its tensors, its event log and its result (DESIGN.md, "Storage").
//
// A job is durable once PutJob returns (synced write), and everything one round changes goes to
// disk in one atomic rocksdb::WriteBatch (CommitRound): a coordinator killed at any moment
// reopens the store and finds each job exactly at its last committed round, never half-way
// through one. The store never interprets job records, search states, results or tensor bytes;
// they are opaque to it.
//
// Layout. Column families, keys and values (job ids are 1+ characters of [A-Za-z0-9_-], so
// "<job_id>\0" is a prefix that no other job's keys share):
//   jobs          <job_id>                      the job record
//   search_state  <job_id>                      8-byte big-endian round, then the state bytes
//   params        <job_id>\0<tensor name>       serialized nas::TensorBlob
//   events        <job_id>\0<8-byte BE index>   one event; indices 0, 1, 2, ... in order
//   results       <job_id>                      the result
//   meta          "incarnation"                 8-byte big-endian counter (NextIncarnation)
//                 "job_number"                  8-byte big-endian counter (NextJobNumber)
//                 "tenant_usage"                the tenants' usage (opaque; PutTenantUsage)
//
// Errors: every method returns InvalidArgument for a malformed job id (naming it), NotFound
// naming the job (and tensor) for a missing entry, DataLoss for a stored value that does not
// parse, and the converted rocksdb::Status (naming the operation and the job) for an I/O error.
//
// Thread-safety: every method may be called concurrently from any thread. Writes that read
// first (CommitRound's event indices, DeleteJob, NextIncarnation) are serialised inside.
//
//   NAS_ASSIGN_OR_RETURN(std::unique_ptr<CheckpointStore> store,
//                        CheckpointStore::Open("/var/lib/nas-coordinator"));
//   NAS_ASSIGN_OR_RETURN(uint64_t incarnation, store->NextIncarnation());
//   NAS_RETURN_IF_ERROR(store->PutJob("job-17", job.SerializeAsString()));
//   RoundCommit commit;
//   commit.job_id = "job-17";
//   commit.round = 3;
//   commit.search_state = state.SerializeAsString();
//   commit.tensors = std::move(updated_tensors);  // shared_ptr<const TensorBlob> each
//   commit.events = {"round 3: val_acc 0.41"};
//   NAS_RETURN_IF_ERROR(store->CommitRound(commit));
//   // After a restart:
//   NAS_ASSIGN_OR_RETURN(auto round_and_state, store->GetSearchState("job-17"));
//   NAS_ASSIGN_OR_RETURN(std::vector<TensorBlob> tensors, store->LoadTensors("job-17"));
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "nas/common.pb.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
class WriteBatch;
}  // namespace rocksdb

namespace nas {

struct CheckpointStoreOptions {
  // Whether job submissions (PutJob), round commits (CommitRound), results (PutResult) and
  // deletions (DeleteJob) are fsync'ed before they return (rocksdb WriteOptions.sync). Without
  // it a write survives a process crash but not a machine crash. NextIncarnation always syncs.
  // Default true.
  bool sync = true;
  // The environment RocksDB does its file I/O through; not owned, must outlive the store. Tests
  // pass a fault-injecting wrapper here (rocksdb::NewCompositeEnv over a FileSystemWrapper).
  // Default nullptr (rocksdb::Env::Default()).
  rocksdb::Env* env = nullptr;
  // The write-ahead log kept on disk before the column families holding its oldest file are
  // flushed (rocksdb DBOptions.max_total_wal_size; RocksDB weighs the finished files only, so the
  // log reaches about twice this): what a restart replays. Default 128 MB.
  uint64_t max_wal_bytes = uint64_t{128} << 20;
};

// Everything one round changes, written in ONE rocksdb::WriteBatch (atomic).
struct RoundCommit {
  std::string job_id;
  int64_t round = 0;                      // the round just completed; stored with the state
  std::string search_state;               // opaque bytes (the coordinator's serialized state)
  // Updated tensors (replace by name within the job); shared with the caller's store, not copied.
  std::vector<std::shared_ptr<const TensorBlob>> tensors;
  std::vector<std::string> events;        // appended to the job's event log in order
  std::optional<std::string> job_record;  // when set, replaces the job record in the same batch
};

// InvalidArgument naming the id unless `job_id` is 1+ characters of [A-Za-z0-9_-].
absl::Status ValidateJobId(const std::string& job_id);

class CheckpointStore {
 public:
  // Opens or creates the database in `dir` (created with its parents if missing) with the column
  // families jobs, search_state, params, events, results and meta, creating missing ones; column
  // families a later version added are opened and left alone. FailedPrecondition when `dir` exists
  // and is not a directory; the converted rocksdb error (naming `dir`) when RocksDB cannot open it,
  // e.g. because another process holds its lock.
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(const std::string& dir,
                                                               CheckpointStoreOptions options = {});

  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;
  // Closes the database; what was written stays written.
  ~CheckpointStore();

  // Creates or replaces the job's record (opaque bytes; the coordinator stores a serialized
  // proto). Synced when options.sync.
  absl::Status PutJob(const std::string& job_id, const std::string& record);
  // The job's record; NotFound naming the job when there is none.
  absl::StatusOr<std::string> GetJob(const std::string& job_id) const;
  // Every (job id, record), sorted by job id. A read error or a checksum mismatch anywhere in
  // the list is an error (DataLoss for corruption, naming the file RocksDB names), never a
  // shorter list.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListJobs() const;

  // Writes the round in one atomic batch: the (round, search_state), each tensor (replacing the
  // job's tensor of the same name; others stay), the events appended after the job's last one,
  // and the job record when set. Synced when options.sync. InvalidArgument, and nothing
  // written, for a bad job id, a negative round, an empty tensor name or a name repeated
  // within the commit (a chunked tensor is committed as one whole blob, not as its chunks).
  absl::Status CommitRound(const RoundCommit& commit);
  // The last committed (round, search_state); NotFound naming the job when it never committed.
  absl::StatusOr<std::pair<int64_t, std::string>> GetSearchState(const std::string& job_id) const;
  // Every tensor of the job in name order; empty when it has none.
  absl::StatusOr<std::vector<TensorBlob>> LoadTensors(const std::string& job_id) const;
  // One tensor; NotFound naming the job and the tensor when missing, InvalidArgument for an
  // empty name.
  absl::StatusOr<TensorBlob> GetTensor(const std::string& job_id, const std::string& name) const;
  // The job's events with index >= `from` (the first event has index 0), in order; empty when
  // there are none. InvalidArgument for a negative `from`.
  absl::StatusOr<std::vector<std::string>> Events(const std::string& job_id,
                                                  int64_t from = 0) const;

  // Creates or replaces the job's result. Synced when options.sync.
  absl::Status PutResult(const std::string& job_id, const std::string& result);
  // The job's result; NotFound naming the job when there is none.
  absl::StatusOr<std::string> GetResult(const std::string& job_id) const;

  // Removes everything of the job (record, search state, tensors, events, result) in one
  // batch, then compacts the job's key range in every column family, so that the table files
  // that held it are rewritten without it and its disk space is given back before this
  // returns (its tensors' blob files too, once no other job's tensors share them; shared ones
  // are reclaimed by RocksDB's blob garbage collection as the other jobs' tensors are
  // rewritten). OK when there was nothing. A later commit starts the event log at index 0
  // again. An error of the compaction (the job is then deleted but its space not yet given
  // back) is returned naming the job; calling DeleteJob again compacts again.
  absl::Status DeleteJob(const std::string& job_id);

  // The bytes of the table and blob files of the database's current version, over every
  // column family: what the store holds on disk besides its log (LiveFileBytes drops once
  // DeleteJob returns). Files RocksDB has just made obsolete are not counted, even while they
  // are still being removed from the directory.
  int64_t LiveFileBytes() const;

  // Increments the counter persisted in `meta` and returns the new value (1 on a new store),
  // always synced: the coordinator takes one per start, so lease ids never repeat across
  // restarts.
  absl::StatusOr<uint64_t> NextIncarnation();
  // The number of a new job: one more than the last one this store handed out, and at least
  // `at_least` (the highest number among the jobs a store from before this counter holds, plus
  // one); persisted in `meta` and synced before it returns, so no job number is ever handed out
  // twice, even when the jobs' records are lost.
  absl::StatusOr<uint64_t> NextJobNumber(uint64_t at_least);

  // The tenants' usage (opaque bytes: the coordinator's TenantLedger), replaced whole; synced
  // when options.sync. GetTenantUsage is NotFound when none was ever written.
  absl::Status PutTenantUsage(const std::string& usage);
  absl::StatusOr<std::string> GetTenantUsage() const;

  // What the store holds beyond the tensors' files: the memtables of the tensors' column family
  // (in memory) and the write-ahead log's files (on disk), in bytes; for the coordinator's gauges.
  struct Footprint {
    int64_t tensor_memtable_bytes = 0;
    int64_t wal_bytes = 0;
  };
  Footprint footprint() const;

  // Writes every column family's memtable to table files and waits (backups, tests that need
  // the data in table files).
  absl::Status Flush();

  // The directory given to Open.
  const std::string& dir() const { return dir_; }

 private:
  // Column families, in the order of handles_.
  enum Cf { kDefault = 0, kJobs, kSearchState, kParams, kEvents, kResults, kMeta, kNumCfs };

  CheckpointStore(std::string dir, CheckpointStoreOptions options, std::unique_ptr<rocksdb::DB> db,
                  std::vector<rocksdb::ColumnFamilyHandle*> handles);

  rocksdb::ColumnFamilyHandle* cf(Cf which) const { return handles_[which]; }
  // Increments the counter `key` of `meta` to at least `at_least`, synced; returns it.
  absl::StatusOr<uint64_t> NextCounter(const char* key, uint64_t at_least);
  // The index the job's next event gets: one past its last stored event, 0 when none.
  absl::StatusOr<int64_t> NextEventIndex(const std::string& job_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const CheckpointStoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  // handles_[c] for each Cf c, then any column families this version does not know. Owned;
  // destroyed before db_ is closed.
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  // Serialises the read-then-write operations, so that two commits of one job never take the
  // same event index and the incarnation counter never repeats. Plain writes do not take it.
  mutable absl::Mutex mu_;
  // CommitRound's batch, kept across rounds: a round copies its tensors into a buffer that is
  // already the size of a round and already touched, instead of growing a new one (reallocating
  // and page-faulting ~1 MB per round on the Fashion-MNIST preset). Released after a round that
  // needed more than kMaxKeptBatchBytes.
  std::unique_ptr<rocksdb::WriteBatch> round_batch_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nas
