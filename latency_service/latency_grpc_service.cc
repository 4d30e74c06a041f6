#include "latency_service/latency_grpc_service.h"

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

#include <exception>
#include <new>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "latency_service/grpc_status.h"
#include "latency_service/proto_convert.h"

namespace nas {

namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

// Runs a handler's body; whatever it throws (std::bad_alloc on a huge batch, a library's
// exception) becomes the call's status instead of taking the server down.
template <typename F>
absl::Status Guarded(const char* rpc, F body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(rpc, ": out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(rpc, ": ", e.what()));
  }
}

// Request and reply of one Query on a protobuf arena: a 1000-key batch is thousands of small
// messages and strings, which the arena frees at once instead of one by one.
class ArenaHolder final : public grpc::MessageHolder<LatencyQueryRequest, LatencyQueryReply> {
 public:
  ArenaHolder() : arena_(Options()) {
    set_request(google::protobuf::Arena::CreateMessage<LatencyQueryRequest>(&arena_));
    set_response(google::protobuf::Arena::CreateMessage<LatencyQueryReply>(&arena_));
  }
  void Release() override { delete this; }

 private:
  static google::protobuf::ArenaOptions Options() {
    google::protobuf::ArenaOptions o;
    o.start_block_size = 64 << 10;
    o.max_block_size = 1 << 20;
    return o;
  }
  google::protobuf::Arena arena_;
};

class ArenaAllocator final : public grpc::MessageAllocator<LatencyQueryRequest, LatencyQueryReply> {
 public:
  grpc::MessageHolder<LatencyQueryRequest, LatencyQueryReply>* AllocateMessages() override {
    return new ArenaHolder();
  }
};

}  // namespace

absl::Status WriterCheck(TokenAuthenticator* writers, const grpc::ServerContextBase& context) {
  if (writers == nullptr) return absl::OkStatus();
  absl::string_view header;
  const auto& metadata = context.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    header = absl::string_view(it->second.data(), it->second.size());
  }
  NAS_ASSIGN_OR_RETURN(Identity who, writers->Authenticate(header));
  if (who.role != Role::kWriter) {
    return absl::PermissionDeniedError(absl::StrCat(
        "authorization: the token of user '", who.user, "' has role ", RoleName(who.role),
        "; PutTable takes a token of role writer (latency_server --writer_tokens_file)"));
  }
  return absl::OkStatus();
}

LatencyGrpcService::LatencyGrpcService(LatencyRegistry* registry, TokenAuthenticator* writers)
    : registry_(registry), writers_(writers) {
  static ArenaAllocator* const allocator = new ArenaAllocator();  // stateless, never freed
  SetMessageAllocatorFor_Query(allocator);
}

grpc::ServerUnaryReactor* LatencyGrpcService::Query(grpc::CallbackServerContext* context,
                                                    const LatencyQueryRequest* request,
                                                    LatencyQueryReply* reply) {
  return Finish(context, Guarded("Query", [&] {
                  std::vector<absl::string_view> keys(request->layer_keys().begin(),
                                                      request->layer_keys().end());
                  std::vector<LayerLatency> answers;
                  absl::Status s = registry_->Query(request->device(), keys, &answers);
                  if (!s.ok()) return s;
                  reply->mutable_answers()->Reserve(static_cast<int>(answers.size()));
                  for (const LayerLatency& answer : answers) {
                    LatencyAnswer* a = reply->add_answers();
                    a->mutable_stat()->set_mean_ms(answer.mean_ms);
                    a->mutable_stat()->set_std_ms(answer.std_ms);
                    a->mutable_stat()->set_count(static_cast<uint64_t>(answer.count));
                    a->set_source(answer.source == LatencySource::kMeasured
                                      ? LatencyAnswer::MEASURED
                                      : LatencyAnswer::PREDICTED);
                    if (answer.extrapolated) a->set_extrapolated(true);
                  }
                  return absl::OkStatus();
                }));
}

grpc::ServerUnaryReactor* LatencyGrpcService::ListDevices(grpc::CallbackServerContext* context,
                                                          const ListDevicesRequest* request,
                                                          ListDevicesReply* reply) {
  return Finish(context, Guarded("ListDevices", [&] {
                  for (const DeviceSummary& d : registry_->ListDevices()) {
                    ToProto(d, reply->add_devices());
                  }
                  return absl::OkStatus();
                }));
}

grpc::ServerUnaryReactor* LatencyGrpcService::GetTable(grpc::CallbackServerContext* context,
                                                       const GetTableRequest* request,
                                                       TableFile* reply) {
  return Finish(context, Guarded("GetTable", [&] {
                  absl::StatusOr<std::string> json = registry_->GetTableJson(request->device());
                  if (!json.ok()) return json.status();
                  reply->set_device(request->device());
                  reply->set_content(std::move(*json));
                  return absl::OkStatus();
                }));
}

grpc::ServerUnaryReactor* LatencyGrpcService::PutTable(grpc::CallbackServerContext* context,
                                                       const PutTableRequest* request,
                                                       PutTableReply* reply) {
  return Finish(context, Guarded("PutTable", [&]() -> absl::Status {
                  NAS_RETURN_IF_ERROR(WriterCheck(writers_, *context));
                  const std::string& content = request->table().content();
                  if (content.size() > kMaxLatencyTableBytes) {
                    return absl::ResourceExhaustedError(absl::StrCat(
                        "table.content: ", content.size(), " bytes exceed the limit of ",
                        kMaxLatencyTableBytes, " bytes per table"));
                  }
                  const std::string& device = request->table().device();
                  if (!device.empty()) {
                    NAS_RETURN_IF_ERROR(ValidateDeviceName(device, "table.device"));
                  }
                  absl::StatusOr<LatencyTable> table = LatencyTable::ParseJson(content);
                  if (!table.ok()) {
                    return absl::Status(table.status().code(),
                                        absl::StrCat("table.content: ", table.status().message()));
                  }
                  if (!device.empty() && device != table->info().device) {
                    return absl::InvalidArgumentError(
                        absl::StrCat("table.device: \"", device, "\" differs from the content's \"",
                                     absl::CHexEscape(table->info().device), "\""));
                  }
                  absl::StatusOr<DeviceSummary> summary = registry_->PutTable(
                      std::move(*table), request->merge() ? PutMode::kMerge : PutMode::kReplace,
                      request->if_version());
                  if (!summary.ok()) return summary.status();
                  ToProto(*summary, reply->mutable_device());
                  return absl::OkStatus();
                }));
}

}  // namespace nas
