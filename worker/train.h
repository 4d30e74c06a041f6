// The units of work a worker runs, as functions with explicit inputs and outputs (they become
// distributed tasks): a weight step on one sampled path, an arch step that returns the binary
// gates' gradients, evaluation, and training of a derived network.
//
//   PathSgd sgd(SgdOptions{});
//   WeightStepResult w = WeightStep(supernet, sgd, path, x, y, lr, /*label_smoothing=*/0.1);
//   ArchStepResult a = ArchStep(supernet, pairs, x_valid, y_valid);
//   // a.gate_grads[e] = {dCE/dg_active, dCE/dg_other}
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/arch_params.h"
#include "worker/data.h"
#include "worker/ops.h"

namespace nas {

struct SgdOptions {
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 4e-5;
};

// SGD with momentum on the parameters that have a gradient this step. Parameters whose
// gradient is undefined (inactive candidates) are not touched: no momentum, no weight decay.
// Momentum buffers are kept per parameter name, so they can be shipped with the op's weights.
class PathSgd {
 public:
  explicit PathSgd(SgdOptions o) : options_(o) {}
  void Step(torch::nn::Module& module, double lr);
  const std::map<std::string, torch::Tensor>& momentum() const { return momentum_; }
  // Buffers by parameter name (a worker loads the shipped ones before its steps).
  std::map<std::string, torch::Tensor>& mutable_momentum() { return momentum_; }
  int64_t StateBytes() const;

 private:
  SgdOptions options_;
  std::map<std::string, torch::Tensor> momentum_;
};

// Sets every parameter's gradient to undefined (not zero).
void ClearGradients(torch::nn::Module& module);

// Cross-entropy with label smoothing eps: (1 - eps) * CE(y) + eps * mean_k(-log p_k).
torch::Tensor SmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                                   double eps);
// Cosine schedule: lr * 0.5 * (1 + cos(pi * step / total)).
double CosineLr(double base_lr, int64_t step, int64_t total);

struct WeightStepResult {
  double loss = 0;
  double accuracy = 0;  // on the training batch, in [0, 1]
};
WeightStepResult WeightStep(SuperNet& net, PathSgd& sgd, const std::vector<int>& path,
                            const torch::Tensor& x, const torch::Tensor& y, double lr,
                            double label_smoothing);

struct ArchStepResult {
  double ce = 0;
  double accuracy = 0;
  std::vector<std::vector<double>> gate_grads;  // [edge] = {active, other}
  std::vector<bool> active_is_zero;
};
// Binary-gate forward over the sampled pairs on a validation batch (train-mode BN, no
// augmentation, plain cross-entropy); returns dCE/dg. No weight gradient is accumulated.
ArchStepResult ArchStep(SuperNet& net, const std::vector<PairSample>& pairs,
                        const torch::Tensor& x, const torch::Tensor& y);

// Accuracy of one path of the supernet on a batch, BN in train mode (REINFORCE reward).
double PathBatchAccuracy(SuperNet& net, const std::vector<int>& path, const torch::Tensor& x,
                         const torch::Tensor& y);

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  int64_t count = 0;
};
// The batch size of test-set evaluation.
inline constexpr int kEvalBatchSize = 500;
// Evaluates any module mapping images to logits over a whole data set (eval mode, no grad).
EvalResult Evaluate(const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                    const DataSet& data, int batch_size = kEvalBatchSize);
// The same over every batch of epoch 0 of `data` (a sequential source that keeps the last
// partial batch). A batch the source cannot give throws, naming it.
EvalResult Evaluate(const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                    BatchSource& data);

struct TrainOptions {
  int epochs = 5;
  int batch_size = 128;
  double lr = 0.1;
  double label_smoothing = 0.1;
  SgdOptions sgd;
  Augment augment;
  uint64_t seed = 0;
  // Where the network lives; batches are moved there. Default CPU.
  torch::Device device = torch::kCPU;
};
struct TrainProgress {
  int epoch = 0;
  int64_t step = 0, total_steps = 0;
  double loss = 0, accuracy = 0;
};
// Trains a network from its current weights with cosine LR per batch.
void TrainNetwork(Network& net, const DataSet& train, const TrainOptions& o,
                  const std::function<void(const TrainProgress&)>& progress);
// The same on `train`'s batches (epochs 1..o.epochs of the source; o.batch_size, o.augment and
// o.seed are the source's business). A batch the source cannot give throws, naming it.
void TrainNetwork(Network& net, BatchSource& train, const TrainOptions& o,
                  const std::function<void(const TrainProgress&)>& progress);

}  // namespace nas
