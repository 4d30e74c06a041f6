// Prometheus metrics of the latency service (prometheus-cpp; scraped through the server's pull
// exposer, see latency_server.h).
//
//   nas_latency_queries_total{device,source}   layer keys answered, by source measured|predicted
//   nas_latency_query_keys                     histogram: keys per Query call
//   nas_latency_query_seconds                  histogram: time to answer one Query call
//   nas_latency_cache_hits_total{device}       predicted keys answered from the device's cache
//   nas_latency_cache_misses_total{device}     predicted keys that ran the predictor
//   nas_latency_query_errors_total{code}       failed Query calls, by status code name
//   nas_latency_table_puts_total{device}       accepted table uploads
//   nas_latency_devices                        gauge: devices with a table
// Device labels only ever take names of devices that have a table (validated names), so an
// unknown-device query cannot grow the label set; it counts under errors{code="NOT_FOUND"}.
//
// Thread-safety: every method may be called concurrently.
//
//   LatencyMetrics metrics;   // owns a prometheus::Registry
//   metrics.RecordQuery("pixel1-tflite", {.measured = 990, .predicted = 10, .cache_hits = 8},
//                       1000, 0.0004);
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace nas {

struct QueryCounts {
  int64_t measured = 0;
  int64_t predicted = 0;
  int64_t cache_hits = 0;  // predicted keys served from the cache (a subset of `predicted`)
};

class LatencyMetrics {
 public:
  LatencyMetrics();

  void RecordQuery(const std::string& device, const QueryCounts& counts, int64_t keys,
                   double seconds);
  void RecordError(const absl::Status& status);
  void RecordPut(const std::string& device);
  void SetDevices(int64_t n);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  struct DeviceCounters {
    prometheus::Counter* measured;
    prometheus::Counter* predicted;
    prometheus::Counter* cache_hits;
    prometheus::Counter* cache_misses;
  };
  // The device's counters (pointers stay valid: prometheus-cpp owns the metrics).
  DeviceCounters Device(const std::string& device);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& queries_;
  prometheus::Family<prometheus::Counter>& cache_hits_;
  prometheus::Family<prometheus::Counter>& cache_misses_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Family<prometheus::Counter>& puts_;
  prometheus::Histogram& keys_per_query_;
  prometheus::Histogram& query_seconds_;
  prometheus::Gauge& devices_;

  absl::Mutex mu_;
  // Counters of a device, created on its first query; prometheus-cpp keeps them alive.
  absl::flat_hash_map<std::string, DeviceCounters> by_device_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nas
