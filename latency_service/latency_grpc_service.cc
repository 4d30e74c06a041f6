#include "latency_service/latency_grpc_service.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "latency_service/grpc_status.h"

namespace nas {

namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& s) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

}  // namespace

void ToProto(const DeviceSummary& d, DeviceInfo* out) {
  out->set_name(d.name);
  out->set_runtime(d.runtime);
  out->set_batch_size(d.batch_size);
  out->set_threads(d.threads);
  out->set_entries(d.entries);
  out->set_profiled_at(d.profiled_at);
  out->set_method(d.method);
  out->set_version(d.version);
  out->set_predictor_fitted_entries(d.predictor.fitted_entries);
  out->set_predictor_holdout_entries(d.predictor.holdout_entries);
  out->set_predictor_holdout_mape(d.predictor.holdout_mape);
  out->set_predictor_holdout_max_ape(d.predictor.holdout_max_ape);
}

DeviceSummary FromProto(const DeviceInfo& d) {
  DeviceSummary s;
  s.name = d.name();
  s.runtime = d.runtime();
  s.batch_size = d.batch_size();
  s.threads = d.threads();
  s.entries = d.entries();
  s.profiled_at = d.profiled_at();
  s.method = d.method();
  s.version = d.version();
  s.predictor.fitted_entries = d.predictor_fitted_entries();
  s.predictor.holdout_entries = d.predictor_holdout_entries();
  s.predictor.holdout_mape = d.predictor_holdout_mape();
  s.predictor.holdout_max_ape = d.predictor_holdout_max_ape();
  return s;
}

grpc::ServerUnaryReactor* LatencyGrpcService::Query(grpc::CallbackServerContext* context,
                                                    const LatencyQueryRequest* request,
                                                    LatencyQueryReply* reply) {
  std::vector<absl::string_view> keys(request->layer_keys().begin(),
                                      request->layer_keys().end());
  std::vector<LayerLatency> answers;
  absl::Status s = registry_->Query(request->device(), keys, &answers);
  if (s.ok()) {
    reply->mutable_answers()->Reserve(static_cast<int>(answers.size()));
    for (size_t i = 0; i < answers.size(); ++i) {
      LatencyAnswer* a = reply->add_answers();
      a->set_key(request->layer_keys(static_cast<int>(i)));
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
