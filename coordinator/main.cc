// The coordinator: `coordinator --port=50051 --db=/var/lib/nas/db --latency_service=host:50052`.
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "coordinator/coordinator_server.h"

ABSL_FLAG(std::string, address, "0.0.0.0", "address to bind");
ABSL_FLAG(int, port, 50051, "gRPC port (0: pick one; printed as 'listening on port N')");
ABSL_FLAG(int, worker_port, -1,
          "the worker gateway's own port, so that users can be kept off it (0: pick one, printed "
          "as 'workers on port N'; -1: the gateway shares --port)");
ABSL_FLAG(std::string, tokens_file, "",
          "bearer tokens, one 'TOKEN USER TENANT [ROLE]' a line (roles user, admin, worker), "
          "reloaded when the file changes; empty: no authentication (loopback only)");
ABSL_FLAG(std::string, quotas_file, "",
          "the queue's settings (JSON: per-tenant weight, max_running_jobs, max_workers, "
          "worker_hours_per_window; half_life_hours, window_hours, aging_hours), reloaded when "
          "the file changes; empty: every tenant weight 1, no limits");
ABSL_FLAG(std::string, scheduler, "fair-share",
          "the queue policy: fair-share (quotas, weighted fair share, preemption) or priority "
          "(every job admitted, highest priority first)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: TLS on both gRPC ports (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, latency_tls_ca, "",
          "PEM certificates to trust when the latency service speaks TLS");
ABSL_FLAG(int, metrics_port, 9091, "Prometheus /metrics port (-1: none, 0: pick one)");
ABSL_FLAG(std::string, db, "", "RocksDB directory for checkpoints (required)");
ABSL_FLAG(bool, sync, true, "fsync every submission and round");
ABSL_FLAG(bool, pipelined_commits, false,
          "write a search round's checkpoint while the next round runs: a round is acknowledged "
          "(JobStatus.committed_round) once written, up to two rounds behind, and a crash re-runs "
          "the unwritten rounds identically (default: a task's result is acknowledged only once "
          "its round is written)");
ABSL_FLAG(std::string, latency_service, "", "latency service host:port");
ABSL_FLAG(std::string, latency_table, "", "a local table file instead of a latency service");
ABSL_FLAG(int, lease_ms, 60000, "lease duration after grant or heartbeat");
ABSL_FLAG(int, heartbeat_ms, 2000, "worker heartbeat period");
ABSL_FLAG(int, worker_timeout_ms, 20000, "a worker silent this long is dead");
ABSL_FLAG(absl::Duration, retention, absl::Hours(30 * 24),
          "a job that ended (DONE, FAILED, CANCELLED) this long ago is deleted with everything "
          "kept of it, its disk space given back (e.g. 720h, 168h; inf: keep every job until "
          "`nasctl delete`)");

namespace {
absl::Notification* g_stop = nullptr;
void OnSignal(int) {
  if (g_stop != nullptr && !g_stop->HasBeenNotified()) g_stop->Notify();
}
}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every lock order at run time (a cycle graph per acquisition): that
  // cost the coordinator ~10% of its CPU per task. The lock order is fixed by design.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Messages and tensors are allocated and freed at a high rate: keep freed memory in the heap
  // (no trimming, no mmap per large buffer), which cut glibc's time in malloc_consolidate.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
  nas::CoordinatorServer::Options o;
  o.address = absl::GetFlag(FLAGS_address);
  o.port = absl::GetFlag(FLAGS_port);
  o.worker_port = absl::GetFlag(FLAGS_worker_port);
  o.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  o.quotas_file = absl::GetFlag(FLAGS_quotas_file);
  o.jobs.scheduler = absl::GetFlag(FLAGS_scheduler);
  if (o.jobs.scheduler != "fair-share" && o.jobs.scheduler != "priority") {
    std::cerr << "coordinator: --scheduler: '" << o.jobs.scheduler
              << "' is not a policy (fair-share or priority)\n";
    return 2;
  }
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.latency_tls_ca = absl::GetFlag(FLAGS_latency_tls_ca);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  o.db_dir = absl::GetFlag(FLAGS_db);
  o.sync = absl::GetFlag(FLAGS_sync);
  o.latency_service = absl::GetFlag(FLAGS_latency_service);
  o.latency_table = absl::GetFlag(FLAGS_latency_table);
  o.jobs.lease = absl::Milliseconds(absl::GetFlag(FLAGS_lease_ms));
  o.jobs.heartbeat = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_ms));
  o.jobs.worker_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_worker_timeout_ms));
  o.jobs.pipelined_commits = absl::GetFlag(FLAGS_pipelined_commits);
  o.jobs.retention = absl::GetFlag(FLAGS_retention);
  if (o.jobs.retention <= absl::ZeroDuration()) {
    std::cerr << "coordinator: --retention: " << absl::FormatDuration(o.jobs.retention)
              << " is not positive; give a duration such as 720h, or inf to keep every job\n";
    return 2;
  }
  auto server = nas::CoordinatorServer::Start(o);
  if (!server.ok()) {
    std::cerr << "coordinator: " << server.status().message() << "\n";
    return 2;
  }
  std::cout << "coordinator: listening on port " << (*server)->port() << " (metrics port "
            << (*server)->metrics_port() << ", db " << o.db_dir << ")" << std::endl;
  if ((*server)->worker_port() != (*server)->port()) {
    std::cout << "coordinator: workers on port " << (*server)->worker_port() << std::endl;
  }
  absl::Notification stop;
  g_stop = &stop;
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  stop.WaitForNotification();
  // The drain: health NOT_SERVING first, then streams, long polls and the server
  // (CoordinatorServer::Shutdown).
  std::cout << "coordinator: stopping (health NOT_SERVING, draining)" << std::endl;
  (*server)->Shutdown();
  return 0;
}
