// What the task runner tests share (task_runner_test.cc on the CPU, task_runner_cuda_test.cc on
// a GPU): a small Fashion-MNIST job, the supernet's tensors as the coordinator holds them after
// init, and tasks built from them.
//
// The data: NAS_TEST_DATA_DIR when set (scripts/gpu_check.sh points it at a folder it carries),
// else Debian's /usr/share/datasets/fashion-mnist; tests skip when neither has the files.
#pragma once

#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/param_names.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "worker/ops.h"
#include "worker/task_runner.h"
#include "worker/tasks.h"

namespace nas::runner_testing {

inline std::vector<std::vector<bool>> KeepForPathOf(const SearchSpace& space,
                                                    const std::vector<int>& path) {
  return KeepForPath(space, path);
}
inline std::vector<std::vector<bool>> KeepForPairsOf(const SearchSpace& space,
                                                     const std::vector<PairSample>& pairs) {
  return KeepForPairs(space, pairs);
}

inline std::string TestDataDir() {
  const char* env = std::getenv("NAS_TEST_DATA_DIR");
  return env != nullptr && *env != '\0' ? env : "/usr/share/datasets/fashion-mnist";
}

inline bool HaveTestData() {
  return std::filesystem::exists(TestDataDir() + "/train-images-idx3-ubyte.gz") ||
         std::filesystem::exists(TestDataDir() + "/train-images-idx3-ubyte");
}

// A job of the fashion-mnist space on 600 training images (100 held out), batches of 32.
inline TaskData SmallJobData() {
  TaskData d;
  d.dataset = "fashion-mnist";
  d.train_subset = 600;
  d.test_subset = 200;
  d.valid_size = 100;
  d.split_seed = 7;
  d.batch_size = 32;
  d.train_seed = 11;
  d.valid_seed = 13;
  d.augment_pad = 2;
  d.augment_hflip = true;
  return d;
}

// Every tensor of the supernet after init (seed), on the host: what an init task returns.
inline std::map<std::string, torch::Tensor> InitialTensors(const SearchSpace& space,
                                                           uint64_t seed) {
  torch::manual_seed(seed);
  SuperNet net(space);
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : net->named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : net->named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

// What the coordinator lists for a task that materialises `keep`: every tensor of those modules
// (and their momentum when `momentum` holds it).
inline std::vector<ListedTensor> ListFor(const SearchSpace& space,
                                         const std::vector<std::vector<bool>>& keep,
                                         const std::map<std::string, torch::Tensor>& momentum) {
  SuperNet net(space, keep);
  std::vector<ListedTensor> listed;
  for (const auto& p : net->named_parameters()) {
    listed.push_back({p.key(), 1});
    if (momentum.count(kMomentumPrefix + p.key()) > 0) {
      listed.push_back({kMomentumPrefix + p.key(), 1});
    }
  }
  for (const auto& b : net->named_buffers()) listed.push_back({b.key(), 1});
  return listed;
}

// A path that takes a non-Zero candidate on every edge, varying with `k`.
inline std::vector<int> SomePath(const SearchSpace& space, int k) {
  std::vector<int> path;
  for (int e = 0; e < space.num_edges(); ++e) {
    const auto& c = space.edges()[e].candidates;
    int i = (k + e) % static_cast<int>(c.size());
    while (c[i].zero) i = (i + 1) % static_cast<int>(c.size());
    path.push_back(i);
  }
  return path;
}

// The job's splits exactly as the runner prepares them (TaskRunner::Data), for the references.
inline DataSplit LoadSplit(const TaskData& d) {
  absl::StatusOr<DataSet> train = LoadDataSet(d.dataset, TestDataDir(), true);
  EXPECT_TRUE(train.ok()) << train.status();
  DataSet full = BalancedSubset(*train, d.train_subset, d.split_seed);
  absl::StatusOr<DataSplit> split = SplitValidation(full, d.valid_size, d.split_seed);
  EXPECT_TRUE(split.ok()) << split.status();
  return *split;
}

// A weight task on `path` (steps batches from 0, learning rate 0.05), listing every tensor of
// the path and the momentum that `tensors` holds for it.
inline RunnerTask WeightTaskOn(const SearchSpace& space, const std::vector<int>& path,
                               const std::map<std::string, torch::Tensor>& tensors, int steps,
                               int64_t first_batch = 0) {
  RunnerTask t;
  t.space_json = space.ToJson();
  t.data = SmallJobData();
  t.tensors = ListFor(space, KeepForPathOf(space, path), tensors);
  WeightTaskSpec s;
  s.path = path;
  s.data_epoch = 0;
  for (int k = 0; k < steps; ++k) {
    s.batches.push_back(first_batch + k);
    s.lrs.push_back(0.05);
  }
  t.spec = WeightChain{{s}, /*label_smoothing=*/0.1};
  t.label = "weight";
  return t;
}

// An arch task over pairs (active = SomePath(k), other = SomePath(k + 1)) on validation batch 0.
inline RunnerTask ArchTaskOn(const SearchSpace& space, int k) {
  std::vector<int> a = SomePath(space, k), b = SomePath(space, k + 1);
  ArchTaskSpec s;
  for (int e = 0; e < space.num_edges(); ++e) s.pairs.push_back({a[e], b[e]});
  RunnerTask t;
  t.space_json = space.ToJson();
  t.data = SmallJobData();
  t.tensors = ListFor(space, KeepForPairsOf(space, s.pairs), {});
  t.spec = s;
  t.label = "arch";
  return t;
}

// The result tensors by name.
inline std::map<std::string, torch::Tensor> ByName(const RunnerResult& r) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : r.tensors) out[name] = t;
  return out;
}

}  // namespace nas::runner_testing
