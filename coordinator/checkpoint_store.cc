#include "coordinator/checkpoint_store.h"

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <set>
#include <system_error>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/status.h"
#include "rocksdb/write_batch.h"

namespace nas {
namespace {

// Indexed by CheckpointStore::Cf.
constexpr const char* kKnownCfNames[] = {"default", "jobs",    "search_state", "params",
                                         "events",  "results", "meta"};

constexpr char kIncarnationKey[] = "incarnation";
constexpr char kTenantUsageKey[] = "tenant_usage";
constexpr char kJobNumberKey[] = "job_number";
// CommitRound's batch: room per record for its key, framing and small fields; the largest batch
// kept for the next round (a larger one is freed once written).
constexpr size_t kBatchSlackBytes = 64;
constexpr size_t kMaxKeptBatchBytes = size_t{64} << 20;

// The one place a rocksdb::Status becomes an absl::Status. `what` names the operation and the
// job or key, e.g. "commit round 3 of job 'j1'".
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  absl::StatusCode code;
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      code = absl::StatusCode::kNotFound;
      break;
    case rocksdb::Status::kCorruption:
      code = absl::StatusCode::kDataLoss;
      break;
    case rocksdb::Status::kNotSupported:
      code = absl::StatusCode::kUnimplemented;
      break;
    case rocksdb::Status::kInvalidArgument:
      code = absl::StatusCode::kInvalidArgument;
      break;
    case rocksdb::Status::kIOError:
      code = s.IsNoSpace() ? absl::StatusCode::kResourceExhausted : absl::StatusCode::kInternal;
      break;
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kShutdownInProgress:
      code = absl::StatusCode::kUnavailable;
      break;
    case rocksdb::Status::kAborted:
      code = absl::StatusCode::kAborted;
      break;
    default:
      code = absl::StatusCode::kInternal;
      break;
  }
  return absl::Status(code, absl::StrCat("checkpoint store: ", what, ": ", s.ToString()));
}

std::string EncodeBigEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

uint64_t DecodeBigEndian64(absl::string_view bytes) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}

// "<job_id>\0": the prefix of every job-scoped key of the job. No job id contains '\0', so no
// other job's keys share it.
std::string JobPrefix(const std::string& job_id) {
  std::string prefix = job_id;
  prefix.push_back('\0');
  return prefix;
}
// "<job_id>\x01": the first key after every key with the job's prefix.
std::string JobLimit(const std::string& job_id) {
  std::string limit = job_id;
  limit.push_back('\x01');
  return limit;
}

std::string TensorKey(const std::string& job_id, const std::string& name) {
  return absl::StrCat(JobPrefix(job_id), name);
}

std::string EventKey(const std::string& job_id, int64_t index) {
  return absl::StrCat(JobPrefix(job_id), EncodeBigEndian64(static_cast<uint64_t>(index)));
}

// Iterates the keys of one job in one column family: [<job_id>\0, <job_id>\x01).
class JobIterator {
 public:
  JobIterator(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const std::string& job_id)
      : lower_(JobPrefix(job_id)), upper_(JobLimit(job_id)) {
    rocksdb::ReadOptions ro;
    lower_slice_ = lower_;
    upper_slice_ = upper_;
    ro.iterate_lower_bound = &lower_slice_;
    ro.iterate_upper_bound = &upper_slice_;
    it_.reset(db->NewIterator(ro, cf));
  }
  rocksdb::Iterator* operator->() const { return it_.get(); }
  // The part of the current key after the job prefix.
  absl::string_view suffix() const {
    rocksdb::Slice k = it_->key();
    return absl::string_view(k.data(), k.size()).substr(lower_.size());
  }
  const std::string& prefix() const { return lower_; }

 private:
  const std::string lower_;
  const std::string upper_;
  rocksdb::Slice lower_slice_;
  rocksdb::Slice upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

absl::Status DecodeEventIndex(const JobIterator& it, const std::string& job_id, int64_t* index) {
  absl::string_view suffix = it.suffix();
  if (suffix.size() != 8) {
    return absl::DataLossError(absl::StrCat("checkpoint store: event key of job '", job_id,
                                            "' has a ", suffix.size(), "-byte index, want 8"));
  }
  *index = static_cast<int64_t>(DecodeBigEndian64(suffix));
  return absl::OkStatus();
}

absl::StatusOr<TensorBlob> ParseTensor(const std::string& job_id, absl::string_view name,
                                       const rocksdb::Slice& value) {
  TensorBlob blob;
  if (!blob.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("checkpoint store: tensor '", name, "' of job '",
                                            job_id, "' does not parse as a TensorBlob"));
  }
  return blob;
}

}  // namespace

