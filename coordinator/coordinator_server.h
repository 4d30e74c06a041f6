// The coordinator process's server: the JobManager (job_manager.h) behind two gRPC services,
// SearchService (users, proto/nas/search.proto) and WorkerGateway (workers,
// proto/nas/worker.proto), on one port, with the RocksDB checkpoint store and a Prometheus
// exposer. No gRPC types in this header.
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
  // gRPC port; 0 picks a free one. Default 50051.
  int port = 50051;
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
  // Largest gRPC message, bytes. Default 64 MiB (tensors are chunked to 1 MiB anyway).
  int max_message_bytes = 64 << 20;
};

class CoordinatorServer {
 public:
  using Options = CoordinatorServerOptions;
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(Options options);
  int port() const;
  int metrics_port() const;
  JobManager& jobs();
  void Shutdown();
  ~CoordinatorServer();

 private:
  struct Impl;
  explicit CoordinatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nas
