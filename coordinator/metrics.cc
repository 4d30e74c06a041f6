#include "coordinator/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <exception>

#include "absl/strings/str_cat.h"

namespace nas {

struct CoordinatorMetrics::Impl {
  explicit Impl(prometheus::Registry& r)
      : jobs(prometheus::BuildGauge().Name("nas_jobs").Help("Jobs by state").Register(r)),
        queue(prometheus::BuildGauge()
                  .Name("nas_queue_depth")
                  .Help("Tasks waiting for a worker, by tenant")
                  .Register(r)),
        rounds(prometheus::BuildCounter()
                   .Name("nas_rounds_total")
                   .Help("Committed search rounds, by job")
                   .Register(r)),
        weight_steps(prometheus::BuildCounter()
                         .Name("nas_weight_steps_total")
                         .Help("SGD steps of committed rounds, by job (a round of a chain of "
                               "weight tasks has several)")
                         .Register(r)),
        train_loss(prometheus::BuildGauge()
                       .Name("nas_train_loss")
                       .Help("Smoothed training loss of weight steps, by job")
                       .Register(r)),
        val_accuracy(prometheus::BuildGauge()
                         .Name("nas_val_accuracy")
                         .Help("Validation accuracy of the last arch step, by job")
                         .Register(r)),
        expected_ms(prometheus::BuildGauge()
                        .Name("nas_expected_latency_ms")
                        .Help("Expected latency E[lat] under p, by job")
                        .Register(r)),
        target_ms(prometheus::BuildGauge()
                      .Name("nas_target_latency_ms")
                      .Help("Target latency of the hardware loss, by job")
                      .Register(r)),
        entropy(prometheus::BuildGauge()
                    .Name("nas_arch_entropy")
                    .Help("Mean entropy of p over edges (nats), by job")
                    .Register(r)),
        tasks(prometheus::BuildCounter()
                  .Name("nas_tasks_total")
                  .Help("Task completions by kind and outcome")
                  .Register(r)),
        expired(prometheus::BuildCounter()
                    .Name("nas_lease_expired_total")
                    .Help("Leases that expired and were re-issued")
                    .Register(r)
                    .Add({})),
        workers(prometheus::BuildGauge().Name("nas_workers").Help("Workers by state").Register(r)),
        checkpoint(prometheus::BuildHistogram()
                       .Name("nas_checkpoint_seconds")
                       .Help("Time to write one round to RocksDB (one synced write batch)")
                       .Register(r)
                       .Add({}, prometheus::Histogram::BucketBoundaries{1e-4, 5e-4, 1e-3, 2.5e-3,
                                                                        5e-3, 1e-2, 2.5e-2, 5e-2,
                                                                        0.1, 0.25, 0.5, 1, 2.5})),
        tensor_bytes(prometheus::BuildCounter()
                         .Name("nas_tensor_bytes_total")
                         .Help("Tensor bytes sent to (fetched) and received from workers")
                         .Register(r)),
        degraded(prometheus::BuildGauge()
                     .Name("nas_latency_service_degraded")
                     .Help("1 while a job waits for an unreachable latency service")
                     .Register(r)
                     .Add({})),
        memtable_bytes(prometheus::BuildGauge()
                           .Name("nas_checkpoint_memtable_bytes")
                           .Help("Bytes of tensors in the checkpoint store's memtables (memory)")
                           .Register(r)
                           .Add({})),
        wal_bytes(prometheus::BuildGauge()
                      .Name("nas_checkpoint_wal_bytes")
                      .Help("Bytes of the checkpoint store's write-ahead log (disk)")
                      .Register(r)
                      .Add({})),
        tenant_usage(prometheus::BuildGauge()
                         .Name("nas_tenant_usage_worker_seconds")
                         .Help("Worker-seconds a tenant used, decayed with the half-life (what "
                               "the fair share compares), leases held now included")
                         .Register(r)),
        tenant_share(prometheus::BuildGauge()
                         .Name("nas_tenant_share")
                         .Help("A tenant's fraction of the decayed usage of the tenants with "
                               "active jobs")
                         .Register(r)),
        tenant_fair_share(prometheus::BuildGauge()
                              .Name("nas_tenant_fair_share")
                              .Help("A tenant's weight over the weights of the tenants with "
                                    "active jobs: the share it is entitled to")
                              .Register(r)),
        tenant_workers(prometheus::BuildGauge()
                           .Name("nas_tenant_workers_held")
                           .Help("Workers holding a task of the tenant now")
                           .Register(r)),
        tenant_jobs(prometheus::BuildGauge()
                        .Name("nas_tenant_jobs")
                        .Help("A tenant's active jobs: running (admitted) or queued")
                        .Register(r)),
        tenant_window(prometheus::BuildGauge()
                          .Name("nas_tenant_window_worker_hours")
                          .Help("Worker-hours a tenant used in the current quota window")
                          .Register(r)),
        tenant_quota(prometheus::BuildGauge()
                         .Name("nas_tenant_quota")
                         .Help("A tenant's weight and quotas, by limit (0: no limit)")
                         .Register(r)),
        queue_wait(prometheus::BuildHistogram()
                       .Name("nas_queue_wait_seconds")
                       .Help("How long a job waited QUEUED before it was admitted, by tenant")
                       .Register(r)),
        preemptions(prometheus::BuildCounter()
                        .Name("nas_preemptions_total")
                        .Help("Jobs that yielded their workers at a round boundary, by tenant")
                        .Register(r)) {}

