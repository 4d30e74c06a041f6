// The SearchService's thin gRPC adapter (proto/nas/search.proto): the caller from the call's
// bearer token (grpc_adapter.h's Callers), the request's size checked, then one SearchHandler
// call (tenant_scope.h) and its absl::Status as a grpc::Status. No domain logic here.
//
// A synchronous service: WatchJob holds its handler thread while it follows a job (the
// handler's WaitForChange blocks). Internal to the coordinator's server.
#pragma once

#include <grpcpp/grpcpp.h>

#include "coordinator/grpc_adapter.h"
#include "coordinator/handlers.h"
#include "nas/search.grpc.pb.h"

namespace nas {

class SearchServiceAdapter final : public SearchService::Service {
 public:
  // Not owned; both must outlive the service.
  SearchServiceAdapter(SearchHandler* handler, const adapter::Callers* callers)
      : handler_(handler), callers_(callers) {}

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const SubmitJobRequest* req,
                         SubmitJobReply* reply) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const GetJobRequest* req,
                      JobStatus* reply) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx, const ListJobsRequest* req,
                        ListJobsReply* reply) override;
  grpc::Status WatchJob(grpc::ServerContext* ctx, const GetJobRequest* req,
                        grpc::ServerWriter<JobStatus>* writer) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx, const CancelJobRequest* req,
                         CancelJobReply* reply) override;
  grpc::Status DeleteJob(grpc::ServerContext* ctx, const DeleteJobRequest* req,
                         DeleteJobReply* reply) override;
  grpc::Status GetQueue(grpc::ServerContext* ctx, const GetQueueRequest* req,
                        GetQueueReply* reply) override;
  grpc::Status GetResult(grpc::ServerContext* ctx, const GetJobRequest* req,
                         JobResult* reply) override;
  grpc::Status GetArtifact(grpc::ServerContext* ctx, const GetArtifactRequest* req,
                           grpc::ServerWriter<ArtifactChunk>* writer) override;

 private:
  SearchHandler* handler_;
  const adapter::Callers* callers_;
};

}  // namespace nas
