#include "cli/latency_check.h"

#include <algorithm>
#include <cmath>
#include <map>

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

// Layers the service answered from measurements, up to `n` spread over them in key order: the
// probes of the machine's speed against the table's.
std::vector<std::string> ProbeKeys(const std::map<std::string, double>& measured, int n) {
  std::vector<std::string> keys;
  const int size = static_cast<int>(measured.size());
  if (size == 0 || n <= 0) return keys;
  auto it = measured.begin();
  int at = 0;
  for (int i = 0; i < std::min(n, size); ++i) {
    const int want = i * size / std::min(n, size);
    std::advance(it, want - at);
    at = want;
    keys.push_back(it->first);
  }
  return keys;
}

// The median over the probes of (time now / the table's time).
absl::StatusOr<double> SpeedRatio(const std::vector<std::string>& probes,
                                  const std::map<std::string, double>& table,
                                  const ProfileOptions& o) {
  NAS_ASSIGN_OR_RETURN(LatencyTable now, ProfileKeys(probes, o, nullptr));
  std::vector<double> ratios;
  for (const std::string& k : probes) {
    NAS_ASSIGN_OR_RETURN(LatencyEntry e, now.Lookup(k));
    ratios.push_back(e.mean_ms / table.at(k));
  }
  std::sort(ratios.begin(), ratios.end());
  return ratios[(ratios.size() - 1) / 2];
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
  std::vector<NetworkConfig> nets;
  std::map<std::string, double> measured_keys;  // the table's time of each measured layer
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
    for (size_t k = 0; k < answers.size(); ++k) {
      const LayerLatency& a = answers[k];
      sample.layer_sum_ms += a.mean_ms;
      sample.predicted_keys += a.source == LatencySource::kPredicted;
      if (a.source == LatencySource::kMeasured && a.mean_ms > 0) measured_keys[keys[k]] = a.mean_ms;
    }
    sample.layers = static_cast<int>(keys.size());
    sample.predicted_ms = sample.layer_sum_ms;
    if (report.calibration.has_value()) {
      sample.predicted_ms += report.calibration->Correction(sample.layers);
    }
    report.samples.push_back(std::move(sample));
    nets.push_back(std::move(net));
  }
  // The machine's speed against the table's, before and after the networks: a table profiled
  // while this (shared) machine ran at another speed mispredicts the networks now.
  const std::vector<std::string> probes = ProbeKeys(measured_keys, o.probe_layers);
  if (!probes.empty()) {
    NAS_ASSIGN_OR_RETURN(report.speed_before, SpeedRatio(probes, measured_keys, profile));
  }
  // Every network in each of profile.passes passes, the median pass kept (the profiler's
  // calibration protocol).
  std::vector<TimingReport> timings;
  NAS_ASSIGN_OR_RETURN(std::vector<LatencyEntry> measured,
                       MeasureNetworks(nets, profile, &timings));
  if (!probes.empty()) {
    NAS_ASSIGN_OR_RETURN(report.speed_after, SpeedRatio(probes, measured_keys, profile));
  }
  report.probe_layers = static_cast<int>(probes.size());
  for (size_t s = 0; s < nets.size(); ++s) {
    LatencyCheckSample& sample = report.samples[s];
    sample.measured_ms = measured[s].mean_ms;
    sample.measured_std_ms = std::sqrt(measured[s].var);
    sample.timing = timings[s];
  }
  report.passes = profile.passes;
  TimingReport all;
  for (const LatencyCheckSample& s : report.samples) AddTiming(s.timing, &all);
  report.others_cpu = all.others_cpu;
  report.layer_sum = Score(report.samples, /*calibrated=*/false);
  report.predicted = Score(report.samples, /*calibrated=*/true);
  return report;
}

std::string FormatLatencyCheck(const LatencyCheckReport& r) {
  std::string out = absl::StrFormat(
      "latency check: device %s, space %s, %d networks, measured here with %d threads (median "
      "of %d interleaved passes)\n\n"
      "| # | layers | layer sum (ms) | predicted (ms) | predicted layers | measured (ms) | +-std "
      "| re-timed | others (cores) | error |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n",
      r.device, r.space, r.samples.size(), r.threads, r.passes);
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
  if (r.probe_layers > 0) {
    const bool off = std::abs(r.speed_before - 1.0) > 0.1 || std::abs(r.speed_after - 1.0) > 0.1;
    absl::StrAppendFormat(
        &out,
        "machine speed against the table: %d of its layers re-timed now take %.2fx (before the "
        "networks) and %.2fx (after) of the table's times%s\n",
        r.probe_layers, r.speed_before, r.speed_after,
        off ? " - the machine is not running as it did when profiled, and the errors above "
              "carry that; profile again (or check on a quiet machine)"
            : "");
  }
  return out;
}

}  // namespace nas
