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
  bool found = false;
  for (const DeviceSummary& d : devices) {
    if (d.name != o.device) continue;
    found = true;
    if (profile.threads <= 0) profile.threads = d.threads;
  }
  if (!found) {
    return absl::NotFoundError(absl::StrCat("device: the latency service at ", o.latency_service,
                                            " has no device \"", o.device, "\""));
  }
  LatencyCheckReport report;
  report.device = o.device;
  report.space = space.name();
  report.threads = profile.threads;
  Rng rng(o.seed);
  double sq = 0, ape = 0, signed_pe = 0;
  int in10 = 0, in5 = 0;
  for (int s = 0; s < o.samples; ++s) {
    std::vector<int> choices;
    LatencyCheckSample sample;
    for (const EdgeSpec& e : space.edges()) {
      int c = static_cast<int>(rng.Below(e.candidates.size()));
      choices.push_back(c);
      sample.choices.push_back(e.candidates[c].Name());
    }
    NAS_ASSIGN_OR_RETURN(NetworkConfig net, space.Derive(choices));
    std::vector<LayerLatency> answers;
    NAS_RETURN_IF_ERROR(client->Query(o.device, net.LayerKeys(), &answers));
    for (const LayerLatency& a : answers) {
      sample.predicted_ms += a.mean_ms;
      sample.predicted_keys += a.source == LatencySource::kPredicted;
    }
    NAS_ASSIGN_OR_RETURN(LatencyEntry measured, MeasureNetwork(net, profile));
    sample.measured_ms = measured.mean_ms;
    sample.measured_std_ms = std::sqrt(measured.var);
    const double err = sample.predicted_ms - sample.measured_ms;
    const double pe = 100.0 * err / sample.measured_ms;
    sq += err * err;
    ape += std::abs(pe);
    signed_pe += pe;
    in10 += std::abs(pe) <= 10.0;
    in5 += std::abs(pe) <= 5.0;
    report.samples.push_back(std::move(sample));
  }
  const double n = o.samples;
  report.rmse_ms = std::sqrt(sq / n);
  report.mape = ape / n;
  report.mean_error = signed_pe / n;
  report.within_10 = in10 / n;
  report.within_5 = in5 / n;
  if (report.samples.size() >= 2) {
    double offset = 0;
    int fitted = 0;
    for (size_t i = 0; i < report.samples.size(); i += 2) {
      offset += report.samples[i].measured_ms - report.samples[i].predicted_ms;
      ++fitted;
    }
    report.overhead_ms = offset / fitted;
    double c_ape = 0;
    int c_in10 = 0, c_in5 = 0, held = 0;
    for (size_t i = 1; i < report.samples.size(); i += 2) {
      const LatencyCheckSample& s = report.samples[i];
      const double pe =
          100.0 * std::abs(s.predicted_ms + report.overhead_ms - s.measured_ms) / s.measured_ms;
      c_ape += pe;
      c_in10 += pe <= 10.0;
      c_in5 += pe <= 5.0;
      ++held;
    }
    report.heldout_samples = held;
    report.corrected_mape = c_ape / held;
    report.corrected_within_10 = static_cast<double>(c_in10) / held;
    report.corrected_within_5 = static_cast<double>(c_in5) / held;
  }
  return report;
}

std::string FormatLatencyCheck(const LatencyCheckReport& r) {
  std::string out = absl::StrFormat(
      "latency check: device %s, space %s, %d networks, measured here with %d threads\n\n"
      "| # | predicted (ms) | predicted layers | measured (ms) | +-std | error |\n"
      "|---|---|---|---|---|---|\n",
      r.device, r.space, r.samples.size(), r.threads);
  for (size_t i = 0; i < r.samples.size(); ++i) {
    const LatencyCheckSample& s = r.samples[i];
    absl::StrAppendFormat(&out, "| %d | %.3f | %d | %.3f | %.3f | %+.1f%% |\n", i, s.predicted_ms,
                          s.predicted_keys, s.measured_ms, s.measured_std_ms,
                          100.0 * (s.predicted_ms - s.measured_ms) / s.measured_ms);
  }
  absl::StrAppendFormat(&out,
                        "\nRMSE %.4f ms, MAPE %.2f%%, mean error %+.2f%%, within +-10%%: %.0f%%, "
                        "within +-5%%: %.0f%%\n",
                        r.rmse_ms, r.mape, r.mean_error, 100 * r.within_10, 100 * r.within_5);
  if (r.heldout_samples > 0) {
    absl::StrAppendFormat(&out,
                          "layer sum + %.4f ms per-network overhead (fitted on the even-numbered "
                          "networks), on the %d others: MAPE %.2f%%, within +-10%%: %.0f%%, "
                          "within +-5%%: %.0f%%\n",
                          r.overhead_ms, r.heldout_samples, r.corrected_mape,
                          100 * r.corrected_within_10, 100 * r.corrected_within_5);
  }
  return out;
}

}  // namespace nas
