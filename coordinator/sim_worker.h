// A simulated search worker: speaks the real WorkerGateway protocol (proto/nas/worker.proto) to a
// real coordinator but computes nothing - an init task returns small synthetic tensors named like
// the supernet's, a weight task returns the tensors it fetched (plus momentum), an arch task
// returns zero gate gradients, a final task returns a report and a few bytes of "weights". Used
// to load-test the coordinator (bench/dispatch_bench) and to drive protocol tests; never part of
// a real search.
//
//   SimWorker w(channel);   NAS_RETURN_IF_ERROR(w.Register("sim-0"));
//   while (...) { NAS_ASSIGN_OR_RETURN(bool ran, w.RunOne(absl::Milliseconds(100))); }
//
// Thread-compatible: one SimWorker per thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nas/worker.grpc.pb.h"

namespace nas {

// Every tensor of a synthetic supernet of `space_json` (fixed layers and one depthwise weight,
// BN statistics and counter per candidate), `floats` values per float tensor; floats <= 0 gives
// each candidate's weight tensor its real parameter count (so bytes moved are realistic).
absl::StatusOr<std::vector<TensorBlob>> SyntheticSupernetTensors(const std::string& space_json,
                                                                 int floats);

// What a simulated worker returns for `task` (its lease id set), given the task's tensors as
// fetched (weight and arch tasks; ignored otherwise): the tensors back as they came (plus
// momentum for a weight task), gate gradients of +-0.01 for an arch task, a synthetic supernet
// for init, a report and a few bytes for a final task. Deterministic: the same task gives the
// same result. Used by SimWorker and by tests that drive a JobManager without gRPC.
absl::StatusOr<std::pair<TaskOutcome, std::vector<TensorBlob>>> SimulatedResult(
    const Task& task, std::vector<TensorBlob> tensors, int floats = 4, int64_t train_batches = 4);

class SimWorker {
 public:
  explicit SimWorker(std::shared_ptr<grpc::Channel> channel, int floats = 4);
  absl::Status Register(const std::string& name);
  // The bearer token sent with every call (a worker's credential). Default "" (none).
  void set_token(std::string token) { token_ = std::move(token); }
  const std::string& worker_id() const { return worker_id_; }
  // Training batches per epoch that an init task reports (valid: half). Default 4.
  void set_train_batches(int64_t n) { train_batches_ = n; }
  // One round trip per task: tensors inline with the task (what it lacks from its cache) and
  // the next task acquired with each completion. Default false (Acquire, Fetch, Complete).
  void set_single_round_trip(bool on) { single_round_trip_ = on; }
  // How long each task "computes" (a sleep before its result is sent), so that load tests see
  // tasks that hold a worker for a while. Default 0.
  void set_compute_time(absl::Duration d) { compute_time_ = d; }
  // Tasks taken per AcquireTask and completed per CompleteTask stream. Default 1.
  void set_batch(int n) { batch_ = n < 1 ? 1 : n; }
  // Result chunks packed several to a message (CompleteTaskRequest.tensors, as the real worker
  // sends them) or one per message (CompleteTaskRequest.tensor). Default true.
  void set_pack_chunks(bool on) { pack_chunks_ = on; }
  // Acquires one task (waiting up to `wait`), completes it; false when none came.
  absl::StatusOr<bool> RunOne(absl::Duration wait);
  // Acquires up to the batch size of tasks and completes them; returns how many.
  absl::StatusOr<int> RunSome(absl::Duration wait);
  // The last task acquired.
  const Task& last_task() const { return task_; }
  int64_t bytes_fetched() const { return bytes_fetched_; }
  // Inline tensors that a reply carried more than once (same name and version).
  int64_t inline_repeats() const { return inline_repeats_; }

  // Pieces, for tests that misbehave on purpose.
  absl::StatusOr<bool> Acquire(absl::Duration wait);
  // The named tensors, whole, reassembled by the codec (proto/tensor_codec.h): InvalidArgument
  // naming the tensor for a malformed stream.
  absl::StatusOr<std::vector<TensorBlob>> Fetch(const std::string& lease_id,
                                                const std::vector<std::string>& names);
  // The well-formed result of the last task.
  absl::StatusOr<std::pair<TaskOutcome, std::vector<TensorBlob>>> MakeResult();
  // Sends outcome then tensors, each split into chunks of `chunk` bytes (SplitIntoChunks; a
  // tensor of at most `chunk` bytes goes whole, as it is).
  absl::Status Complete(const TaskOutcome& outcome, const std::vector<TensorBlob>& tensors,
                        size_t chunk = 1 << 20, CompleteTaskReply* reply = nullptr);
  // Several results in one stream (each outcome followed by its tensors). Taken by value: a
  // caller done with them moves them in, and whole tensors then go into the messages uncopied.
  absl::Status CompleteMany(std::vector<std::pair<TaskOutcome, std::vector<TensorBlob>>> results,
                            size_t chunk, CompleteTaskReply* reply);

 private:
  // A call's deadline and the token.
  void Prepare(grpc::ClientContext* ctx, absl::Duration d) const;

  std::unique_ptr<WorkerGateway::Stub> stub_;
  std::string token_;
  int floats_;
  std::string worker_id_;
  Task task_;
  int64_t bytes_fetched_ = 0;
  int64_t inline_repeats_ = 0;
  int64_t train_batches_ = 4;
  bool single_round_trip_ = false;
  int batch_ = 1;
  absl::Duration compute_time_ = absl::ZeroDuration();
  bool pack_chunks_ = true;
  std::vector<Task> queue_;                  // tasks acquired and not yet run
  std::map<std::string, TensorBlob> cache_;  // single_round_trip_: tensors by name
  AcquireTaskRequest AcquireRequest(absl::Duration wait) const;
  // Queues a reply's tasks in order (moved out of it), counting inline repeats.
  void Queue(AcquireTaskReply& reply);
};

}  // namespace nas
