#include "worker/worker_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <cstdio>
#include <exception>

#include "absl/strings/str_cat.h"

namespace nas {

struct WorkerMetrics::Impl {
  explicit Impl(prometheus::Registry& r)
      : tasks(prometheus::BuildCounter()
                  .Name("nas_worker_tasks_total")
                  .Help("Tasks this worker finished, by kind and outcome")
                  .Register(r)),
        step(prometheus::BuildHistogram()
                 .Name("nas_worker_step_seconds")
                 .Help("Time a task ran on the device (its tensors loaded; upload excluded), by "
                       "kind")
                 .Register(r)),
        phase(prometheus::BuildCounter()
                  .Name("nas_worker_phase_seconds_total")
                  .Help("Where the worker's time went, by task kind and phase (acquire: waiting "
                        "for the task; load: fetching and loading tensors; data: waiting for "
                        "image batches a streamed folder had not decoded yet; run; send: "
                        "uploading the result)")
                  .Register(r)),
        bytes(prometheus::BuildCounter()
                  .Name("nas_worker_tensor_bytes_total")
                  .Help("Tensor bytes fetched from and uploaded to the coordinator")
                  .Register(r)),
        tensors(prometheus::BuildCounter()
                    .Name("nas_worker_tensors_total")
                    .Help("Listed tensors a task needed: fetched, or found in the cache (hit)")
                    .Register(r)),
        cache_bytes(prometheus::BuildGauge()
                        .Name("nas_worker_cache_bytes")
                        .Help("Bytes of tensors in the worker's cache")
                        .Register(r)
                        .Add({})),
        resident(prometheus::BuildGauge()
                     .Name("nas_worker_task_resident_bytes")
                     .Help("Tensor bytes the last task's largest step materialised")
                     .Register(r)
                     .Add({})),
        memory(prometheus::BuildGauge()
                   .Name("nas_worker_memory_bytes")
                   .Help("Memory: the host process's resident set (host_resident) and the CUDA "
                         "allocator's allocated bytes and their peak (device_allocated, "
                         "device_peak_allocated)")
                   .Register(r)),
        info(prometheus::BuildGauge()
                 .Name("nas_worker_info")
                 .Help("1, labelled with the worker's device")
                 .Register(r)),
        draining(prometheus::BuildGauge()
                     .Name("nas_worker_draining")
                     .Help("1 once SIGTERM started draining the worker")
                     .Register(r)
                     .Add({})) {}

  prometheus::Family<prometheus::Counter>& tasks;
  prometheus::Family<prometheus::Histogram>& step;
  prometheus::Family<prometheus::Counter>& phase;
  prometheus::Family<prometheus::Counter>& bytes;
  prometheus::Family<prometheus::Counter>& tensors;
  prometheus::Gauge& cache_bytes;
  prometheus::Gauge& resident;
  prometheus::Family<prometheus::Gauge>& memory;
  prometheus::Family<prometheus::Gauge>& info;
  prometheus::Gauge& draining;
};

WorkerMetrics::WorkerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      impl_(std::make_unique<Impl>(*registry_)) {}

WorkerMetrics::~WorkerMetrics() = default;

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> WorkerMetrics::Expose(
    const std::string& address) {
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(address);
    exposer->RegisterCollectable(registry_);
    return exposer;
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics_port: cannot listen on ", address, ": ", e.what()));
  }
}

void WorkerMetrics::Task(const WorkerTaskFigures& f) {
  Impl& m = *impl_;
  m.tasks.Add({{"kind", f.kind}, {"outcome", f.outcome}}).Increment();
  if (f.outcome == "ok") {
    m.step
        .Add({{"kind", f.kind}},
             prometheus::Histogram::BucketBoundaries{1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
                                                     0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800})
        .Observe(f.run_seconds);
  }
  auto add = [](prometheus::Counter& c, double v) {
    if (v > 0) c.Increment(v);  // a counter refuses negative increments
  };
  add(m.phase.Add({{"kind", f.kind}, {"phase", "acquire"}}), f.acquire_seconds);
  add(m.phase.Add({{"kind", f.kind}, {"phase", "load"}}), f.load_seconds);
  add(m.phase.Add({{"kind", f.kind}, {"phase", "data"}}), f.data_seconds);
  add(m.phase.Add({{"kind", f.kind}, {"phase", "run"}}), f.run_seconds);
  add(m.phase.Add({{"kind", f.kind}, {"phase", "send"}}), f.send_seconds);
  add(m.bytes.Add({{"direction", "fetched"}}), static_cast<double>(f.fetched_bytes));
  add(m.bytes.Add({{"direction", "uploaded"}}), static_cast<double>(f.uploaded_bytes));
  add(m.tensors.Add({{"source", "fetched"}}), static_cast<double>(f.tensors_fetched));
  add(m.tensors.Add({{"source", "cache"}}), static_cast<double>(f.cache_hits));
  m.cache_bytes.Set(static_cast<double>(f.cached_bytes));
  m.resident.Set(static_cast<double>(f.resident_bytes));
}

void WorkerMetrics::SetMemory(int64_t host_resident_bytes, int64_t device_allocated_bytes,
                              int64_t device_peak_allocated_bytes) {
  Impl& m = *impl_;
  if (host_resident_bytes >= 0) {
    m.memory.Add({{"kind", "host_resident"}}).Set(static_cast<double>(host_resident_bytes));
  }
  if (device_allocated_bytes >= 0) {
    m.memory.Add({{"kind", "device_allocated"}}).Set(static_cast<double>(device_allocated_bytes));
  }
  if (device_peak_allocated_bytes >= 0) {
    m.memory.Add({{"kind", "device_peak_allocated"}})
        .Set(static_cast<double>(device_peak_allocated_bytes));
  }
}

void WorkerMetrics::SetInfo(const std::string& device, bool draining) {
  impl_->info.Add({{"device", device}}).Set(1);
  impl_->draining.Set(draining ? 1 : 0);
}

int64_t ProcessResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<int64_t>(resident) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace nas
