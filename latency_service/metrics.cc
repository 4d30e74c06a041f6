#include "latency_service/metrics.h"

#include "absl/status/status.h"

namespace nas {

namespace {

prometheus::Histogram::BucketBoundaries KeyBuckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000};
}

prometheus::Histogram::BucketBoundaries SecondsBuckets() {
  return {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4,
          1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,  0.25,   1.0};
}

}  // namespace

LatencyMetrics::LatencyMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      queries_(prometheus::BuildCounter()
                   .Name("nas_latency_queries_total")
                   .Help("Layer keys answered, by device and source (measured or predicted)")
                   .Register(*registry_)),
      cache_hits_(prometheus::BuildCounter()
                      .Name("nas_latency_cache_hits_total")
                      .Help("Predicted layer keys answered from the device's cache")
                      .Register(*registry_)),
      cache_misses_(prometheus::BuildCounter()
                        .Name("nas_latency_cache_misses_total")
                        .Help("Predicted layer keys that ran the device's predictor")
                        .Register(*registry_)),
      errors_(prometheus::BuildCounter()
                  .Name("nas_latency_query_errors_total")
                  .Help("Failed Query calls, by status code")
                  .Register(*registry_)),
      puts_(prometheus::BuildCounter()
                .Name("nas_latency_table_puts_total")
                .Help("Accepted table uploads, by device")
                .Register(*registry_)),
      keys_per_query_(prometheus::BuildHistogram()
                          .Name("nas_latency_query_keys")
                          .Help("Layer keys per Query call")
                          .Register(*registry_)
                          .Add({}, KeyBuckets())),
      query_seconds_(prometheus::BuildHistogram()
                         .Name("nas_latency_query_seconds")
                         .Help("Time to answer one Query call, in seconds")
                         .Register(*registry_)
                         .Add({}, SecondsBuckets())),
      devices_(prometheus::BuildGauge()
                   .Name("nas_latency_devices")
                   .Help("Devices with a latency table")
                   .Register(*registry_)
                   .Add({})) {}

LatencyMetrics::DeviceCounters LatencyMetrics::Device(const std::string& device) {
  absl::MutexLock lock(&mu_);
  auto it = by_device_.find(device);
  if (it != by_device_.end()) return it->second;
  DeviceCounters c{&queries_.Add({{"device", device}, {"source", "measured"}}),
                   &queries_.Add({{"device", device}, {"source", "predicted"}}),
                   &cache_hits_.Add({{"device", device}}),
                   &cache_misses_.Add({{"device", device}})};
  by_device_.emplace(device, c);
  return c;
}

void LatencyMetrics::RecordQuery(const std::string& device, const QueryCounts& counts, int64_t keys,
                                 double seconds) {
  const DeviceCounters local = Device(device);
  if (counts.measured > 0) local.measured->Increment(static_cast<double>(counts.measured));
  if (counts.predicted > 0) local.predicted->Increment(static_cast<double>(counts.predicted));
  if (counts.cache_hits > 0) local.cache_hits->Increment(static_cast<double>(counts.cache_hits));
  int64_t misses = counts.predicted - counts.cache_hits;
  if (misses > 0) local.cache_misses->Increment(static_cast<double>(misses));
  keys_per_query_.Observe(static_cast<double>(keys));
  query_seconds_.Observe(seconds);
}

void LatencyMetrics::RecordError(const absl::Status& status) {
  errors_.Add({{"code", absl::StatusCodeToString(status.code())}}).Increment();
}

void LatencyMetrics::RecordPut(const std::string& device) {
  puts_.Add({{"device", device}}).Increment();
}

void LatencyMetrics::SetDevices(int64_t n) { devices_.Set(static_cast<double>(n)); }

}  // namespace nas
