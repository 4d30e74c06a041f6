// latency_ctl: a command-line client of the latency service.
//
//   latency_ctl --server localhost:50052 list
//   latency_ctl --server localhost:50052 put TABLE.json [--merge] [--if_version V] \
//       [--token_file F]
//   latency_ctl --server localhost:50052 get DEVICE > table.json
//   latency_ctl --server localhost:50052 query DEVICE KEY [KEY...]
// `put` takes our JSON format (what `nas profile --table_out` writes) or a ProxylessNAS YAML
// (then --device names it). A service started with --writer_tokens_file takes `put` only with a
// writer token: --token_file, else $NAS_LATENCY_TOKEN, else the file $NAS_LATENCY_TOKEN_FILE.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "core/latency_table.h"
#include "latency_service/latency_client.h"

ABSL_FLAG(std::string, server, "localhost:50052", "latency service host:port");
ABSL_FLAG(std::string, tls_ca, "", "PEM certificates to trust when the service speaks TLS");
ABSL_FLAG(bool, merge, false, "put: merge into the stored table (pool repeated keys)");
ABSL_FLAG(uint64_t, if_version, 0, "put: apply only if the stored version is this (0: always)");
ABSL_FLAG(std::string, device, "", "put: device name for a YAML table");
ABSL_FLAG(std::string, token_file, "",
          "put: file holding a writer token of the service (default: $NAS_LATENCY_TOKEN, else the "
          "file $NAS_LATENCY_TOKEN_FILE names, else none)");

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "latency_ctl: %s\n", s.ToString().c_str());
  return 1;
}

void Print(const nas::DeviceSummary& d) {
  std::printf(
      "%-24s v%-4llu %6lld entries  %-36s batch %d  threads %d  profiled %s  "
      "predictor held-out MAPE %.2f%% (max %.1f%%, %lld entries)\n",
      d.name.c_str(), static_cast<unsigned long long>(d.version), static_cast<long long>(d.entries),
      d.runtime.c_str(), d.batch_size, d.threads,
      d.profiled_at.empty() ? "-" : d.profiled_at.c_str(), d.predictor.holdout_mape,
      d.predictor.holdout_max_ape, static_cast<long long>(d.predictor.holdout_entries));
  if (d.calibration.has_value()) {
    const nas::LatencyCalibration& c = *d.calibration;
    std::printf("%-24s calibration: network = layer sum %+.4f ms", "", c.overhead_ms);
    if (c.per_layer_ms != 0) std::printf(" %+.4f ms x layers", c.per_layer_ms);
    std::printf(" (%s, %d networks of %d-%d layers, %d outliers left out; RMSE %.4f ms -> "
                "%.4f ms, leave-one-out %.4f ms, worst %.1f%%)\n",
                c.model.c_str(), c.networks, c.min_layers, c.max_layers, c.rejected,
                c.raw_rmse_ms, c.rmse_ms, c.loo_rmse_ms, c.max_error_pct);
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "latency_ctl [--server host:port] list | put TABLE [--merge] [--if_version V] "
      "[--token_file F] | get DEVICE | query DEVICE KEY...");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage());
    return 2;
  }
  const std::string cmd = args[1];
  nas::LatencyClientOptions client_options;
  client_options.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  if (cmd == "put") {
    absl::StatusOr<std::string> token = nas::LatencyWriterToken(absl::GetFlag(FLAGS_token_file));
    if (!token.ok()) return Fail(token.status());
    client_options.token = *token;
  }
  auto client = nas::LatencyClient::Connect(absl::GetFlag(FLAGS_server), client_options);
  if (!client.ok()) return Fail(client.status());
  if (cmd == "list") {
    auto devices = (*client)->ListDevices();
    if (!devices.ok()) return Fail(devices.status());
    for (const nas::DeviceSummary& d : *devices) Print(d);
    return 0;
  }
  if (cmd == "put" && args.size() == 3) {
    absl::StatusOr<nas::LatencyTable> table = nas::LatencyTable::Load(args[2]);
    if (!table.ok()) return Fail(table.status());
    if (!absl::GetFlag(FLAGS_device).empty()) {
      table->mutable_info().device = absl::GetFlag(FLAGS_device);
    }
    auto put = (*client)->PutTableJson(table->ToJson(), absl::GetFlag(FLAGS_merge),
                                       absl::GetFlag(FLAGS_if_version));
    if (!put.ok()) return Fail(put.status());
    Print(*put);
    return 0;
  }
  if (cmd == "get" && args.size() == 3) {
    auto json = (*client)->GetTableJson(args[2]);
    if (!json.ok()) return Fail(json.status());
    std::printf("%s\n", json->c_str());
    return 0;
  }
  if (cmd == "query" && args.size() >= 4) {
    std::vector<std::string> keys(args.begin() + 3, args.end());
    std::vector<nas::LayerLatency> answers;
    absl::Status s = (*client)->Query(args[2], keys, &answers);
    if (!s.ok()) return Fail(s);
    double sum = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      std::printf("%10.4f ms  +-%.4f  %-9s%s  %s\n", answers[i].mean_ms, answers[i].std_ms,
                  nas::LatencySourceName(answers[i].source),
                  answers[i].extrapolated ? " (extrapolated)" : "", keys[i].c_str());
      sum += answers[i].mean_ms;
    }
    std::printf("%10.4f ms  sum of %zu keys\n", sum, keys.size());
    return 0;
  }
  std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage());
  return 2;
}