absl::Status ValidateJobId(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job id is empty");
  for (char c : job_id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("job id '", absl::CHexEscape(job_id),
                                                     "' has characters outside [A-Za-z0-9_-]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(
    const std::string& dir, CheckpointStoreOptions options) {
  if (dir.empty()) return absl::InvalidArgumentError("checkpoint store: directory is empty");
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint store: '", dir, "' exists and is not a directory"));
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint store: cannot create directory '", dir, "': ", ec.message()));
  }

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  // The tensors' memtable is updated in place (below), which needs one memtable writer at a
  // time; the store's writes are few and large, so concurrent memtable writes gained nothing.
  db_options.allow_concurrent_memtable_write = false;
  // With in-place updates the tensors' memtable hardly grows, so it no longer fills up and
  // flushes by itself every 64 MB of rounds; the log files it keeps alive are bounded here
  // instead (past this, the column families holding the oldest log are flushed).
  db_options.max_total_wal_size = options.max_wal_bytes;
  if (options.env != nullptr) db_options.env = options.env;
  // A record torn at the log's tail (a crash mid-write) is dropped, as it was never
  // acknowledged; corruption anywhere else is an error naming the log file. (RocksDB's default,
  // point-in-time recovery, silently stops replaying at the first bad record and opens with
  // whatever came before it.)
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;

  // Open every column family the database has (a later version may have added some), ours first.
  std::vector<std::string> existing;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(db_options, dir, &existing);
  if (!s.ok() && !s.IsPathNotFound() && !s.IsNotFound()) {
    return FromRocks(s, absl::StrCat("list column families in '", dir, "'"));
  }
  static_assert(std::size(kKnownCfNames) == kNumCfs, "one name per Cf");
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const char* name : kKnownCfNames) {
    rocksdb::ColumnFamilyOptions cf;
    if (std::string(name) == "params") {
      // Tensors: float bytes do not compress, and large values go to blob files so that
      // compaction does not rewrite them (every round replaces a path's tensors).
      cf.compression = rocksdb::kNoCompression;
      cf.enable_blob_files = true;
      cf.min_blob_size = 64 << 10;
      cf.blob_compression_type = rocksdb::kNoCompression;
      cf.enable_blob_garbage_collection = true;
      // A round rewrites a job's tensors at the sizes they had: each overwrites the memtable's
      // copy in place instead of adding a version. The memtable then holds one copy of each
      // tensor, not every round's until 64 MB (the coordinator's memory), and a write finds its
      // key in a skip list of live tensors, not of every version (most of a round's write when
      // it replaces thousands of small tensors). What is given up - snapshot reads - the store
      // never uses; the write-ahead log and its atomic batches are unchanged.
      cf.inplace_update_support = true;
    } else {
      cf.write_buffer_size = 4 << 20;  // small records; keeps the coordinator's memory low
    }
    descriptors.emplace_back(name, cf);
  }
  for (const std::string& name : existing) {
    const bool known = std::find(std::begin(kKnownCfNames), std::end(kKnownCfNames), name) !=
                       std::end(kKnownCfNames);
    if (!known) descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  s = rocksdb::DB::Open(db_options, dir, descriptors, &handles, &raw_db);
  if (!s.ok()) return FromRocks(s, absl::StrCat("open '", dir, "'"));
  return std::unique_ptr<CheckpointStore>(
      new CheckpointStore(dir, options, std::unique_ptr<rocksdb::DB>(raw_db), std::move(handles)));
}

CheckpointStore::CheckpointStore(std::string dir, CheckpointStoreOptions options,
                                 std::unique_ptr<rocksdb::DB> db,
                                 std::vector<rocksdb::ColumnFamilyHandle*> handles)
    : dir_(std::move(dir)), options_(options), db_(std::move(db)), handles_(std::move(handles)) {}

CheckpointStore::~CheckpointStore() {
  for (rocksdb::ColumnFamilyHandle* h : handles_) db_->DestroyColumnFamilyHandle(h);
  handles_.clear();
  // Every write was already acknowledged by the WAL; a failing close loses nothing of it.
  db_->Close().PermitUncheckedError();
}

absl::Status CheckpointStore::PutJob(const std::string& job_id, const std::string& record) {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Put(wo, cf(kJobs), job_id, record), absl::StrCat("put job '", job_id, "'"));
}

