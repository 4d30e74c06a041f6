// The coordinator process's server: the JobManager (job_manager.h) behind two gRPC services,
// SearchService (users, proto/nas/search.proto) and WorkerGateway (workers,
// proto/nas/worker.proto), on one port, with the RocksDB checkpoint store and a Prometheus
// exposer. Every port also serves the standard health service (grpc.health.v1: "" and each
// service by name, SERVING once Start returns, NOT_SERVING from the first step of Shutdown) and
// server reflection (grpcurl can list and describe the API). No gRPC types in this header.
//
//   CoordinatorServer::Options o;
//   o.db_dir = "/var/lib/nas/db";  o.port = 0;  o.latency_service = "localhost:50052";
//   NAS_ASSIGN_OR_RETURN(std::unique_ptr<CoordinatorServer> s, CoordinatorServer::Start(o));
//   ... s->port() ...
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/job_manager.h"

namespace nas {

struct CoordinatorServerOptions {
  // Address to bind. Default "0.0.0.0".
  std::string address = "0.0.0.0";
  // gRPC port of the SearchService (users); 0 picks a free one. Default 50051.
  int port = 50051;
  // gRPC port of the WorkerGateway (workers), so that a NetworkPolicy can keep users off it; 0
  // picks a free one; -1 serves the gateway on `port` too. Default -1.
  int worker_port = -1;
  // The tokens file (token_auth.h: "TOKEN USER TENANT [ROLE]", the Kubernetes Secret), reloaded
  // when it changes. Users call with a user or admin token, workers with a worker credential;
  // a job's tenant and owner are the caller's. Empty: no authentication (every caller is an
  // admin; for loopback and tests), said on stderr at start. Default "".
  std::string tokens_file;
  // The queue's settings (quota_config.h: weights, quotas, half-life, window, aging; JSON, the
  // Kubernetes ConfigMap), reloaded when it changes. Empty: every tenant weight 1, no limits.
  // Default "".
  std::string quotas_file;
  // PEM certificate chain and private key: TLS on both ports when both are given, plaintext
  // when neither (only one is an error). Default "".
  std::string tls_cert;
  std::string tls_key;
  // PEM certificates to trust when calling the latency service over TLS. Default "".
  std::string latency_tls_ca;
  // Prometheus /metrics port; 0 picks one, -1 none. Default -1.
  int metrics_port = -1;
  // RocksDB directory (created). Required.
  std::string db_dir;
  // Synced writes for submissions and rounds. Default true.
  bool sync = true;
  // Latency service "host:port"; empty: jobs wait (degraded) until one is configured.
  std::string latency_service;
  // A local latency table file used instead of a service (tests, offline runs). Default "".
  std::string latency_table;
  // Leases, heartbeats, retries (job_manager.h).
  JobManagerOptions jobs;
  // Largest gRPC message received, bytes: a worker's packed tensor chunks (1 MiB of data per
  // message) and task lists; any larger message is refused with RESOURCE_EXHAUSTED before it is
  // parsed. SubmitJob has its own, smaller bound (the spec's space_json limit plus 64 KiB).
  // Default 8 MiB.
  int max_message_bytes = 8 << 20;
  // On Shutdown, handlers in flight get this long to finish before they are cancelled.
  // Default 2 s.
  absl::Duration shutdown_grace = absl::Seconds(2);
};

class CoordinatorServer {
 public:
  using Options = CoordinatorServerOptions;
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(Options options);
  int port() const;
  // The gateway's port (port() when it shares it).
  int worker_port() const;
  int metrics_port() const;
  JobManager& jobs();
  // Drains: the health service says NOT_SERVING on both ports, then open watch streams and long
  // polls end (UNAVAILABLE), the gRPC server stops (waiting up to shutdown_grace for handlers in
  // flight), and the job manager and the store are destroyed. Idempotent; the destructor calls
  // it (so does the coordinator binary on SIGTERM).
  void Shutdown();
  ~CoordinatorServer();

 private:
  struct Impl;
  explicit CoordinatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nas
