#include "coordinator/worker_gateway.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "latency_service/grpc_status.h"
#include "proto/tensor_codec.h"

namespace nas {

namespace {

using adapter::Handle;
using adapter::kChunkBytes;
using adapter::kMaxSmallRequestBytes;

// The tensor data of one CompleteTask stream (a supernet within SpaceLimits, with its momentum,
// is at most 3.2 GB).
constexpr int64_t kMaxResultStreamBytes = int64_t{4} << 30;

class WorkerGatewayAdapter final : public WorkerGateway::Service {
 public:
  WorkerGatewayAdapter(WorkerHandler* jobs, const adapter::Callers* callers)
      : jobs_(jobs), callers_(callers) {}

  grpc::Status RegisterWorker(grpc::ServerContext* ctx, const RegisterWorkerRequest* req,
                              RegisterWorkerReply* reply) override {
    return Handle("RegisterWorker", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      auto r = jobs_->RegisterWorker(*req);
      if (!r.ok()) return ToGrpcStatus(r.status());
      *reply = *r;
      return grpc::Status::OK;
    });
  }
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const HeartbeatRequest* req,
                         HeartbeatReply* reply) override {
    return Handle("Heartbeat", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      auto r = jobs_->Heartbeat(*req);
      if (!r.ok()) return ToGrpcStatus(r.status());
      *reply = *r;
      return grpc::Status::OK;
    });
  }
  grpc::Status AcquireTask(grpc::ServerContext* ctx, const AcquireTaskRequest* req,
                           AcquireTaskReply* reply) override {
    return Handle("AcquireTask", nullptr, 0, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      return ToGrpcStatus(Acquire(*req, reply));
    });
  }
  grpc::Status FetchTensors(grpc::ServerContext* ctx, const FetchTensorsRequest* req,
                            grpc::ServerWriter<TensorBlob>* writer) override {
    return Handle("FetchTensors", nullptr, 0, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      std::vector<std::string> names(req->names().begin(), req->names().end());
      auto blobs = jobs_->Fetch(req->lease_id(), names);
      if (!blobs.ok()) return ToGrpcStatus(blobs.status());
      int64_t sent = 0;
      for (const auto& b : *blobs) {
        if (!SplitIntoChunks(*b, kChunkBytes, [&](TensorBlob&& c) { return writer->Write(c); })) {
          break;
        }
        sent += static_cast<int64_t>(b->data().size());
      }
      jobs_->CountSentBytes(sent);
      return grpc::Status::OK;
    });
  }
  grpc::Status CompleteTask(grpc::ServerContext* ctx,
                            grpc::ServerReader<CompleteTaskRequest>* reader,
                            CompleteTaskReply* reply) override {
    return Handle("CompleteTask", nullptr, 0, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      // One or more results: each outcome followed by its tensors' chunks, reassembled by the
      // codec (chunks in order, sizes declared by the first chunk and bounded; a name sent twice
      // within a result is refused by the job manager).
      std::vector<CompletedTask> results;
      ChunkAssemblerOptions limits;
      limits.max_total_bytes = kMaxResultStreamBytes;
      ChunkAssembler chunks(limits);
      auto invalid = [](const absl::Status& s) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
      };
      auto add = [&](TensorBlob&& c) -> grpc::Status {
        if (results.empty()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "outcome: must be the first message of CompleteTask");
        }
        absl::StatusOr<std::optional<TensorBlob>> whole = chunks.Add(std::move(c));
        if (!whole.ok()) return invalid(whole.status());
        if (whole->has_value()) results.back().tensors.push_back(std::move(**whole));
        return grpc::Status::OK;
      };
      CompleteTaskRequest msg;
      while (reader->Read(&msg)) {
        switch (msg.part_case()) {
          case CompleteTaskRequest::kOutcome:
            if (absl::Status s = chunks.Finish(); !s.ok()) return invalid(s);
            results.emplace_back();
            results.back().outcome = std::move(*msg.mutable_outcome());
            break;
          case CompleteTaskRequest::kTensor: {
            grpc::Status s = add(std::move(*msg.mutable_tensor()));
            if (!s.ok()) return s;
            break;
          }
          case CompleteTaskRequest::kTensors:
            for (TensorBlob& c : *msg.mutable_tensors()->mutable_blobs()) {
              grpc::Status s = add(std::move(c));
              if (!s.ok()) return s;
            }
            break;
          default:
            return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "CompleteTaskRequest: empty message (no outcome or tensor)");
        }
      }
      if (results.empty())
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "outcome: missing");
      if (absl::Status s = chunks.Finish(); !s.ok()) return invalid(s);
      // The request for the next task, moved out (it lists every tensor the worker caches).
      std::optional<AcquireTaskRequest> next;
      if (TaskOutcome& o = results.back().outcome; o.has_next()) {
        next.emplace();
        next->Swap(o.mutable_next());
        o.clear_next();
      }
      absl::Status last;
      for (CompletedTask& r : results) {
        last = jobs_->Complete(std::move(r));
        if (results.size() > 1) {
          reply->add_codes(static_cast<int32_t>(last.code()));
          reply->add_messages(std::string(last.message()));
        }
      }
      // One result: its status is the call's. Several: each in `codes`, the call succeeds.
      if (results.size() == 1 && !last.ok()) return ToGrpcStatus(last);
      if (!next.has_value()) return grpc::Status::OK;
      return ToGrpcStatus(Acquire(*next, reply->mutable_next()));
    });
  }
  grpc::Status ReleaseTask(grpc::ServerContext* ctx, const ReleaseTaskRequest* req,
                           ReleaseTaskReply*) override {
    return Handle("ReleaseTask", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      return ToGrpcStatus(jobs_->Release(*req));
    });
  }

 private:
  // Up to max_tasks tasks (or idle), each with the tensors the worker lacks inline when they
  // fit its limit. A tensor inlined in an earlier task of the same reply is not repeated: a
  // worker absorbs a task's inline tensors before it runs the task, and runs a reply's tasks in
  // order (one that lacks a tensor all the same fetches it).
  absl::Status Acquire(const AcquireTaskRequest& req, AcquireTaskReply* reply) {
    int wait = std::clamp(req.wait_ms(), 0, 30000);
    int max_tasks = std::clamp(req.max_tasks(), 1, 256);
    Held held;
    for (int i = 0; i < max_tasks; ++i) {
      auto t =
          jobs_->Acquire(req.worker_id(), i == 0 ? absl::Milliseconds(wait) : absl::ZeroDuration());
      if (!t.ok()) {
        if (i == 0) return t.status();
        break;
      }
      if (!t->has_value()) {
        if (i == 0) reply->set_idle(true);
        break;
      }
      if (i == 0) {
        held.job = (*t)->job_id();
        held.versions.reserve(req.cached_size());
        for (const TensorRef& r : req.cached()) held.versions[r.name()] = r.version();
      }
      if ((*t)->job_id() == held.job) {
        Inline(req, held, **t);
      } else {  // names are per job: another job's task gets all it needs inline
        Held none;
        Inline(req, none, **t);
      }
      *(i == 0 ? reply->mutable_task() : reply->add_more()) = std::move(**t);
    }
    return absl::OkStatus();
  }

  // What the worker will hold when it runs the next task of a reply: its cache as it listed it,
  // plus what earlier tasks of the reply carried (the blobs kept alive for the names' views).
  struct Held {
    std::string job;  // the job of the reply's first task, which the cache list is taken for
    absl::flat_hash_map<absl::string_view, uint64_t> versions;
    std::vector<std::shared_ptr<const TensorBlob>> sent;
  };

  void Inline(const AcquireTaskRequest& req, Held& held, Task& task) {
    int64_t limit = std::min<int64_t>(req.inline_limit_bytes(), kChunkBytes * 4);
    if (limit <= 0 || task.tensors_size() == 0) return;
    std::vector<std::string> missing;
    for (const TensorRef& r : task.tensors()) {
      auto it = held.versions.find(r.name());
      if (it == held.versions.end() || it->second != r.version()) missing.push_back(r.name());
    }
    if (missing.empty()) return;
    auto blobs = jobs_->Fetch(task.lease_id(), missing);
    if (!blobs.ok()) return;
    int64_t total = 0;
    for (const auto& b : *blobs) total += static_cast<int64_t>(b->data().size());
    if (total > limit) return;
    task.mutable_inline_tensors()->Reserve(static_cast<int>(blobs->size()));
    for (const auto& b : *blobs) {
      *task.add_inline_tensors() = *b;
      held.versions[b->name()] = b->version();
      held.sent.push_back(b);
    }
    jobs_->CountSentBytes(total);
  }

  WorkerHandler* jobs_;
  const adapter::Callers* callers_;
};

}  // namespace

std::unique_ptr<WorkerGateway::Service> NewWorkerGatewayAdapter(WorkerHandler* handler,
                                                               const adapter::Callers* callers) {
  return std::make_unique<WorkerGatewayAdapter>(handler, callers);
}

}  // namespace nas
