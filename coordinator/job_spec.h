// A search job's spec (proto/nas/search.proto JobSpec) as the coordinator accepts it: defaults
// filled in (the same as `nas search`'s, core/search_defaults.h) and every field checked against
// JobSpecLimits, with InvalidArgument naming the field, what is wrong and the limit. A spec that
// passes can be stored, recovered and run: every number is finite and in range, every string
// bounded and of a safe alphabet, and its search space (built by SearchSpace::FromJson or a
// preset) within SpaceLimits.
//
//   NAS_ASSIGN_OR_RETURN(JobSpec spec, NormalizeJobSpec(request.spec()));
//   NAS_ASSIGN_OR_RETURN(SearchSpace space, JobSearchSpace(spec));
//
// Thread-safety: plain functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/arch_params.h"
#include "core/search_space.h"
#include "nas/search.pb.h"

namespace nas {

// The limits of a JobSpec. README.md ("Limits") lists these with the other services' limits.
struct JobSpecLimits {
  // Strings. Names are [A-Za-z0-9._-] (device also ':' and '+'); data_dir is printable ASCII
  // without ".." components.
  static constexpr size_t kMaxNameBytes = 64;     // space (a preset name), tenant
  static constexpr size_t kMaxDeviceBytes = 128;  // device
  static constexpr size_t kMaxPathBytes = 1024;   // data_dir
  // Numbers (every double must also be finite).
  static constexpr double kMaxTargetLatencyMs = 1e6;  // |target_latency_ms|
  static constexpr double kMaxTargetFraction = 10;    // (0, 10]
  static constexpr double kMaxLossLambda = 1e4;       // (0, 1e4]
  static constexpr double kMaxLearningRate = 100;     // search_lr, train_lr, arch_lr: (0, 100]
  static constexpr int kMaxEpochs = 1000;             // warmup, search, train epochs
  static constexpr int kMaxBatchSize = 4096;
  static constexpr int kMaxArchEvery = 1000000;
  static constexpr int64_t kMaxExamples = 1000000000;  // valid_size, train/test subsets
  static constexpr int kMaxPriority = 1000;            // priority in [-1000, 1000]
  static constexpr int kMaxParallelTasks = 4096;
  static constexpr int kMaxStepsPerTask = 10000;
  static constexpr int kMaxChainSteps = 1024;
  static constexpr int kMaxProfileThreads = 256;
};

// InvalidArgument naming `field` unless `value` is at most `max_bytes` of [A-Za-z0-9._-] and the
// characters of `extra`. Empty is allowed (callers that need a value check that).
absl::Status ValidateName(const std::string& field, const std::string& value, size_t max_bytes,
                          const char* extra = "");

// Fills defaults into zero/empty fields and validates every field (see above).
absl::StatusOr<JobSpec> NormalizeJobSpec(JobSpec spec);

// The job's search space: space_json when set (bounded by SpaceLimits), else the preset `space`.
// InvalidArgument naming the field.
absl::StatusOr<SearchSpace> JobSearchSpace(const JobSpec& spec);

// The hardware loss of a normalised spec at `target_ms`; InvalidArgument for an unknown loss.
absl::StatusOr<HardwareLossOptions> JobLoss(const JobSpec& spec, double target_ms);

}  // namespace nas
