// The worker's Prometheus metrics (prometheus-cpp, pulled from an exposer on nas_worker
// --metrics_port): tasks by kind and outcome, where a task's time goes (acquire, load, data,
// run, send), tensor bytes fetched and uploaded, tensor-cache hits and size, and memory (the host's
// resident set; the device's allocator where it is a GPU). Names begin with nas_worker_;
// deploy/grafana's "Workers" row uses only these. No LibTorch, no gRPC.
//
//   WorkerMetrics m;  auto exposer = m.Expose("0.0.0.0:9092");
//   m.Task({.kind = "weight", .outcome = "ok", .run_seconds = 0.05, ...});
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace prometheus {
class Registry;
class Exposer;
}  // namespace prometheus

namespace nas {

// One task as the worker loop accounted it (its stats line).
struct WorkerTaskFigures {
  std::string kind;     // init, weight, arch, final, eval
  std::string outcome;  // ok, failed, refused, abandoned, ...
  // load: fetching and loading tensors; data: waiting for image batches (a streamed folder);
  // run: the rest of the task on the device.
  double acquire_seconds = 0, load_seconds = 0, data_seconds = 0, run_seconds = 0,
         send_seconds = 0;
  int64_t fetched_bytes = 0;   // tensor bytes fetched for the task
  int64_t uploaded_bytes = 0;  // result bytes sent
  int64_t tensors_fetched = 0;
  int64_t cache_hits = 0;      // listed tensors found in the cache at their version
  int64_t cached_bytes = 0;    // the cache's size after the task
  int64_t resident_bytes = 0;  // tensor bytes the task's largest step materialised
};

class WorkerMetrics {
 public:
  WorkerMetrics();
  ~WorkerMetrics();

  // Starts an HTTP exposer serving /metrics on `address` ("0.0.0.0:9092"; port 0 picks one).
  absl::StatusOr<std::unique_ptr<prometheus::Exposer>> Expose(const std::string& address);
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void Task(const WorkerTaskFigures& f);
  // Memory now: the process's resident set, and (GPU workers) the CUDA allocator's allocated
  // bytes and their peak; a negative value leaves that gauge unset.
  void SetMemory(int64_t host_resident_bytes, int64_t device_allocated_bytes,
                 int64_t device_peak_allocated_bytes);
  // The worker's device ("cpu", "cuda:0") and whether it is draining (SIGTERM).
  void SetInfo(const std::string& device, bool draining);

 private:
  struct Impl;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Impl> impl_;
};

// The process's resident set size in bytes (/proc/self/statm); -1 where unknown.
int64_t ProcessResidentBytes();

}  // namespace nas
