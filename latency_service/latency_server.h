// The latency server: a LatencyRegistry served over gRPC (proto/nas/latency.proto) with a
// Prometheus pull exposer for its metrics (metrics.h), the standard health service
// (grpc.health.v1: SERVING once Start returns, the tables loaded; NOT_SERVING from the first step
// of Shutdown) and server reflection. No gRPC types in this header.
//
// Who may write: with `writer_tokens_file`, PutTable (the one RPC that changes a table) takes
// only a call whose `authorization: Bearer TOKEN` metadata is a token of role `writer` in that
// file (coordinator/token_auth.h's format, reloaded when it changes): none or an unknown token is
// UNAUTHENTICATED, another role's token PERMISSION_DENIED. Query, ListDevices and GetTable stay
// open to every caller (workers, coordinators, `nas`). Without the file any caller may replace
// any table, which Start says on stderr.
//
//   LatencyServer::Options o;
//   o.address = "127.0.0.1";  o.port = 0;  o.metrics_port = 0;   // 0: pick free ports
//   o.registry.table_dir = "/var/lib/nas-latency";
//   o.registry.builtin_tables = {{"pixel1-tflite", "data/proxylessnas/mobile_trim.yaml"}};
//   NAS_ASSIGN_OR_RETURN(std::unique_ptr<LatencyServer> server, LatencyServer::Start(o));
//   std::string target = absl::StrCat("127.0.0.1:", server->port());
//   ...
//   server->Shutdown();   // also done by the destructor
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "latency_service/latency_registry.h"

namespace nas {

struct LatencyServerOptions {
  // Address the gRPC and metrics listeners bind to. Default "0.0.0.0".
  std::string address = "0.0.0.0";
  // gRPC port; 0 picks a free one (see port()). Default 0.
  int port = 0;
  // Prometheus /metrics port; 0 picks a free one, -1 runs no exposer. Default -1.
  int metrics_port = -1;
  // Largest gRPC request or reply, in bytes (a 100k-key batch is about 10 MB); gRPC itself
  // refuses a larger request with RESOURCE_EXHAUSTED before any handler runs. 1 KiB..1 GiB.
  // Default 64 MiB.
  int max_message_bytes = 64 << 20;
  // PEM certificate chain and private key: TLS on the gRPC port when both are given, plaintext
  // when neither (only one is an error). Default "".
  std::string tls_cert;
  std::string tls_key;
  // Tokens file ("TOKEN USER TENANT [ROLE]" a line, coordinator/token_auth.h) whose `writer`
  // tokens may PutTable; "" lets every caller PutTable. Default "".
  std::string writer_tokens_file;
  // Tables, predictors, cache (latency_registry.h); its `metrics` is set by the server.
  // Default LatencyRegistryOptions{}.
  LatencyRegistryOptions registry;
};

class LatencyServer {
 public:
  using Options = LatencyServerOptions;

  // Opens the registry and the writer tokens file, then starts the gRPC server and the exposer.
  // Errors: the registry's or the tokens file's (naming the file), or Unavailable naming the
  // address that could not be bound.
  static absl::StatusOr<std::unique_ptr<LatencyServer>> Start(Options options);

  int port() const;
  // -1 when no exposer runs.
  int metrics_port() const;
  LatencyRegistry& registry();

  // Health NOT_SERVING, then stops accepting calls and waits for running ones, up to 5 s (then
  // cancels them). Idempotent.
  void Shutdown();
  ~LatencyServer();

 private:
  struct Impl;
  explicit LatencyServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nas