absl::StatusOr<std::string> CheckpointStore::GetJob(const std::string& job_id) const {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  std::string record;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kJobs), job_id, &record);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("job '", job_id, "' not found"));
  NAS_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("get job '", job_id, "'")));
  return record;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> CheckpointStore::ListJobs()
    const {
  std::vector<std::pair<std::string, std::string>> jobs;
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf(kJobs)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    jobs.emplace_back(it->key().ToString(), it->value().ToString());
  }
  NAS_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("list the jobs in '", dir_, "'")));
  return jobs;
}

absl::Status CheckpointStore::CommitRound(const RoundCommit& commit) {
  const std::string& job_id = commit.job_id;
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  const std::string what = absl::StrCat("commit round ", commit.round, " of job '", job_id, "'");
  if (commit.round < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative round"));
  std::set<absl::string_view> names;
  for (size_t i = 0; i < commit.tensors.size(); ++i) {
    if (commit.tensors[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": tensor ", i, " is null"));
    }
    const std::string& name = commit.tensors[i]->name();
    if (name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": tensor ", i, " has an empty name"));
    }
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": tensor '", name, "' appears more than once"));
    }
  }

  // What the batch will hold, with room for the keys and records' framing.
  size_t needed = kBatchSlackBytes + commit.search_state.size() +
                  (commit.job_record.has_value() ? commit.job_record->size() : 0);
  for (const auto& tensor : commit.tensors) {
    needed += tensor->data().size() + 2 * tensor->name().size() + job_id.size() + kBatchSlackBytes +
              static_cast<size_t>(tensor->shape_size()) * 10;
  }
  for (const std::string& event : commit.events) needed += event.size() + kBatchSlackBytes;

  absl::MutexLock lock(&mu_);
  NAS_ASSIGN_OR_RETURN(int64_t next_event, NextEventIndex(job_id));
  if (round_batch_ == nullptr || round_batch_->Data().capacity() < needed) {
    round_batch_ = std::make_unique<rocksdb::WriteBatch>(needed);
  }
  rocksdb::WriteBatch& batch = *round_batch_;
  batch.Clear();  // keeps the buffer's capacity
  // However the round ends, a batch larger than kMaxKeptBatchBytes is not kept for the next.
  absl::Cleanup release = [this] {
    mu_.AssertHeld();
    if (round_batch_->Data().capacity() > kMaxKeptBatchBytes) round_batch_.reset();
  };
  rocksdb::Status s = batch.Put(
      cf(kSearchState), job_id,
      absl::StrCat(EncodeBigEndian64(static_cast<uint64_t>(commit.round)), commit.search_state));
  std::string head;
  TensorBlob h;  // a tensor's fields but `data`; reused, so its strings keep their capacity
  for (const auto& tensor : commit.tensors) {
    if (!s.ok()) break;
    // The stored value is the serialized TensorBlob, written as its fields without `data`
    // followed by `data` as a length-delimited field (protobuf parses fields in any order):
    // the tensor's bytes go into the batch once, not first into a serialized copy.
    h.set_name(tensor->name());
    *h.mutable_shape() = tensor->shape();
    h.set_dtype(tensor->dtype());
    h.set_version(tensor->version());
    h.set_offset(tensor->offset());
    h.set_total_bytes(tensor->total_bytes());
    head.clear();
    if (!h.AppendToString(&head)) {
      return absl::InternalError(
          absl::StrCat(what, ": tensor '", tensor->name(), "' does not serialize"));
    }
    using google::protobuf::io::CodedOutputStream;
    uint8_t field[16];
    uint8_t* end = CodedOutputStream::WriteTagToArray((TensorBlob::kDataFieldNumber << 3) | 2,
                                                      field);  // wire type 2: length-delimited
    end = CodedOutputStream::WriteVarint64ToArray(tensor->data().size(), end);
    head.append(reinterpret_cast<const char*>(field), end - field);
    const std::string key = TensorKey(job_id, tensor->name());
    const rocksdb::Slice key_part(key);
    const rocksdb::Slice value_parts[2] = {rocksdb::Slice(head), rocksdb::Slice(tensor->data())};
    s = batch.Put(cf(kParams), rocksdb::SliceParts(&key_part, 1),
                  rocksdb::SliceParts(value_parts, 2));
  }
  for (const std::string& event : commit.events) {
    if (!s.ok()) break;
    s = batch.Put(cf(kEvents), EventKey(job_id, next_event++), event);
  }
  if (s.ok() && commit.job_record.has_value()) s = batch.Put(cf(kJobs), job_id, *commit.job_record);
  NAS_RETURN_IF_ERROR(FromRocks(s, what));

  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Write(wo, &batch), what);
}

