// The coordinator's Prometheus metrics (prometheus-cpp, pulled from an exposer on
// --metrics_port). Names follow DESIGN.md ("Observability"); deploy/grafana/ uses only these.
//
//   CoordinatorMetrics m;  auto exposer = m.Expose("0.0.0.0:9091");
//   m.Task("weight", "ok");
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace prometheus {
class Registry;
class Exposer;
}  // namespace prometheus

namespace nas {

class CoordinatorMetrics {
 public:
  CoordinatorMetrics();
  ~CoordinatorMetrics();

  // Starts an HTTP exposer serving /metrics on `address` ("0.0.0.0:9091"; port 0 picks one).
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> Expose(const std::string& address);
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Jobs per state (every state listed is set; missing ones are 0) and queued tasks per tenant.
  void SetJobs(const std::map<std::string, int>& by_state);
  void SetQueueDepth(const std::string& tenant, int tasks);
  // One committed round of a job (with the SGD steps it applied), with the job's current figures.
  void Round(const std::string& job, double checkpoint_seconds, double train_loss,
             double val_accuracy, double expected_ms, double target_ms, double entropy,
             double weight_steps);
  // kind: init, weight, arch, final; outcome: ok, refused, expired, failed.
  void Task(const std::string& kind, const std::string& outcome);
  void LeaseExpired();
  void SetWorkers(int live, int dead);
  // direction: fetched (to workers), returned (from workers).
  void TensorBytes(const std::string& direction, double bytes);
  void SetLatencyDegraded(bool degraded);
  // One tenant's place in the queue (nas_tenant_*): decayed usage (worker-seconds), its share of
  // the active tenants' usage and its fair share (weight / their weights), workers held, jobs
  // running and queued, worker-hours used in the window, and its quotas (0 = no limit).
  struct TenantFigures {
    std::string tenant;
    double usage_seconds = 0, share = 0, fair_share = 0, window_hours = 0;
    int workers_held = 0, running_jobs = 0, queued_jobs = 0;
    double weight = 1, max_running_jobs = 0, max_workers = 0, worker_hours_per_window = 0;
  };
  void SetTenant(const TenantFigures& f);
  // A job waited `seconds` QUEUED before it was admitted (nas_queue_wait_seconds).
  void QueueWait(const std::string& tenant, double seconds);
  // A job yielded its workers (nas_preemptions_total).
  void Preempted(const std::string& tenant);
  // The checkpoint store's memtables of tensors (memory) and write-ahead log (disk), in bytes.
  void SetCheckpointFootprint(double memtable_bytes, double wal_bytes);

 private:
  struct Impl;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nas
