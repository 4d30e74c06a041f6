#include "latency_service/proto_convert.h"

namespace nas {

const char* LatencySourceName(LatencySource s) {
  return s == LatencySource::kMeasured ? "measured" : "predicted";
}

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

}  // namespace nas
