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
  if (d.calibration.has_value()) {
    const LatencyCalibration& c = *d.calibration;
    NetworkCalibration* p = out->mutable_calibration();
    p->set_overhead_ms(c.overhead_ms);
    p->set_per_layer_ms(c.per_layer_ms);
    p->set_model(c.model);
    p->set_networks(c.networks);
    p->set_rejected(c.rejected);
    p->set_min_layers(c.min_layers);
    p->set_max_layers(c.max_layers);
    p->set_raw_rmse_ms(c.raw_rmse_ms);
    p->set_rmse_ms(c.rmse_ms);
    p->set_loo_rmse_ms(c.loo_rmse_ms);
    p->set_max_error_pct(c.max_error_pct);
  }
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
  if (d.has_calibration()) {
    const NetworkCalibration& p = d.calibration();
    LatencyCalibration c;
    c.overhead_ms = p.overhead_ms();
    c.per_layer_ms = p.per_layer_ms();
    c.model = p.model();
    c.networks = p.networks();
    c.rejected = p.rejected();
    c.min_layers = p.min_layers();
    c.max_layers = p.max_layers();
    c.raw_rmse_ms = p.raw_rmse_ms();
    c.rmse_ms = p.rmse_ms();
    c.loo_rmse_ms = p.loo_rmse_ms();
    c.max_error_pct = p.max_error_pct();
    s.calibration = c;
  }
  return s;
}

}  // namespace nas
