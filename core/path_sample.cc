#include "core/path_sample.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "core/architecture.h"
#include "core/rng.h"

namespace nas {

std::vector<SampledPath> PathsToEvaluate(const SearchSpace& space, const ArchParams& alpha, int n,
                                         uint64_t seed) {
  std::vector<SampledPath> out;
  std::set<std::vector<int>> seen;
  auto add = [&](const std::string& source, std::vector<int> choices) {
    if (!seen.insert(choices).second) return false;
    out.push_back({source, std::move(choices)});
    return true;
  };
  add("derived", alpha.Argmax());
  add("baseline", space.LargestChoices());
  // Its own stream: the search's seeds are not advanced or reused.
  Rng rng(seed ^ 0x5a17ed9a7b5ULL);
  const std::vector<std::vector<double>> probs = alpha.AllProbs();
  const int edges = space.num_edges();
  int added = 0;
  for (int tries = 0; added < n && tries < 20 * n + 20; ++tries) {
    const bool from_alpha = added % 2 == 0;
    std::vector<int> c(edges);
    for (int e = 0; e < edges; ++e) {
      const int k = static_cast<int>(space.edges()[e].candidates.size());
      c[e] = from_alpha ? rng.Categorical(probs[e].data(), k)
                        : static_cast<int>(rng.Below(static_cast<uint64_t>(k)));
    }
    if (add(from_alpha ? "alpha" : "uniform", std::move(c))) ++added;
  }
  return out;
}

Json SampledPathsJson(const SearchSpace& space, const LatencyModel& latency,
                      const std::vector<SampledPath>& paths, const std::vector<double>& accuracies,
                      int64_t valid_images, int batch_size) {
  Json out = Json::array();
  for (size_t i = 0; i < paths.size() && i < accuracies.size(); ++i) {
    out.push_back({{"source", paths[i].source},
                   {"choices", paths[i].choices},
                   {"architecture", Architecture{space.name(), paths[i].choices}.ToString(space)},
                   {"predicted_latency_ms", latency.PathLatency(paths[i].choices)},
                   {"accuracy", accuracies[i]}});
  }
  return Json{{"evaluated_on",
               absl::StrCat(EvaluatedImages(valid_images, batch_size),
                            " validation images, inherited weights, BatchNorm on batch statistics")},
              {"paths", out}};
}

int64_t EvaluatedImages(int64_t n, int batch_size) {
  if (batch_size <= 0 || n < batch_size) return n;
  return n / batch_size * batch_size;
}

}  // namespace nas
