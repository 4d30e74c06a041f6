#include "latency_service/latency_grpc_service.h"

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "latency_service/grpc_status.h"
#include "latency_service/proto_convert.h"

namespace nas {

namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
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

LatencyGrpcService::LatencyGrpcService(LatencyRegistry* registry) : registry_(registry) {
  static ArenaAllocator* const allocator = new ArenaAllocator();  // stateless, never freed
  SetMessageAllocatorFor_Query(allocator);
}

grpc::ServerUnaryReactor* LatencyGrpcService::Query(grpc::CallbackServerContext* context,
                                                    const LatencyQueryRequest* request,
                                                    LatencyQueryReply* reply) {
  std::vector<absl::string_view> keys(request->layer_keys().begin(), request->layer_keys().end());
  std::vector<LayerLatency> answers;
  absl::Status s = registry_->Query(request->device(), keys, &answers);
  if (s.ok()) {
    reply->mutable_answers()->Reserve(static_cast<int>(answers.size()));
    for (size_t i = 0; i < answers.size(); ++i) {
      LatencyAnswer* a = reply->add_answers();
      a->mutable_stat()->set_mean_ms(answers[i].mean_ms);
      a->mutable_stat()->set_std_ms(answers[i].std_ms);
      a->mutable_stat()->set_count(static_cast<uint64_t>(answers[i].count));
      a->set_source(answers[i].source == LatencySource::kMeasured ? LatencyAnswer::MEASURED
                                                                  : LatencyAnswer::PREDICTED);
    }
  }
  return Finish(context, s);
}

grpc::ServerUnaryReactor* LatencyGrpcService::ListDevices(grpc::CallbackServerContext* context,
                                                          const ListDevicesRequest* request,
                                                          ListDevicesReply* reply) {
  for (const DeviceSummary& d : registry_->ListDevices()) ToProto(d, reply->add_devices());
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* LatencyGrpcService::GetTable(grpc::CallbackServerContext* context,
                                                       const GetTableRequest* request,
                                                       TableFile* reply) {
  absl::StatusOr<std::string> json = registry_->GetTableJson(request->device());
  if (json.ok()) {
    reply->set_device(request->device());
    reply->set_content(std::move(*json));
  }
  return Finish(context, json.status());
}

grpc::ServerUnaryReactor* LatencyGrpcService::PutTable(grpc::CallbackServerContext* context,
                                                       const PutTableRequest* request,
                                                       PutTableReply* reply) {
  absl::StatusOr<LatencyTable> table = LatencyTable::ParseJson(request->table().content());
  if (!table.ok()) {
    return Finish(context, absl::InvalidArgumentError(
                               absl::StrCat("table.content: ", table.status().message())));
  }
  const std::string& device = request->table().device();
  if (!device.empty() && device != table->info().device) {
    return Finish(context, absl::InvalidArgumentError(absl::StrCat(
                               "table.device: \"", device, "\" differs from the content's \"",
                               table->info().device, "\"")));
  }
  absl::StatusOr<DeviceSummary> summary =
      registry_->PutTable(std::move(*table), request->merge() ? PutMode::kMerge : PutMode::kReplace,
                          request->if_version());
  if (summary.ok()) ToProto(*summary, reply->mutable_device());
  return Finish(context, summary.status());
}

}  // namespace nas
