// What the coordinator's two gRPC adapters share (internal to coordinator/): who is calling
// (the bearer token of the call's metadata), the request size check, and the guard that keeps
// exceptions inside a handler. Not for use outside the adapters.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <exception>
#include <new>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "coordinator/token_auth.h"
#include "core/status_macros.h"
#include "proto/tensor_codec.h"

namespace nas {
namespace adapter {

// Largest chunk of tensor or artifact data in one message.
inline constexpr size_t kChunkBytes = kDefaultChunkBytes;

// Requests that name a job, a lease or a worker and little else.
inline constexpr size_t kMaxSmallRequestBytes = 4 << 10;

// RESOURCE_EXHAUSTED naming the method and the limit when `request` is larger than `limit`.
inline grpc::Status CheckSize(const char* method, const google::protobuf::Message& request, size_t limit) {
  if (size_t n = request.ByteSizeLong(); n > limit) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat(method, ": ", n, " bytes, over the limit of ", limit));
  }
  return grpc::Status::OK;
}

// Runs a handler's body so that no exception escapes it (gRPC would answer "Unexpected error in
// RPC handling" without saying what): memory is RESOURCE_EXHAUSTED, anything else INTERNAL,
// both naming the method. The request's size is checked first.
template <typename Body>
grpc::Status Handle(const char* method, const google::protobuf::Message* request, size_t limit,
                    Body&& body) {
  try {
    if (request != nullptr) {
      grpc::Status s = CheckSize(method, *request, limit);
      if (!s.ok()) return s;
    }
    return body();
  } catch (const std::bad_alloc&) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat(method, ": out of memory"));
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat(method, ": ", e.what()));
  }
}

// Who is calling: the bearer token of the call's `authorization` metadata, checked against the
// tokens file. Without a tokens file every caller is trusted (an anonymous admin, or worker).
class Callers {
 public:
  explicit Callers(TokenAuthenticator* auth) : auth_(auth) {}
  bool enabled() const { return auth_ != nullptr; }

  // A user or an admin; a worker's (or a latency table writer's) credential is
  // PERMISSION_DENIED here.
  absl::StatusOr<Identity> User(const grpc::ServerContext* ctx) const {
    if (auth_ == nullptr) return Identity{"", "", Role::kAdmin};
    NAS_ASSIGN_OR_RETURN(Identity who, auth_->Authenticate(Header(ctx)));
    if (who.role == Role::kWorker || who.role == Role::kWriter) {
      return absl::PermissionDeniedError(
          absl::StrCat("authorization: this token is a ", RoleName(who.role),
                       "'s credential; the user service takes user tokens"));
    }
    return who;
  }
  // A worker; a user's or an admin's token is PERMISSION_DENIED here.
  absl::Status Worker(const grpc::ServerContext* ctx) const {
    if (auth_ == nullptr) return absl::OkStatus();
    NAS_ASSIGN_OR_RETURN(Identity who, auth_->Authenticate(Header(ctx)));
    if (who.role != Role::kWorker) {
      return absl::PermissionDeniedError(
          "authorization: this token is a user's; the worker gateway takes worker credentials");
    }
    return absl::OkStatus();
  }

 private:
  static absl::string_view Header(const grpc::ServerContext* ctx) {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it == md.end()) return {};
    return absl::string_view(it->second.data(), it->second.size());
  }
  TokenAuthenticator* auth_;
};

}  // namespace adapter
}  // namespace nas