absl::StatusOr<int64_t> CheckpointStore::NextEventIndex(const std::string& job_id) const {
  JobIterator it(db_.get(), cf(kEvents), job_id);
  it->SeekToLast();
  if (!it->Valid()) {
    NAS_RETURN_IF_ERROR(
        FromRocks(it->status(), absl::StrCat("find the last event of job '", job_id, "'")));
    return 0;
  }
  int64_t last = 0;
  NAS_RETURN_IF_ERROR(DecodeEventIndex(it, job_id, &last));
  return last + 1;
}

absl::StatusOr<std::pair<int64_t, std::string>> CheckpointStore::GetSearchState(
    const std::string& job_id) const {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kSearchState), job_id, &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' has no committed round"));
  }
  NAS_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("get search state of job '", job_id, "'")));
  if (value.size() < 8) {
    return absl::DataLossError(absl::StrCat("checkpoint store: search state of job '", job_id,
                                            "' is ", value.size(),
                                            " bytes, shorter than its round"));
  }
  return std::make_pair(static_cast<int64_t>(DecodeBigEndian64(value)), value.substr(8));
}

absl::StatusOr<std::vector<TensorBlob>> CheckpointStore::LoadTensors(
    const std::string& job_id) const {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  std::vector<TensorBlob> tensors;
  JobIterator it(db_.get(), cf(kParams), job_id);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    NAS_ASSIGN_OR_RETURN(TensorBlob blob, ParseTensor(job_id, it.suffix(), it->value()));
    tensors.push_back(std::move(blob));
  }
  NAS_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("load tensors of job '", job_id, "'")));
  return tensors;
}

absl::StatusOr<TensorBlob> CheckpointStore::GetTensor(const std::string& job_id,
                                                      const std::string& name) const {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("get tensor of job '", job_id, "': empty tensor name"));
  }
  rocksdb::PinnableSlice value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf(kParams), TensorKey(job_id, name), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' has no tensor '", name, "'"));
  }
  NAS_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("get tensor '", name, "' of job '", job_id, "'")));
  return ParseTensor(job_id, name, value);
}

absl::StatusOr<std::vector<std::string>> CheckpointStore::Events(const std::string& job_id,
                                                                 int64_t from) const {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  if (from < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("events of job '", job_id, "': negative start index ", from));
  }
  std::vector<std::string> events;
  JobIterator it(db_.get(), cf(kEvents), job_id);
  for (it->Seek(EventKey(job_id, from)); it->Valid(); it->Next()) {
    events.push_back(it->value().ToString());
  }
  NAS_RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("read events of job '", job_id, "'")));
  return events;
}

absl::Status CheckpointStore::PutResult(const std::string& job_id, const std::string& result) {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Put(wo, cf(kResults), job_id, result),
                   absl::StrCat("put result of job '", job_id, "'"));
}

absl::StatusOr<std::string> CheckpointStore::GetResult(const std::string& job_id) const {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  std::string result;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kResults), job_id, &result);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("job '", job_id, "' has no result"));
  NAS_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("get result of job '", job_id, "'")));
  return result;
}

absl::Status CheckpointStore::DeleteJob(const std::string& job_id) {
  NAS_RETURN_IF_ERROR(ValidateJobId(job_id));
  const std::string what = absl::StrCat("delete job '", job_id, "'");
  absl::ReleasableMutexLock lock(&mu_);
  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  for (Cf c : {kJobs, kSearchState, kResults}) {
    if (s.ok()) s = batch.Delete(cf(c), job_id);
  }
  // Point deletes (not DeleteRange): a job has few keys, and range tombstones would slow every
  // later read of the column family until compaction drops them.
  for (Cf c : {kParams, kEvents}) {
    JobIterator it(db_.get(), cf(c), job_id);
    for (it->SeekToFirst(); s.ok() && it->Valid(); it->Next()) s = batch.Delete(cf(c), it->key());
    if (s.ok()) s = it->status();
  }
  NAS_RETURN_IF_ERROR(FromRocks(s, what));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  NAS_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), what));
  lock.Release();

  // The deletes are tombstones until a compaction drops them with the values they cover. The
  // range [<job_id>, <job_id>\x01] holds exactly the job's keys in every column family: the
  // job id itself (jobs, search_state, results) and <job_id>\0... (params, events); no other
  // job id sorts inside it (job ids have no characters below '-'). The compaction flushes the
  // memtables that overlap the range first and rewrites the bottommost level too, so nothing of
  // the job is left in a table file; other jobs' keys in the same files are copied as they are.
  const std::string begin = job_id;
  const std::string end = JobLimit(job_id);
  const rocksdb::Slice begin_slice(begin);
  const rocksdb::Slice end_slice(end);
  rocksdb::CompactRangeOptions co;
  co.exclusive_manual_compaction = false;  // rounds' flushes and compactions go on meanwhile
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  for (Cf c : {kJobs, kSearchState, kParams, kEvents, kResults}) {
    NAS_RETURN_IF_ERROR(FromRocks(
        db_->CompactRange(co, cf(c), &begin_slice, &end_slice),
        absl::StrCat("reclaim the space of deleted job '", job_id, "' in ", kKnownCfNames[c])));
  }
  return absl::OkStatus();
}

