// The pipelined checkpoint writer: a background thread that writes search rounds' checkpoints
// (CheckpointStore::CommitRound, one synced RocksDB batch each) in the order they were queued,
// while the next rounds run (JobManagerOptions::pipelined_commits).
//
// The pipeline shares its owner's lock and condition variable: Enqueue, Pending and Await are
// called with the owner's mutex held; the writer takes it to pop a round and again, after the
// write, to count it and call `on_written`, then signals the owner's condition variable (which
// wakes Await and whoever else waits for a job to change). When a write fails, the job's later
// rounds still queued are dropped (they must not land on top of a missing one) and reported
// with it. Destruction writes what is queued, then stops the thread.
//
//   absl::Mutex mu;
//   absl::CondVar changed;
//   CommitPipeline::Options options;
//   options.store = store;
//   options.mu = &mu;
//   options.changed = &changed;
//   options.on_written = [&](const CommitPipeline::Written& w) {
//     if (w.status.ok()) committed_round[w.job_id] = w.round;
//   };
//   CommitPipeline pipeline(std::move(options));
//   {
//     absl::MutexLock lock(&mu);
//     pipeline.Enqueue(std::move(commit), gauges);  // returns at once
//     if (pipeline.Pending("j000001") >= 2) ...     // the job is two rounds ahead: hold it
//     pipeline.Await("j000001");                    // releases mu until its rounds are written
//   }
//
// Thread-safety: Enqueue, Pending and Await require the owner's mutex (`Options::mu`) held;
// `on_written` is called on the writer thread with it held. The destructor must be called
// without it held.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/checkpoint_store.h"

namespace nas {

// A search round's gauges, recorded with the duration of its commit once it is written.
struct RoundGauges {
  double train_loss = 0, val_accuracy = 0, expected_ms = 0, target_ms = 0, entropy = 0;
  double weight_steps = 0;  // SGD steps the round applied
};

class CommitPipeline {
 public:
  // What the writer reports of each round it wrote or failed to write.
  struct Written {
    const std::string& job_id;
    int64_t round;
    absl::Status status;  // the store's
    double seconds;       // the write's wall time
    const RoundGauges& gauges;
    int dropped;  // the job's later rounds dropped from the queue (status not OK)
  };
  struct Options {
    // Where rounds are written. Required. Default null.
    CheckpointStore* store = nullptr;
    // The owner's mutex, held around Enqueue, Pending, Await and `on_written`. Required.
    // Default null.
    absl::Mutex* mu = nullptr;
    // The owner's condition variable, signalled (SignalAll) after every write. Required.
    // Default null.
    absl::CondVar* changed = nullptr;
    // Called after every write, with `*mu` held, on the writer thread. Default none.
    std::function<void(const Written&)> on_written;
  };

  // Starts the writer thread.
  explicit CommitPipeline(Options options);
  // Writes what is queued, then stops the writer. Call without `*mu` held.
  ~CommitPipeline();
  CommitPipeline(const CommitPipeline&) = delete;
  CommitPipeline& operator=(const CommitPipeline&) = delete;

  // Queues a round for writing (after the rounds queued before it). Returns at once.
  void Enqueue(RoundCommit commit, RoundGauges gauges) ABSL_EXCLUSIVE_LOCKS_REQUIRED(*options_.mu);
  // The job's rounds queued or being written.
  int Pending(const std::string& job_id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(*options_.mu) {
    auto it = pending_.find(job_id);
    return it == pending_.end() ? 0 : it->second;
  }
  // Waits (releasing `*mu`) until the job has no rounds queued or being written, so that a
  // write that follows lands after them.
  void Await(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(*options_.mu);

 private:
  struct Entry {
    RoundCommit commit;
    RoundGauges gauges;
  };
  void Loop();

  const Options options_;
  absl::CondVar work_;  // the queue became non-empty, or stopping
  std::deque<Entry> queue_ ABSL_GUARDED_BY(*options_.mu);
  absl::flat_hash_map<std::string, int> pending_ ABSL_GUARDED_BY(*options_.mu);
  bool stopping_ ABSL_GUARDED_BY(*options_.mu) = false;
  std::thread writer_;
};

}  // namespace nas
