#include "worker/tasks.h"

#include <future>
#include <tuple>
#include <utility>

namespace nas {

std::vector<std::vector<bool>> KeepForPaths(const SearchSpace& space,
                                            const std::vector<std::vector<int>>& paths) {
  std::vector<std::vector<bool>> keep;
  for (int e = 0; e < space.num_edges(); ++e) {
    keep.emplace_back(space.edges()[e].candidates.size(), false);
  }
  for (const std::vector<int>& path : paths) {
    std::vector<std::vector<bool>> k = KeepForPath(space, path);
    for (size_t e = 0; e < k.size() && e < keep.size(); ++e) {
      for (size_t c = 0; c < k[e].size(); ++c) keep[e][c] = keep[e][c] || k[e][c];
    }
  }
  return keep;
}

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

namespace {

// Batch b of `epoch`, on `device` (pinned and non-blocking from the host on CUDA).
void DeviceBatch(BatchSource& batches, int64_t epoch, int64_t b, const torch::Device& device,
                 torch::Tensor* x, torch::Tensor* y, const char* what) {
  absl::Status s = batches.Batch(epoch, b, x, y);
  TORCH_CHECK(s.ok(), what, ": ", s.message());
  if (device.is_cpu()) return;
  *x = x->pin_memory().to(device, /*non_blocking=*/true);
  *y = y->pin_memory().to(device, /*non_blocking=*/true);
}

}  // namespace

WeightTaskResult RunWeightTask(SuperNet& net, PathSgd& sgd, BatchSource& train,
                               const WeightTaskSpec& task, double label_smoothing,
                               const torch::Device& device) {
  TORCH_CHECK(task.batches.size() == task.lrs.size() && !task.batches.empty(),
              "weight task: one learning rate per batch expected");
  train.Expect(task.data_epoch, task.batches);
  WeightTaskResult r;
  torch::Tensor x, y;
  if (device.is_cpu()) {
    for (size_t k = 0; k < task.batches.size(); ++k) {
      DeviceBatch(train, task.data_epoch, task.batches[k], device, &x, &y, "weight task");
      WeightStepResult w = WeightStep(net, sgd, task.path, x, y, task.lrs[k], label_smoothing);
      r.loss += w.loss;
      r.accuracy += w.accuracy;
    }
  } else {
    // The batcher is used by one thread at a time: the helper prepares batch k + 1 while this
    // thread runs step k.
    DeviceBatch(train, task.data_epoch, task.batches[0], device, &x, &y, "weight task");
    for (size_t k = 0; k < task.batches.size(); ++k) {
      std::future<std::pair<torch::Tensor, torch::Tensor>> next;
      if (k + 1 < task.batches.size()) {
        next = std::async(std::launch::async, [&, k] {
          torch::Tensor nx, ny;
          DeviceBatch(train, task.data_epoch, task.batches[k + 1], device, &nx, &ny,
                      "weight task");
          return std::make_pair(nx, ny);
        });
      }
      WeightStepResult w = WeightStep(net, sgd, task.path, x, y, task.lrs[k], label_smoothing);
      r.loss += w.loss;
      r.accuracy += w.accuracy;
      if (next.valid()) std::tie(x, y) = next.get();
    }
  }
  r.loss /= static_cast<double>(task.batches.size());
  r.accuracy /= static_cast<double>(task.batches.size());
  return r;
}

ArchTaskResult RunArchTask(SuperNet& net, BatchSource& valid, const ArchTaskSpec& task,
                           const torch::Device& device) {
  torch::Tensor x, y;
  valid.Expect(task.valid_epoch, {task.valid_batch});
  DeviceBatch(valid, task.valid_epoch, task.valid_batch, device, &x, &y, "arch task");
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
