// What a test asks of the standard services every server answers (the health checking protocol,
// grpc.health.v1, and server reflection, grpc.reflection.v1alpha): the tests' grpc_health_probe
// and `grpcurl list`. Link nas_health_proto and nas_reflection_probe_proto.
//
//   auto channel = LoopbackChannel(server->port());
//   EXPECT_EQ(HealthOf(channel), HealthStatus::SERVING);
//   absl::StatusOr<std::vector<std::string>> names = ReflectedServices(channel);
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "testing/reflection_probe.pb.h"

namespace nas {

using HealthStatus = grpc::health::v1::HealthCheckResponse;

inline std::shared_ptr<grpc::Channel> LoopbackChannel(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

// Health.Check of `service` ("" the server as a whole); UNKNOWN when the call fails (then
// `*call` says why, when given).
inline HealthStatus::ServingStatus HealthOf(const std::shared_ptr<grpc::Channel>& channel,
                                            const std::string& service = "",
                                            grpc::Status* call = nullptr) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthStatus reply;
  grpc::Status s = stub->Check(&context, request, &reply);
  if (call != nullptr) *call = s;
  return s.ok() ? reply.status() : HealthStatus::UNKNOWN;
}

// One ServerReflectionInfo exchange (one request, one response) over a generic stub, with the
// test's own wire-compatible messages (reflection_probe.proto).
inline absl::StatusOr<testing::ReflectionResponse> AskReflection(
    const std::shared_ptr<grpc::Channel>& channel, const testing::ReflectionRequest& request) {
  grpc::TemplatedGenericStub<testing::ReflectionRequest, testing::ReflectionResponse> stub(
      channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  auto done = [&cq](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok && reinterpret_cast<intptr_t>(tag) == want;
  };
  testing::ReflectionResponse response;
  call->StartCall(reinterpret_cast<void*>(1));
  bool ok = done(1);
  if (ok) {
    call->Write(request, reinterpret_cast<void*>(2));
    ok = done(2);
  }
  if (ok) {
    call->Read(&response, reinterpret_cast<void*>(3));
    ok = done(3);
  }
  if (ok) {
    call->WritesDone(reinterpret_cast<void*>(4));
    ok = done(4);
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  bool finished = done(5);
  cq.Shutdown();
  void* tag;
  bool drained;
  while (cq.Next(&tag, &drained)) {
  }
  if (!finished || !status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("ServerReflectionInfo: ", status.error_code(), " ", status.error_message()));
  }
  if (!ok) return absl::UnavailableError("ServerReflectionInfo: the exchange broke off");
  return response;
}

// The services the server lists (full names).
inline absl::StatusOr<std::vector<std::string>> ReflectedServices(
    const std::shared_ptr<grpc::Channel>& channel) {
  testing::ReflectionRequest request;
  request.set_list_services("*");
  absl::StatusOr<testing::ReflectionResponse> r = AskReflection(channel, request);
  if (!r.ok()) return r.status();
  if (!r->has_list_services_response()) {
    return absl::InternalError(absl::StrCat("no service list: ", r->DebugString()));
  }
  std::vector<std::string> names;
  for (const auto& s : r->list_services_response().service()) names.push_back(s.name());
  return names;
}

}  // namespace nas