  prometheus::Family<prometheus::Gauge>& jobs;
  prometheus::Family<prometheus::Gauge>& queue;
  prometheus::Family<prometheus::Counter>& rounds;
  prometheus::Family<prometheus::Counter>& weight_steps;
  prometheus::Family<prometheus::Gauge>& train_loss;
  prometheus::Family<prometheus::Gauge>& val_accuracy;
  prometheus::Family<prometheus::Gauge>& expected_ms;
  prometheus::Family<prometheus::Gauge>& target_ms;
  prometheus::Family<prometheus::Gauge>& entropy;
  prometheus::Family<prometheus::Counter>& tasks;
  prometheus::Counter& expired;
  prometheus::Family<prometheus::Gauge>& workers;
  prometheus::Histogram& checkpoint;
  prometheus::Family<prometheus::Counter>& tensor_bytes;
  prometheus::Gauge& degraded;
  prometheus::Gauge& memtable_bytes;
  prometheus::Gauge& wal_bytes;
  prometheus::Family<prometheus::Gauge>& tenant_usage;
  prometheus::Family<prometheus::Gauge>& tenant_share;
  prometheus::Family<prometheus::Gauge>& tenant_fair_share;
  prometheus::Family<prometheus::Gauge>& tenant_workers;
  prometheus::Family<prometheus::Gauge>& tenant_jobs;
  prometheus::Family<prometheus::Gauge>& tenant_window;
  prometheus::Family<prometheus::Gauge>& tenant_quota;
  prometheus::Family<prometheus::Histogram>& queue_wait;
  prometheus::Family<prometheus::Counter>& preemptions;
};

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      impl_(std::make_unique<Impl>(*registry_)) {}

CoordinatorMetrics::~CoordinatorMetrics() = default;

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> CoordinatorMetrics::Expose(
    const std::string& address) {
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(address);
    exposer->RegisterCollectable(registry_);
    return exposer;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", address, ": ", e.what()));
  }
}

void CoordinatorMetrics::SetJobs(const std::map<std::string, int>& by_state) {
  for (const char* s : {"QUEUED", "PREPARING", "RUNNING", "FINAL", "DONE", "FAILED", "CANCELLED"}) {
    auto it = by_state.find(s);
    impl_->jobs.Add({{"state", s}}).Set(it == by_state.end() ? 0 : it->second);
  }
}