int64_t CheckpointStore::LiveFileBytes() const {
  int64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    for (const std::string* property : {&rocksdb::DB::Properties::kLiveSstFilesSize,
                                        &rocksdb::DB::Properties::kLiveBlobFileSize}) {
      uint64_t bytes = 0;
      if (db_->GetIntProperty(h, *property, &bytes)) total += static_cast<int64_t>(bytes);
    }
  }
  return total;
}

CheckpointStore::Footprint CheckpointStore::footprint() const {
  Footprint f;
  uint64_t bytes = 0;
  if (db_->GetIntProperty(cf(kParams), rocksdb::DB::Properties::kCurSizeAllMemTables, &bytes)) {
    f.tensor_memtable_bytes = static_cast<int64_t>(bytes);
  }
  // The log files as the directory lists them (NNNNNN.log; RocksDB's own text log is LOG):
  // DB::GetSortedWalFiles would pause and resume file deletion, and note both in LOG, at every
  // call of a gauge scraped all day.
  // Error codes throughout, the step to the next entry included (a range-for's would throw in
  // the coordinator's ticker); a file RocksDB deletes meanwhile is skipped.
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code size_ec;
    if (it->path().extension() != ".log" || !it->is_regular_file(size_ec)) continue;
    uintmax_t size = it->file_size(size_ec);
    if (!size_ec) f.wal_bytes += static_cast<int64_t>(size);
  }
  return f;
}

absl::StatusOr<uint64_t> CheckpointStore::NextCounter(const char* key, uint64_t at_least) {
  absl::MutexLock lock(&mu_);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kMeta), key, &value);
  uint64_t counter = 0;
  if (s.ok()) {
    if (value.size() != 8) {
      return absl::DataLossError(absl::StrCat("checkpoint store: counter '", key, "' is ",
                                              value.size(), " bytes, want 8"));
    }
    counter = DecodeBigEndian64(value);
  } else if (!s.IsNotFound()) {
    return FromRocks(s, absl::StrCat("read the counter '", key, "'"));
  }
  counter = std::max(counter + 1, at_least);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  NAS_RETURN_IF_ERROR(FromRocks(db_->Put(wo, cf(kMeta), key, EncodeBigEndian64(counter)),
                                absl::StrCat("write the counter '", key, "'")));
  return counter;
}

absl::Status CheckpointStore::Flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  std::vector<rocksdb::ColumnFamilyHandle*> all(handles_.begin(), handles_.end());
  return FromRocks(db_->Flush(fo, all), absl::StrCat("flush '", dir_, "'"));
}

absl::StatusOr<uint64_t> CheckpointStore::NextIncarnation() {
  return NextCounter(kIncarnationKey, 0);
}

absl::StatusOr<uint64_t> CheckpointStore::NextJobNumber(uint64_t at_least) {
  return NextCounter(kJobNumberKey, at_least);
}

absl::Status CheckpointStore::PutTenantUsage(const std::string& usage) {
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return FromRocks(db_->Put(wo, cf(kMeta), kTenantUsageKey, usage), "write the tenants' usage");
}

absl::StatusOr<std::string> CheckpointStore::GetTenantUsage() const {
  std::string usage;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf(kMeta), kTenantUsageKey, &usage);
  if (s.IsNotFound()) return absl::NotFoundError("the store holds no tenants' usage");
  NAS_RETURN_IF_ERROR(FromRocks(s, "read the tenants' usage"));
  return usage;
}

}  // namespace nas
