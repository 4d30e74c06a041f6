#include "worker/tasks.h"

namespace nas {

std::vector<std::vector<bool>> KeepForPath(const SearchSpace& space, const std::vector<int>& path) {
  std::vector<std::vector<bool>> keep;
  for (int e = 0; e < space.num_edges(); ++e) {
    keep.emplace_back(space.edges()[e].candidates.size(), false);
    if (e < static_cast<int>(path.size()) && path[e] >= 0 &&
        path[e] < static_cast<int>(keep[e].size())) {
      keep[e][path[e]] = true;
    }
  }
  return keep;
}

std::vector<std::vector<bool>> KeepForPairs(const SearchSpace& space,
                                            const std::vector<PairSample>& pairs) {
  std::vector<std::vector<bool>> keep;
  for (int e = 0; e < space.num_edges(); ++e) {
    int n = static_cast<int>(space.edges()[e].candidates.size());
    keep.emplace_back(n, false);
    if (e >= static_cast<int>(pairs.size())) continue;
    for (int i : {pairs[e].active, pairs[e].other}) {
      if (i >= 0 && i < n) keep[e][i] = true;
    }
  }
  return keep;
}

std::vector<std::vector<bool>> KeepForArchTask(const SearchSpace& space, const ArchTaskSpec& t) {
  return t.rl ? KeepForPath(space, t.path) : KeepForPairs(space, t.pairs);
}

WeightTaskResult RunWeightTask(SuperNet& net, PathSgd& sgd, Batcher& train,
                               const WeightTaskSpec& task, double label_smoothing) {
  TORCH_CHECK(task.batches.size() == task.lrs.size() && !task.batches.empty(),
              "weight task: one learning rate per batch expected");
  WeightTaskResult r;
  torch::Tensor x, y;
  for (size_t k = 0; k < task.batches.size(); ++k) {
    TORCH_CHECK(train.Batch(task.data_epoch, task.batches[k], &x, &y), "weight task: batch ",
                task.batches[k], " of epoch ", task.data_epoch, " is outside the training split");
    WeightStepResult w = WeightStep(net, sgd, task.path, x, y, task.lrs[k], label_smoothing);
    r.loss += w.loss;
    r.accuracy += w.accuracy;
  }
  r.loss /= static_cast<double>(task.batches.size());
  r.accuracy /= static_cast<double>(task.batches.size());
  return r;
}

ArchTaskResult RunArchTask(SuperNet& net, Batcher& valid, const ArchTaskSpec& task) {
  torch::Tensor x, y;
  TORCH_CHECK(valid.Batch(task.valid_epoch, task.valid_batch, &x, &y), "arch task: batch ",
              task.valid_batch, " is outside the validation split");
  ArchTaskResult r;
  if (task.rl) {
    r.accuracy = PathBatchAccuracy(net, task.path, x, y);
    return r;
  }
  ArchStepResult a = ArchStep(net, task.pairs, x, y);
  r.ce = a.ce;
  r.accuracy = a.accuracy;
  r.gate_grads = std::move(a.gate_grads);
  return r;
}

}  // namespace nas