void CoordinatorMetrics::SetQueueDepth(const std::string& tenant, int tasks) {
  impl_->queue.Add({{"tenant", tenant}}).Set(tasks);
}

void CoordinatorMetrics::Round(const std::string& job, double checkpoint_seconds, double train_loss,
                               double val_accuracy, double expected_ms, double target_ms,
                               double entropy, double weight_steps) {
  impl_->rounds.Add({{"job", job}}).Increment();
  impl_->weight_steps.Add({{"job", job}}).Increment(weight_steps);
  impl_->checkpoint.Observe(checkpoint_seconds);
  impl_->train_loss.Add({{"job", job}}).Set(train_loss);
  impl_->val_accuracy.Add({{"job", job}}).Set(val_accuracy);
  impl_->expected_ms.Add({{"job", job}}).Set(expected_ms);
  impl_->target_ms.Add({{"job", job}}).Set(target_ms);
  impl_->entropy.Add({{"job", job}}).Set(entropy);
}

void CoordinatorMetrics::Task(const std::string& kind, const std::string& outcome) {
  impl_->tasks.Add({{"kind", kind}, {"outcome", outcome}}).Increment();
}

void CoordinatorMetrics::LeaseExpired() { impl_->expired.Increment(); }

void CoordinatorMetrics::SetWorkers(int live, int dead) {
  impl_->workers.Add({{"state", "live"}}).Set(live);
  impl_->workers.Add({{"state", "dead"}}).Set(dead);
}

void CoordinatorMetrics::TensorBytes(const std::string& direction, double bytes) {
  impl_->tensor_bytes.Add({{"direction", direction}}).Increment(bytes);
}

void CoordinatorMetrics::SetLatencyDegraded(bool degraded) {
  impl_->degraded.Set(degraded ? 1 : 0);
}

void CoordinatorMetrics::SetTenant(const TenantFigures& f) {
  const std::map<std::string, std::string> t = {{"tenant", f.tenant}};
  impl_->tenant_usage.Add(t).Set(f.usage_seconds);
  impl_->tenant_share.Add(t).Set(f.share);
  impl_->tenant_fair_share.Add(t).Set(f.fair_share);
  impl_->tenant_workers.Add(t).Set(f.workers_held);
  impl_->tenant_jobs.Add({{"tenant", f.tenant}, {"state", "running"}}).Set(f.running_jobs);
  impl_->tenant_jobs.Add({{"tenant", f.tenant}, {"state", "queued"}}).Set(f.queued_jobs);
  impl_->tenant_window.Add(t).Set(f.window_hours);
  impl_->tenant_quota.Add({{"tenant", f.tenant}, {"limit", "weight"}}).Set(f.weight);
  impl_->tenant_quota.Add({{"tenant", f.tenant}, {"limit", "max_running_jobs"}})
      .Set(f.max_running_jobs);
  impl_->tenant_quota.Add({{"tenant", f.tenant}, {"limit", "max_workers"}}).Set(f.max_workers);
  impl_->tenant_quota.Add({{"tenant", f.tenant}, {"limit", "worker_hours_per_window"}})
      .Set(f.worker_hours_per_window);
}

void CoordinatorMetrics::QueueWait(const std::string& tenant, double seconds) {
  impl_->queue_wait
      .Add({{"tenant", tenant}},
           prometheus::Histogram::BucketBoundaries{1, 5, 15, 60, 300, 900, 3600, 4 * 3600,
                                                   12 * 3600, 86400, 3 * 86400})
      .Observe(seconds);
}

void CoordinatorMetrics::Preempted(const std::string& tenant) {
  impl_->preemptions.Add({{"tenant", tenant}}).Increment();
}

void CoordinatorMetrics::SetCheckpointFootprint(double memtable_bytes, double wal_bytes) {
  impl_->memtable_bytes.Set(memtable_bytes);
  impl_->wal_bytes.Set(wal_bytes);
}

}  // namespace nas
