// The thin gRPC adapter of the latency service: request -> LatencyRegistry call -> reply, with
// absl::Status mapped to grpc::Status (grpc_status.h). No domain logic lives here. Handlers run
// inline on gRPC's callback threads (every registry call is non-blocking apart from PutTable's
// file writes, which are rare). Query's messages live on a protobuf arena per call.
//
// With a TokenAuthenticator, PutTable first checks the caller's `authorization` metadata
// (WriterCheck below); the read-only RPCs never look at it.
#pragma once

#include "absl/status/status.h"
#include "coordinator/token_auth.h"
#include "latency_service/latency_registry.h"
#include "nas/latency.grpc.pb.h"

namespace nas {

// Whether a call may change tables. nullptr `writers`: every call may. Otherwise OK for a token
// of role `writer`; UNAUTHENTICATED without a token or with an unknown one, PERMISSION_DENIED
// naming the token's role for any other role. Never echoes the token.
absl::Status WriterCheck(TokenAuthenticator* writers, const grpc::ServerContextBase& context);

class LatencyGrpcService final : public LatencyService::CallbackService {
 public:
  // `registry` and `writers` are not owned and must outlive the service; `writers` may be
  // nullptr (PutTable open to every caller).
  explicit LatencyGrpcService(LatencyRegistry* registry, TokenAuthenticator* writers = nullptr);

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
  TokenAuthenticator* writers_;
};

}  // namespace nas
