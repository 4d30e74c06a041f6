// Which paths of a trained supernet the report evaluates with their inherited weights (the
// accuracy-latency view of report.html): the derived path (argmax p), the baseline (the largest
// candidate everywhere), then `n` more, alternately drawn from the final architecture
// distribution and uniformly over the space (which spans the latency range), without repeats.
//
//   std::vector<SampledPath> paths = PathsToEvaluate(space, alpha, 16, spec.seed());
//
// Deterministic in (space, alpha, n, seed): the coordinator plans the same paths after a restart
// and the local search the same as the distributed one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/arch_params.h"
#include "core/json_fields.h"
#include "core/search_space.h"

namespace nas {

struct SampledPath {
  std::string source;  // "derived", "baseline", "alpha" or "uniform"
  std::vector<int> choices;
};

// Paths to evaluate; fewer than n + 2 when the space has fewer distinct paths.
std::vector<SampledPath> PathsToEvaluate(const SearchSpace& space, const ArchParams& alpha, int n,
                                         uint64_t seed);

// report.json's "sampled_paths": {"evaluated_on", "paths": [{"source", "choices",
// "architecture", "predicted_latency_ms", "accuracy"}]}, `accuracies` in the order of `paths`.
Json SampledPathsJson(const SearchSpace& space, const LatencyModel& latency,
                      const std::vector<SampledPath>& paths, const std::vector<double>& accuracies,
                      int64_t valid_images, int batch_size);

// Images an evaluation of a split of `n` uses in batches of `batch_size`: its whole batches (a
// batch of one has no batch statistics), all of it when it is smaller than one batch.
int64_t EvaluatedImages(int64_t n, int batch_size);

// Most paths a job evaluates (JobSpec.sampled_paths).
constexpr int kMaxSampledPaths = 256;
// Paths per evaluation task: a task lists the union of its paths' tensors.
constexpr int kPathsPerEvalTask = 8;

}  // namespace nas
