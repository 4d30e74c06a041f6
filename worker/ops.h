// LibTorch modules: the candidate operations, the supernet and derived networks.
//
// Layers follow the ProxylessNAS reference exactly (so parameter counts match it):
//   ConvBnAct:  kxk conv (no bias) - BatchNorm - ReLU6            (stem, feature mix)
//   MBConv:     [1x1 conv - BN - ReLU6] - kxk depthwise - BN - ReLU6 - 1x1 conv - BN
//               (the bracket is omitted at expand 1); BN momentum/eps from the space
//   classifier: global average pool - dropout - linear (with bias)
//
// SuperNet holds every candidate of every edge but runs only what a step needs:
//   ForwardPath(x, path)          one candidate per edge (weight steps, evaluation)
//   ForwardGated(x, pairs, gates) binary-gate forward over the sampled pair of each edge:
//       y = [x +] g_a * o_a(x) + g_b * o_b(x).detach(), with g = (1, 0) a leaf tensor [E, 2];
//       o_b runs under no-grad, so its activations are not kept for backward.
//   ForwardWeightedSum(x, probs)  every candidate weighted (DARTS-style); for benchmarks only.
// Candidates that do not run keep undefined gradients.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/arch_params.h"
#include "core/network_config.h"
#include "core/search_space.h"

namespace nas {

struct ConvBnActImpl : torch::nn::Module {
  ConvBnActImpl(int in, int out, int kernel, int stride, double bn_momentum, double bn_eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvBnAct);

struct MBConvImpl : torch::nn::Module {
  MBConvImpl(const BlockConfig& b, double bn_momentum, double bn_eps);
  // The block's branch only; the identity shortcut is added by the caller.
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d expand_conv{nullptr};
  torch::nn::BatchNorm2d expand_bn{nullptr};
  torch::nn::Conv2d depthwise_conv{nullptr};
  torch::nn::BatchNorm2d depthwise_bn{nullptr};
  torch::nn::Conv2d project_conv{nullptr};
  torch::nn::BatchNorm2d project_bn{nullptr};
};
TORCH_MODULE(MBConv);

// Global average pool, dropout, linear.
struct ClassifierImpl : torch::nn::Module {
  ClassifierImpl(int in, int classes, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear linear{nullptr};
  double dropout;
};
TORCH_MODULE(Classifier);

// A concrete network built from a NetworkConfig (derived architectures, reference configs).
struct NetworkImpl : torch::nn::Module {
  explicit NetworkImpl(const NetworkConfig& config);
  torch::Tensor forward(const torch::Tensor& x);

  NetworkConfig config;
  ConvBnAct stem{nullptr};
  std::vector<MBConv> blocks;  // nullptr for Zero blocks
  ConvBnAct feature_mix{nullptr};
  Classifier classifier{nullptr};
};
TORCH_MODULE(Network);

struct SuperNetImpl : torch::nn::Module {
  explicit SuperNetImpl(const SearchSpace& space);
  // Only the candidates with keep[e][i] are built (the others stay nullptr and own no memory):
  // a worker materialises the path or pair of its task, never the whole supernet.
  SuperNetImpl(const SearchSpace& space, const std::vector<std::vector<bool>>& keep);

  torch::Tensor ForwardPath(const torch::Tensor& x, const std::vector<int>& path);
  torch::Tensor ForwardGated(const torch::Tensor& x, const std::vector<PairSample>& pairs,
                             const torch::Tensor& gates);
  torch::Tensor ForwardWeightedSum(const torch::Tensor& x,
                                   const std::vector<std::vector<double>>& probs);

  // Parameters of the modules a path runs (fixed layers plus one candidate per edge).
  std::vector<torch::Tensor> PathParameters(const std::vector<int>& path);
  // Module-name prefix of candidate i of edge e ("edge3_1"; core/param_names.h).
  static std::string CandidateName(int e, int i);
  // Copies the weights of `path` into a derived network of the same architecture.
  void ExportPath(const std::vector<int>& path, Network& net);

  SearchSpace space;
  ConvBnAct stem{nullptr};
  std::vector<MBConv> fixed_blocks;
  std::vector<std::vector<MBConv>> edges;  // [edge][candidate], nullptr for Zero
  ConvBnAct feature_mix{nullptr};
  Classifier classifier{nullptr};

 private:
  torch::Tensor Head(torch::Tensor x);
  torch::Tensor Tail(torch::Tensor x);
};
TORCH_MODULE(SuperNet);

int64_t CountParameters(torch::nn::Module& m);

// Converts every 4-D parameter and buffer to channels-last memory format (oneDNN's fast
// depthwise kernels need it on CPU). Inputs should be channels-last too (see data.h).
void ToChannelsLast(torch::nn::Module& m);

}  // namespace nas
