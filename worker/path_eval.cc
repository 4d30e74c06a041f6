#include "worker/path_eval.h"

#include <torch/torch.h>

#include <string>
#include <utility>

namespace nas {

std::vector<double> EvaluatePaths(SuperNet& net, const std::vector<std::vector<int>>& paths,
                                  const DataSet& data, int batch_size,
                                  const torch::Device& device) {
  // Whole batches only (a batch of one has no batch statistics), unless the data is smaller.
  const bool drop_last = data.size() >= batch_size;
  Batcher batches(data, batch_size, 0, {}, /*shuffle=*/false, drop_last);
  return EvaluatePaths(net, paths, batches, device);
}

std::vector<double> EvaluatePaths(SuperNet& net, const std::vector<std::vector<int>>& paths,
                                  BatchSource& batches, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  // Train-mode BN updates the running statistics: keep them to put back.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved;
  for (auto& b : net->named_buffers()) saved.push_back({b.value(), b.value().clone()});
  std::vector<double> correct(paths.size(), 0.0);
  int64_t count = 0;
  torch::Tensor x, y;
  net->train();
  const int64_t n = batches.batches_per_epoch();
  for (int64_t b = 0; b < n; ++b) {
    absl::Status s = batches.Batch(0, b, &x, &y);
    TORCH_CHECK(s.ok(), "path evaluation: ", s.message());
    if (!device.is_cpu()) {
      x = x.to(device);
      y = y.to(device);
    }
    for (size_t p = 0; p < paths.size(); ++p) {
      correct[p] += net->ForwardPath(x, paths[p]).argmax(1).eq(y).sum().item<double>();
    }
    count += y.size(0);
  }
  for (auto& [live, copy] : saved) live.copy_(copy);
  std::vector<double> acc(paths.size(), 0.0);
  for (size_t p = 0; p < paths.size(); ++p) {
    acc[p] = count > 0 ? correct[p] / static_cast<double>(count) : 0.0;
  }
  return acc;
}

}  // namespace nas
