#include "coordinator/search_service.h"

#include "core/search_space.h"
#include "latency_service/grpc_status.h"

namespace nas {

namespace {

using adapter::Handle;
using adapter::kChunkBytes;
using adapter::kMaxSmallRequestBytes;

// A SubmitJob request: a spec with the largest space document and room for its other fields.
constexpr size_t kMaxSubmitBytes = SpaceLimits::kMaxJsonBytes + (64 << 10);

// `*reply` = the value, or the status as the call's.
template <typename T, typename Reply>
grpc::Status Answer(absl::StatusOr<T> v, Reply* reply) {
  if (!v.ok()) return ToGrpcStatus(v.status());
  *reply = *std::move(v);
  return grpc::Status::OK;
}

bool Ended(const JobStatus& s) {
  return s.state() == "DONE" || s.state() == "FAILED" || s.state() == "CANCELLED";
}

}  // namespace

grpc::Status SearchServiceAdapter::SubmitJob(grpc::ServerContext* ctx, const SubmitJobRequest* req,
                                             SubmitJobReply* reply) {
  return Handle("SubmitJob", req, kMaxSubmitBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto id = handler_->Submit(*who, req->spec());
    if (!id.ok()) return ToGrpcStatus(id.status());
    reply->set_job_id(*id);
    return grpc::Status::OK;
  });
}

grpc::Status SearchServiceAdapter::GetJob(grpc::ServerContext* ctx, const GetJobRequest* req,
                                          JobStatus* reply) {
  return Handle("GetJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    return Answer(handler_->Get(*who, req->job_id()), reply);
  });
}

grpc::Status SearchServiceAdapter::ListJobs(grpc::ServerContext* ctx, const ListJobsRequest* req,
                                            ListJobsReply* reply) {
  return Handle("ListJobs", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto jobs = handler_->List(*who, req->tenant());
    if (!jobs.ok()) return ToGrpcStatus(jobs.status());
    for (JobStatus& s : *jobs) *reply->add_jobs() = std::move(s);
    return grpc::Status::OK;
  });
}

grpc::Status SearchServiceAdapter::WatchJob(grpc::ServerContext* ctx, const GetJobRequest* req,
                                            grpc::ServerWriter<JobStatus>* writer) {
  return Handle("WatchJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto s = handler_->Get(*who, req->job_id());
    if (!s.ok()) return ToGrpcStatus(s.status());
    JobStatus last = *s;
    if (!writer->Write(last)) return grpc::Status::OK;
    while (!ctx->IsCancelled() && !Ended(last)) {
      auto next = handler_->WaitForChange(*who, req->job_id(), last, absl::Seconds(1));
      if (!next.ok()) return ToGrpcStatus(next.status());
      if (next->SerializeAsString() == last.SerializeAsString()) continue;
      last = *next;
      if (!writer->Write(last)) break;
    }
    return grpc::Status::OK;
  });
}

grpc::Status SearchServiceAdapter::CancelJob(grpc::ServerContext* ctx, const CancelJobRequest* req,
                                             CancelJobReply*) {
  return Handle("CancelJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    return ToGrpcStatus(handler_->Cancel(*who, req->job_id()));
  });
}

grpc::Status SearchServiceAdapter::DeleteJob(grpc::ServerContext* ctx, const DeleteJobRequest* req,
                                             DeleteJobReply*) {
  return Handle("DeleteJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    return ToGrpcStatus(handler_->Delete(*who, req->job_id()));
  });
}

grpc::Status SearchServiceAdapter::GetQueue(grpc::ServerContext* ctx, const GetQueueRequest* req,
                                            GetQueueReply* reply) {
  return Handle("GetQueue", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    return Answer(handler_->Queue(*who, req->tenant()), reply);
  });
}

grpc::Status SearchServiceAdapter::GetResult(grpc::ServerContext* ctx, const GetJobRequest* req,
                                             JobResult* reply) {
  return Handle("GetResult", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    return Answer(handler_->Result(*who, req->job_id()), reply);
  });
}

grpc::Status SearchServiceAdapter::GetArtifact(grpc::ServerContext* ctx,
                                               const GetArtifactRequest* req,
                                               grpc::ServerWriter<ArtifactChunk>* writer) {
  return Handle("GetArtifact", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
    auto who = callers_->User(ctx);
    if (!who.ok()) return ToGrpcStatus(who.status());
    auto a = handler_->Artifact(*who, req->job_id(), req->name());
    if (!a.ok()) return ToGrpcStatus(a.status());
    for (size_t off = 0; off < a->size() || off == 0; off += kChunkBytes) {
      ArtifactChunk c;
      c.set_data(a->substr(off, kChunkBytes));
      if (!writer->Write(c)) break;
      if (a->empty()) break;
    }
    return grpc::Status::OK;
  });
}

}  // namespace nas
