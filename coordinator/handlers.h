// What the coordinator's two gRPC services call: the domain behind them, as interfaces without
// gRPC (the shape of latency_service/: domain code implements a handler, a thin adapter per
// service converts requests and statuses).
//
//   SearchHandler  - users' operations, each for an authenticated caller (TenantScope, over the
//                    JobManager, applies the tenant rules); adapter: search_service.h.
//   WorkerHandler  - the workers' protocol (the JobManager); adapter: worker_gateway.h.
//
// Errors are absl::Status with the codes the services answer (NOT_FOUND for a job the caller
// may not see, INVALID_ARGUMENT naming the field, FAILED_PRECONDITION for a stale lease, ...).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/token_auth.h"
#include "nas/search.pb.h"
#include "nas/worker.pb.h"

namespace nas {

// A task result as the gateway assembled it from the CompleteTask stream.
struct CompletedTask {
  TaskOutcome outcome;
  std::vector<TensorBlob> tensors;  // whole tensors (chunks joined)
};

class SearchHandler {
 public:
  virtual ~SearchHandler() = default;
  // The job's tenant and owner are the caller's (when identities are checked).
  virtual absl::StatusOr<std::string> Submit(const Identity& caller, JobSpec spec) = 0;
  virtual absl::StatusOr<JobStatus> Get(const Identity& caller, const std::string& job_id) = 0;
  // `tenant` empty: every job the caller may see.
  virtual absl::StatusOr<std::vector<JobStatus>> List(const Identity& caller,
                                                      const std::string& tenant) = 0;
  // Blocks until the job's status differs from `last` or `timeout`.
  virtual absl::StatusOr<JobStatus> WaitForChange(const Identity& caller,
                                                  const std::string& job_id,
                                                  const JobStatus& last,
                                                  absl::Duration timeout) = 0;
  virtual absl::Status Cancel(const Identity& caller, const std::string& job_id) = 0;
  virtual absl::Status Delete(const Identity& caller, const std::string& job_id) = 0;
  virtual absl::StatusOr<JobResult> Result(const Identity& caller, const std::string& job_id) = 0;
  virtual absl::StatusOr<std::string> Artifact(const Identity& caller, const std::string& job_id,
                                               const std::string& name) = 0;
  virtual absl::StatusOr<GetQueueReply> Queue(const Identity& caller,
                                              const std::string& tenant) = 0;
};

class WorkerHandler {
 public:
  virtual ~WorkerHandler() = default;
  virtual absl::StatusOr<RegisterWorkerReply> RegisterWorker(const RegisterWorkerRequest& r) = 0;
  virtual absl::StatusOr<HeartbeatReply> Heartbeat(const HeartbeatRequest& r) = 0;
  // The next task for the worker, waiting up to `wait`; nullopt when none.
  virtual absl::StatusOr<std::optional<Task>> Acquire(const std::string& worker_id,
                                                      absl::Duration wait) = 0;
  virtual absl::StatusOr<std::vector<std::shared_ptr<const TensorBlob>>> Fetch(
      const std::string& lease_id, const std::vector<std::string>& names) = 0;
  virtual absl::Status Complete(CompletedTask result) = 0;
  // The worker hands a current lease of its own back without a result (it is stopping): the
  // task is queued again at once. FailedPrecondition when the lease is not current or not the
  // worker's.
  virtual absl::Status Release(const ReleaseTaskRequest& r) = 0;
  // Tensor bytes sent to workers (a metric).
  virtual void CountSentBytes(int64_t bytes) = 0;
};

}  // namespace nas
