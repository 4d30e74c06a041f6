// The search's units of work as the coordinator describes them (core/search_driver.h), run on a
// supernet: what the single-process search calls in-process and the gRPC worker calls per task.
//
//   SuperNet net(space, KeepForPath(space, task.path));   // only the path's ops exist
//   WeightTaskResult r = RunWeightTask(net, sgd, train_batches, task, /*label_smoothing=*/0.1);
#pragma once

#include <torch/torch.h>

#include <vector>

#include "core/search_driver.h"
#include "core/search_space.h"
#include "worker/data.h"
#include "worker/ops.h"
#include "worker/train.h"

namespace nas {

// Candidates a task materialises: its path (weight task, rl arch task) or its pairs.
std::vector<std::vector<bool>> KeepForPath(const SearchSpace& space, const std::vector<int>& path);
// The union of several paths' ops (an eval task's supernet).
std::vector<std::vector<bool>> KeepForPaths(const SearchSpace& space,
                                            const std::vector<std::vector<int>>& paths);
std::vector<std::vector<bool>> KeepForPairs(const SearchSpace& space,
                                            const std::vector<PairSample>& pairs);
std::vector<std::vector<bool>> KeepForArchTask(const SearchSpace& space, const ArchTaskSpec& t);

// k SGD steps on the task's path over the batches it names (epoch, index) of `train`.
// `net` and `sgd`'s state live on `device`; batches are moved there (on CUDA the next batch is
// prepared on a helper thread while the current step runs). A batch the source cannot give (a
// bad image file, a batch outside the split) throws, naming it (TorchRun makes it a status).
WeightTaskResult RunWeightTask(SuperNet& net, PathSgd& sgd, BatchSource& train,
                               const WeightTaskSpec& task, double label_smoothing,
                               const torch::Device& device = torch::kCPU);
// The binary-gate arch step (or, for rl, the path's accuracy) on the task's validation batch.
ArchTaskResult RunArchTask(SuperNet& net, BatchSource& valid, const ArchTaskSpec& task,
                           const torch::Device& device = torch::kCPU);

}  // namespace nas
