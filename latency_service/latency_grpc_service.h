// The thin gRPC adapter of the latency service: request -> LatencyRegistry call -> reply, with
// absl::Status mapped to grpc::Status (grpc_status.h). No domain logic lives here. Handlers run
// inline on gRPC's callback threads (every registry call is non-blocking apart from PutTable's
// file writes, which are rare). Query's messages live on a protobuf arena per call.
#pragma once

#include "latency_service/latency_registry.h"
#include "nas/latency.grpc.pb.h"

namespace nas {

class LatencyGrpcService final : public LatencyService::CallbackService {
 public:
  // `registry` is not owned and must outlive the service.
  explicit LatencyGrpcService(LatencyRegistry* registry);

  grpc::ServerUnaryReactor* Query(grpc::CallbackServerContext* context,
                                  const LatencyQueryRequest* request,
                                  LatencyQueryReply* reply) override;
  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext* context,
                                        const ListDevicesRequest* request,
                                        ListDevicesReply* reply) override;
  grpc::ServerUnaryReactor* GetTable(grpc::CallbackServerContext* context,
                                     const GetTableRequest* request, TableFile* reply) override;
  grpc::ServerUnaryReactor* PutTable(grpc::CallbackServerContext* context,
                                     const PutTableRequest* request, PutTableReply* reply) override;

 private:
  LatencyRegistry* registry_;
};

}  // namespace nas
