// The worker's side of the coordinator's WorkerGateway (proto/nas/worker.proto), as an interface
// without gRPC types: the worker loop (remote_worker.cc) talks to a GatewayClient, the process
// to the gRPC one (CreateGrpcGatewayClient), unit tests to FakeGatewayClient, which serves tasks
// and tensors from memory and records what the worker sent.
//
// Errors are absl::Status with the gRPC code of the reply (absl and gRPC share the numbering):
// NOT_FOUND (an unknown worker or lease), FAILED_PRECONDITION (a stale lease), UNAVAILABLE (the
// coordinator cannot be reached), CANCELLED (StopPolling), DEADLINE_EXCEEDED, ...
//
//   NAS_ASSIGN_OR_RETURN(std::unique_ptr<GatewayClient> client, CreateGrpcGatewayClient(o));
//   RegisterWorkerReply reply;
//   NAS_RETURN_IF_ERROR(client->RegisterWorker(request, &reply));
//
// Thread-safety: every method may be called from any thread, concurrently (the worker's main
// thread polls and streams while its heartbeat thread sends heartbeats).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nas/worker.pb.h"

namespace nas {

class GatewayClient {
 public:
  virtual ~GatewayClient() = default;

  virtual absl::Status RegisterWorker(const RegisterWorkerRequest& request,
                                      RegisterWorkerReply* reply) = 0;
  virtual absl::Status Heartbeat(const HeartbeatRequest& request, HeartbeatReply* reply) = 0;
  // Long-polls for up to request.wait_ms. After StopPolling (from any thread) a poll in flight
  // ends and every later one returns CANCELLED at once.
  virtual absl::Status AcquireTask(const AcquireTaskRequest& request, AcquireTaskReply* reply) = 0;
  virtual void StopPolling() = 0;
  virtual absl::Status ReleaseTask(const ReleaseTaskRequest& request, ReleaseTaskReply* reply) = 0;
  // Streams the requested tensors' chunks into on_blob. An error of on_blob cancels the stream
  // and is returned as it is.
  virtual absl::Status FetchTensors(const FetchTensorsRequest& request,
                                    const std::function<absl::Status(TensorBlob&&)>& on_blob) = 0;
  // One CompleteTask stream: `produce` writes the messages through `write` (false: the stream
  // broke; stop writing) and returns true when it wrote everything, false to cancel the stream
  // (the coordinator then applies nothing). The reply comes back in `reply`.
  using MessageWriter = std::function<bool(const CompleteTaskRequest&)>;
  virtual absl::Status CompleteTask(const std::function<bool(const MessageWriter&)>& produce,
                                    CompleteTaskReply* reply) = 0;
};

struct GrpcGatewayClientOptions {
  // The coordinator's WorkerGateway address, host:port. Required.
  std::string coordinator;
  // Sent as 'authorization: Bearer TOKEN' with every call; empty: none. Default "".
  std::string token;
  // PEM certificates to trust for TLS; empty: plaintext. Default "".
  std::string tls_ca;
  // Deadline of each unary call (an AcquireTask's: this plus its wait). Default 30 s.
  absl::Duration rpc_timeout = absl::Seconds(30);
  // Deadline of each FetchTensors / CompleteTask stream. Default 10 min.
  absl::Duration stream_timeout = absl::Minutes(10);
  // gRPC max send/receive message size. Default 64 MiB.
  int max_message_bytes = 64 << 20;
};

// A client over one gRPC channel (connects lazily). InvalidArgument: bad TLS material.
absl::StatusOr<std::unique_ptr<GatewayClient>> CreateGrpcGatewayClient(
    const GrpcGatewayClientOptions& options);

// An in-memory WorkerGateway for unit tests of the worker loop: tasks queued with AddTask are
// handed out in order (idle replies when none), FetchTensors serves blobs set with SetBlobs, and
// every CompleteTask and ReleaseTask is recorded. Calls may be made to fail with FailNext.
class FakeGatewayClient : public GatewayClient {
 public:
  struct Completion {
    TaskOutcome outcome;
    std::vector<TensorBlob> blobs;  // every chunk, in order
  };

  void AddTask(Task task);
  // The chunks FetchTensors sends for `name` (any lease).
  void SetBlobs(const std::string& name, std::vector<TensorBlob> chunks);
  // The next call of `method` ("RegisterWorker", "Heartbeat", "AcquireTask", "FetchTensors",
  // "CompleteTask", "ReleaseTask") returns `status`.
  void FailNext(const std::string& method, absl::Status status);
  // Heartbeat replies say lease_valid = valid. Default true.
  void SetLeaseValid(bool valid);

  std::vector<Completion> completions() const;
  std::vector<ReleaseTaskRequest> releases() const;
  std::vector<FetchTensorsRequest> fetches() const;
  int registrations() const;

  absl::Status RegisterWorker(const RegisterWorkerRequest& request,
                              RegisterWorkerReply* reply) override;
  absl::Status Heartbeat(const HeartbeatRequest& request, HeartbeatReply* reply) override;
  absl::Status AcquireTask(const AcquireTaskRequest& request, AcquireTaskReply* reply) override;
  void StopPolling() override;
  absl::Status ReleaseTask(const ReleaseTaskRequest& request, ReleaseTaskReply* reply) override;
  absl::Status FetchTensors(const FetchTensorsRequest& request,
                            const std::function<absl::Status(TensorBlob&&)>& on_blob) override;
  absl::Status CompleteTask(const std::function<bool(const MessageWriter&)>& produce,
                            CompleteTaskReply* reply) override;

 private:
  absl::Status TakeFailure(const std::string& method) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<TensorBlob>> blobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<Completion> completions_ ABSL_GUARDED_BY(mu_);
  std::vector<ReleaseTaskRequest> releases_ ABSL_GUARDED_BY(mu_);
  std::vector<FetchTensorsRequest> fetches_ ABSL_GUARDED_BY(mu_);
  int registrations_ ABSL_GUARDED_BY(mu_) = 0;
  bool lease_valid_ ABSL_GUARDED_BY(mu_) = true;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace nas
