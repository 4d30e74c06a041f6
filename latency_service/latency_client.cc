#include "latency_service/latency_client.h"

#include <google/protobuf/arena.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "latency_service/grpc_status.h"
#include "core/status_macros.h"
#include "latency_service/grpc_tls.h"
#include "latency_service/proto_convert.h"
#include "nas/latency.grpc.pb.h"

namespace nas {

struct LatencyClient::Impl {
  std::string target;
  LatencyClientOptions options;
  std::unique_ptr<LatencyService::Stub> stub;

  // The call's deadline and, when there is one, its credential.
  void SetDeadline(grpc::ClientContext* context) const {
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(options.timeout));
    if (!options.token.empty()) context->AddMetadata("authorization", "Bearer " + options.token);
  }
};

absl::StatusOr<std::string> LatencyWriterToken(const std::string& token_file) {
  std::string path = token_file;
  if (path.empty()) {
    if (const char* t = std::getenv("NAS_LATENCY_TOKEN"); t != nullptr && *t != '\0') {
      return std::string(absl::StripAsciiWhitespace(t));
    }
    if (const char* f = std::getenv("NAS_LATENCY_TOKEN_FILE"); f != nullptr) path = f;
  }
  if (path.empty()) return std::string();
  NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 64 << 10));
  return std::string(absl::StripAsciiWhitespace(text.substr(0, text.find('\n'))));
}

LatencyClient::LatencyClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LatencyClient::~LatencyClient() = default;

absl::StatusOr<std::unique_ptr<LatencyClient>> LatencyClient::Connect(
    const std::string& target, const LatencyClientOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("target: must be host:port");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  NAS_ASSIGN_OR_RETURN(auto credentials, ChannelCredentialsFor(options.tls_ca));
  auto impl = std::make_unique<Impl>();
  impl->target = target;
  impl->options = options;
  impl->stub = LatencyService::NewStub(grpc::CreateCustomChannel(target, credentials, args));
  return std::unique_ptr<LatencyClient>(new LatencyClient(std::move(impl)));
}

absl::Status LatencyClient::Query(const std::string& device, const std::vector<std::string>& keys,
                                  std::vector<LayerLatency>* answers) {
  // A batch is thousands of small strings and messages: keep them on one arena.
  google::protobuf::ArenaOptions arena_options;
  arena_options.start_block_size = 64 << 10;
  arena_options.max_block_size = 1 << 20;
  google::protobuf::Arena arena(arena_options);
  auto* request = google::protobuf::Arena::CreateMessage<LatencyQueryRequest>(&arena);
  auto* reply = google::protobuf::Arena::CreateMessage<LatencyQueryReply>(&arena);
  request->set_device(device);
  request->mutable_layer_keys()->Reserve(static_cast<int>(keys.size()));
  for (const std::string& k : keys) request->add_layer_keys(k);
  grpc::ClientContext context;
  impl_->SetDeadline(&context);
  absl::Status s = FromGrpcStatus(impl_->stub->Query(&context, *request, reply));
  if (!s.ok()) return s;
  if (reply->answers_size() != static_cast<int>(keys.size())) {
    return absl::InternalError("server answered a different number of keys than asked");
  }
  answers->resize(keys.size());
  for (int i = 0; i < reply->answers_size(); ++i) {
    const LatencyAnswer& a = reply->answers(i);
    (*answers)[i] =
        LayerLatency{a.stat().mean_ms(), a.stat().std_ms(), static_cast<int64_t>(a.stat().count()),
                     a.source() == LatencyAnswer::PREDICTED ? LatencySource::kPredicted
                                                            : LatencySource::kMeasured,
                     a.extrapolated()};
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<DeviceSummary>> LatencyClient::ListDevices() {
  ListDevicesReply reply;
  grpc::ClientContext context;
  impl_->SetDeadline(&context);
  absl::Status s = FromGrpcStatus(impl_->stub->ListDevices(&context, {}, &reply));
  if (!s.ok()) return s;
  std::vector<DeviceSummary> out;
  for (const DeviceInfo& d : reply.devices()) out.push_back(FromProto(d));
  return out;
}

absl::StatusOr<std::string> LatencyClient::GetTableJson(const std::string& device) {
  GetTableRequest request;
  request.set_device(device);
  TableFile reply;
  grpc::ClientContext context;
  impl_->SetDeadline(&context);
  absl::Status s = FromGrpcStatus(impl_->stub->GetTable(&context, request, &reply));
  if (!s.ok()) return s;
  return reply.content();
}

absl::StatusOr<DeviceSummary> LatencyClient::PutTableJson(const std::string& content, bool merge,
                                                          uint64_t if_version) {
  PutTableRequest request;
  request.mutable_table()->set_content(content);
  request.set_merge(merge);
  request.set_if_version(if_version);
  PutTableReply reply;
  grpc::ClientContext context;
  impl_->SetDeadline(&context);
  absl::Status s = FromGrpcStatus(impl_->stub->PutTable(&context, request, &reply));
  if (!s.ok()) return s;
  return FromProto(reply.device());
}

const std::string& LatencyClient::target() const { return impl_->target; }

absl::StatusOr<LatencyTable> FetchLatencyTable(LatencyClient& client, const std::string& device,
                                               const std::vector<std::string>& keys) {
  absl::StatusOr<std::vector<DeviceSummary>> devices = client.ListDevices();
  if (!devices.ok()) return devices.status();
  const DeviceSummary* d = nullptr;
  for (const DeviceSummary& s : *devices) {
    if (s.name == device) d = &s;
  }
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat("device: the latency service at ", client.target(),
                                            " has no device \"", device, "\""));
  }
  std::vector<LayerLatency> answers;
  absl::Status s = client.Query(device, keys, &answers);
  if (!s.ok()) return s;
  int predicted = 0, extrapolated = 0;
  for (const LayerLatency& a : answers) {
    predicted += a.source == LatencySource::kPredicted;
    extrapolated += a.extrapolated;
  }
  std::string method = absl::StrCat(
      "latency service ", client.target(), ", table version ", d->version, ": ",
      keys.size() - predicted, " measured, ", predicted, " predicted (held-out MAPE ",
      d->predictor.holdout_mape, "%",
      extrapolated > 0 ? absl::StrCat(", ", extrapolated, " extrapolated beyond the fitted range")
                       : "",
      "); ", d->method);
  // The table must load again (core/latency_table.h bounds the text).
  if (method.size() > kMaxLatencyTableTextBytes) method.resize(kMaxLatencyTableTextBytes);
  LatencyTable t(
      LatencyTableInfo{device, d->runtime, d->batch_size, d->threads, d->profiled_at, method});
  t.mutable_info().calibration = d->calibration;
  for (size_t i = 0; i < keys.size(); ++i) {
    const LayerLatency& a = answers[i];
    LatencyEntry e{a.source == LatencySource::kMeasured ? std::max<int64_t>(a.count, 1) : 1,
                   a.mean_ms, a.std_ms * a.std_ms};
    s = t.Insert(keys[i], e);
    if (!s.ok()) return s;
  }
  return t;
}

}  // namespace nas
