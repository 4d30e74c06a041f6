#include "cli/latency_check.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/rng.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "latency_service/latency_client.h"

namespace nas {

namespace {

LatencyErrorStats Score(const std::vector<LatencyCheckSample>& samples, bool calibrated) {
  LatencyErrorStats st;
  const double n = static_cast<double>(samples.size());
  double sq = 0;
  int in10 = 0, in5 = 0;
  for (const LatencyCheckSample& s : samples) {
    const double err = (calibrated ? s.predicted_ms : s.layer_sum_ms) - s.measured_ms;
    const double pe = 100.0 * err / s.measured_ms;
    sq += err * err;
    st.mape += std::abs(pe) / n;
    st.mean_error += pe / n;
    st.mean_error_ms += err / n;
    in10 += std::abs(pe) <= 10.0;
    in5 += std::abs(pe) <= 5.0;
  }
  st.rmse_ms = std::sqrt(sq / n);
  st.within_10 = in10 / n;
  st.within_5 = in5 / n;
  return st;
}

std::string FormatStats(const LatencyErrorStats& s) {
  return absl::StrFormat(
      "RMSE %.4f ms, MAPE %.2f%%, mean error %+.2f%% (%+.4f ms), within +-10%%: %.0f%%, "
      "within +-5%%: %.0f%%",
      s.rmse_ms, s.mape, s.mean_error, s.mean_error_ms, 100 * s.within_10, 100 * s.within_5);
}

}  // namespace

absl::StatusOr<LatencyCheckReport> RunLatencyCheck(const LatencyCheckOptions& o) {
  if (o.latency_service.empty()) {
    return absl::InvalidArgumentError("latency_service: give the service as host:port");
  }
  if (o.samples < 1) return absl::InvalidArgumentError("samples: must be >= 1");
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Load(o.space));
  NAS_ASSIGN_OR_RETURN(std::unique_ptr<LatencyClient> client,
                       LatencyClient::Connect(o.latency_service));
  NAS_ASSIGN_OR_RETURN(std::vector<DeviceSummary> devices, client->ListDevices());
  ProfileOptions profile = o.profile;
  LatencyCheckReport report;
  bool found = false;
  for (const DeviceSummary& d : devices) {
    if (d.name != o.device) continue;
    found = true;
    if (profile.threads <= 0) profile.threads = d.threads;
    report.calibration = d.calibration;
  }
  if (!found) {
    return absl::NotFoundError(absl::StrCat("device: the latency service at ", o.latency_service,
                                            " has no device \"", o.device, "\""));
  }
  report.device = o.device;
  report.space = space.name();
  report.threads = profile.threads;
  Rng rng(o.seed);
  for (int s = 0; s < o.samples; ++s) {
    std::vector<int> choices;
    LatencyCheckSample sample;
    for (const EdgeSpec& e : space.edges()) {
      int c = static_cast<int>(rng.Below(e.candidates.size()));
      choices.push_back(c);
      sample.choices.push_back(e.candidates[c].Name());
    }
    NAS_ASSIGN_OR_RETURN(NetworkConfig net, space.Derive(choices));
    const std::vector<std::string> keys = net.LayerKeys();
    std::vector<LayerLatency> answers;
    NAS_RETURN_IF_ERROR(client->Query(o.device, keys, &answers));
    for (const LayerLatency& a : answers) {
      sample.layer_sum_ms += a.mean_ms;
      sample.predicted_keys += a.source == LatencySource::kPredicted;
    }
    sample.layers = static_cast<int>(keys.size());
    sample.predicted_ms = sample.layer_sum_ms;
    if (report.calibration.has_value()) {
      sample.predicted_ms += report.calibration->Correction(sample.layers);
    }
    NAS_ASSIGN_OR_RETURN(LatencyEntry measured, MeasureNetwork(net, profile, &sample.timing));
    sample.measured_ms = measured.mean_ms;
    sample.measured_std_ms = std::sqrt(measured.var);
    report.samples.push_back(std::move(sample));
  }
  double window = 0, others = 0;
  for (const LatencyCheckSample& s : report.samples) {
    window += s.timing.window_ms;
    others += s.timing.others_cpu * s.timing.window_ms;
  }
  report.others_cpu = window > 0 ? others / window : 0;
  report.layer_sum = Score(report.samples, /*calibrated=*/false);
  report.predicted = Score(report.samples, /*calibrated=*/true);
  return report;
}

std::string FormatLatencyCheck(const LatencyCheckReport& r) {
  std::string out = absl::StrFormat(
      "latency check: device %s, space %s, %d networks, measured here with %d threads\n\n"
      "| # | layers | layer sum (ms) | predicted (ms) | predicted layers | measured (ms) | +-std "
      "| re-timed | others (cores) | error |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n",
      r.device, r.space, r.samples.size(), r.threads);
  for (size_t i = 0; i < r.samples.size(); ++i) {
    const LatencyCheckSample& s = r.samples[i];
    absl::StrAppendFormat(&out,
                          "| %d | %d | %.3f | %.3f | %d | %.3f | %.3f | %d | %.2f | %+.1f%% |\n",
                          i, s.layers, s.layer_sum_ms, s.predicted_ms, s.predicted_keys,
                          s.measured_ms, s.measured_std_ms, s.timing.retimed, s.timing.others_cpu,
                          100.0 * (s.predicted_ms - s.measured_ms) / s.measured_ms);
  }
  absl::StrAppendFormat(&out,
                        "\nother processes used %.2f cores on average while the networks were "
                        "timed (0: an idle machine; timings under load are slower than the "
                        "table's)\n",
                        r.others_cpu);
  absl::StrAppendFormat(&out, "layer sum only:          %s\n", FormatStats(r.layer_sum));
  if (r.calibration.has_value()) {
    const LatencyCalibration& c = *r.calibration;
    absl::StrAppendFormat(&out, "layer sum + calibration: %s\n", FormatStats(r.predicted));
    absl::StrAppendFormat(
        &out,
        "calibration of the table: %+.4f ms per network, %+.4f ms per layer (%s; fitted on %d "
        "other networks at profiling, their RMSE %.4f -> %.4f ms)\n",
        c.overhead_ms, c.per_layer_ms, c.model, c.networks, c.raw_rmse_ms, c.rmse_ms);
  } else {
    absl::StrAppend(&out, "the table has no calibration: predictions are the layer sum\n");
  }
  return out;
}

}  // namespace nas
