// latency_server: serves per-layer latency tables over gRPC (see latency_server.h).
//
//   latency_server --port 50052 --table_dir /var/lib/nas-latency --metrics_port 9102 \
//       --writer_tokens_file /etc/nas/latency-writers/tokens
// Prints "latency_server: listening on ADDRESS:PORT" once ready; stops on SIGINT or SIGTERM.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "latency_service/latency_server.h"

#ifndef NAS_DATA_DIR
#define NAS_DATA_DIR "data"
#endif

ABSL_FLAG(std::string, address, "0.0.0.0", "address to listen on (gRPC and metrics)");
ABSL_FLAG(int, port, 50052, "gRPC port; 0 picks a free one");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: TLS on the gRPC port (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, writer_tokens_file, "",
          "bearer tokens, one 'TOKEN USER TENANT [ROLE]' a line, reloaded when the file changes: "
          "PutTable takes only role 'writer' (Query, ListDevices, GetTable stay open); empty: "
          "any caller may replace tables");
ABSL_FLAG(std::string, table_dir, "",
          "directory of persisted tables (created if missing); empty keeps uploads in memory");
ABSL_FLAG(int, metrics_port, 9102, "Prometheus /metrics port; 0 picks one, -1 disables");
ABSL_FLAG(std::string, builtin_tables,
          "pixel1-tflite=" NAS_DATA_DIR "/proxylessnas/mobile_trim.yaml",
          "comma-separated DEVICE=PATH tables loaded at start unless --table_dir has DEVICE");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  nas::LatencyServer::Options o;
  o.address = absl::GetFlag(FLAGS_address);
  o.port = absl::GetFlag(FLAGS_port);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.writer_tokens_file = absl::GetFlag(FLAGS_writer_tokens_file);
  o.registry.table_dir = absl::GetFlag(FLAGS_table_dir);
  for (absl::string_view item :
       absl::StrSplit(absl::GetFlag(FLAGS_builtin_tables), ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      std::fprintf(stderr, "latency_server: --builtin_tables: \"%s\" is not DEVICE=PATH\n",
                   std::string(item).c_str());
      return 2;
    }
    o.registry.builtin_tables.push_back({kv[0], kv[1]});
  }

  // Block the stop signals before any thread starts, so only sigwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  absl::StatusOr<std::unique_ptr<nas::LatencyServer>> server = nas::LatencyServer::Start(o);
  if (!server.ok()) {
    std::fprintf(stderr, "latency_server: %s\n", server.status().ToString().c_str());
    return 1;
  }
  for (const nas::DeviceSummary& d : (*server)->registry().ListDevices()) {
    std::printf(
        "latency_server: device %s: %lld entries, version %llu, predictor held-out "
        "MAPE %.2f%% over %lld entries\n",
        d.name.c_str(), static_cast<long long>(d.entries),
        static_cast<unsigned long long>(d.version), d.predictor.holdout_mape,
        static_cast<long long>(d.predictor.holdout_entries));
    if (d.calibration.has_value()) {
      std::printf("latency_server: device %s: calibration %+.4f ms per network, %+.4f ms per "
                  "layer (%s, %d networks)\n",
                  d.name.c_str(), d.calibration->overhead_ms, d.calibration->per_layer_ms,
                  d.calibration->model.c_str(), d.calibration->networks);
    }
  }
  std::printf("latency_server: listening on %s:%d", o.address.c_str(), (*server)->port());
  if ((*server)->metrics_port() >= 0) std::printf(", metrics on :%d", (*server)->metrics_port());
  std::printf("\n");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  std::printf("latency_server: signal %d, shutting down\n", sig);
  (*server)->Shutdown();
  return 0;
}
