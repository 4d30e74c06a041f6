// What the coordinator's tests share without a server: a synthetic latency table (a mean for
// every key given, the same numbers everywhere) and a fresh temporary directory per test.
//
//   auto t = SyntheticLatencyTable("test-cpu",
//   SearchSpace::Preset("fashion-mnist")->AllLayerKeys()); std::filesystem::path dir =
//   FreshTestDir("coord");
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/job_manager.h"
#include "core/latency_table.h"
#include "gtest/gtest.h"

namespace nas {

// Means 0.05-0.11 ms cycling over the keys, count 1, no spread.
inline absl::StatusOr<LatencyTable> SyntheticLatencyTable(const std::string& device,
                                                          const std::vector<std::string>& keys) {
  LatencyTableInfo info;
  info.device = device;
  info.runtime = "synthetic";
  LatencyTable t(info);
  int i = 0;
  for (const std::string& k : keys) {
    absl::Status s = t.Insert(k, LatencyEntry{1, 0.05 + 0.01 * (i++ % 7), 0.0});
    if (!s.ok()) return s;
  }
  return t;
}

// <temp>/<prefix>_<pid>_<test name>, emptied.
inline std::filesystem::path FreshTestDir(const std::string& prefix) {
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                              (prefix + "_" + std::to_string(::getpid()) + "_" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A latency provider with a synthetic table for every layer key asked, on any device.
class SyntheticLatency : public LatencyProvider {
 public:
  absl::StatusOr<LatencyTable> Fetch(const std::string& device,
                                     const std::vector<std::string>& keys) override {
    return SyntheticLatencyTable(device, keys);
  }
};

}  // namespace nas
