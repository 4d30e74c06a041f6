#include "worker/ops.h"

#include "absl/strings/str_cat.h"
#include "core/param_names.h"

namespace nas {

namespace F = torch::nn::functional;

namespace {
torch::nn::BatchNorm2d MakeBn(int c, double momentum, double eps) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c).momentum(momentum).eps(eps));
}
torch::nn::Conv2d MakeConv(int in, int out, int k, int stride, int groups) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k)
                               .stride(stride)
                               .padding(k / 2)
                               .groups(groups)
                               .bias(false));
}
}  // namespace

ConvBnActImpl::ConvBnActImpl(int in, int out, int kernel, int stride, double bn_momentum,
                             double bn_eps) {
  conv = register_module("conv", MakeConv(in, out, kernel, stride, 1));
  bn = register_module("bn", MakeBn(out, bn_momentum, bn_eps));
}

torch::Tensor ConvBnActImpl::forward(const torch::Tensor& x) {
  return torch::relu6(bn->forward(conv->forward(x)));
}

MBConvImpl::MBConvImpl(const BlockConfig& b, double bn_momentum, double bn_eps) {
  int mid = b.mid_channels();
  if (b.expand != 1) {
    expand_conv = register_module("expand_conv", MakeConv(b.in_channels, mid, 1, 1, 1));
    expand_bn = register_module("expand_bn", MakeBn(mid, bn_momentum, bn_eps));
  }
  depthwise_conv =
      register_module("depthwise_conv", MakeConv(mid, mid, b.kernel, b.stride, mid));
  depthwise_bn = register_module("depthwise_bn", MakeBn(mid, bn_momentum, bn_eps));
  project_conv = register_module("project_conv", MakeConv(mid, b.out_channels, 1, 1, 1));
  project_bn = register_module("project_bn", MakeBn(b.out_channels, bn_momentum, bn_eps));
}

torch::Tensor MBConvImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  if (!expand_conv.is_empty()) h = torch::relu6(expand_bn->forward(expand_conv->forward(h)));
  h = torch::relu6(depthwise_bn->forward(depthwise_conv->forward(h)));
  return project_bn->forward(project_conv->forward(h));
}

ClassifierImpl::ClassifierImpl(int in, int classes, double dropout_rate) : dropout(dropout_rate) {
  linear = register_module("linear", torch::nn::Linear(in, classes));
}

torch::Tensor ClassifierImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x.mean({2, 3});
  if (dropout > 0) h = F::dropout(h, F::DropoutFuncOptions().p(dropout).training(is_training()));
  return linear->forward(h);
}

NetworkImpl::NetworkImpl(const NetworkConfig& c) : config(c) {
  stem = register_module("stem", ConvBnAct(c.input_channels, c.stem_channels, c.stem_kernel,
                                           c.stem_stride, c.bn_momentum, c.bn_eps));
  int last = c.stem_channels;
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    const BlockConfig& b = c.blocks[i];
    if (b.zero) {
      blocks.push_back(nullptr);
      continue;
    }
    blocks.push_back(register_module(absl::StrCat("blocks_", i),
                                     MBConv(b, c.bn_momentum, c.bn_eps)));
    last = b.out_channels;
  }
  if (c.feature_mix_channels > 0) {
    feature_mix = register_module("feature_mix", ConvBnAct(last, c.feature_mix_channels, 1, 1,
                                                           c.bn_momentum, c.bn_eps));
  }
  classifier =
      register_module("classifier", Classifier(c.final_channels(), c.num_classes, c.dropout));
  ToChannelsLast(*this);
}

torch::Tensor NetworkImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = stem->forward(x);
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].is_empty()) continue;  // Zero: the shortcut alone
    torch::Tensor y = blocks[i]->forward(h);
    h = config.blocks[i].shortcut ? h + y : y;
  }
  if (!feature_mix.is_empty()) h = feature_mix->forward(h);
  return classifier->forward(h);
}

SuperNetImpl::SuperNetImpl(const SearchSpace& s) : SuperNetImpl(s, {}) {}

SuperNetImpl::SuperNetImpl(const SearchSpace& s, const std::vector<std::vector<bool>>& keep)
    : space(s) {
  NetworkConfig sk = s.Skeleton();
  stem = register_module("stem", ConvBnAct(sk.input_channels, sk.stem_channels, sk.stem_kernel,
                                           sk.stem_stride, sk.bn_momentum, sk.bn_eps));
  for (size_t i = 0; i < sk.blocks.size(); ++i) {
    fixed_blocks.push_back(register_module(absl::StrCat("fixed_", i),
                                           MBConv(sk.blocks[i], sk.bn_momentum, sk.bn_eps)));
  }
  for (int e = 0; e < s.num_edges(); ++e) {
    const EdgeSpec& edge = s.edges()[e];
    std::vector<MBConv> cands;
    for (size_t i = 0; i < edge.candidates.size(); ++i) {
      bool kept = keep.empty() || (static_cast<size_t>(e) < keep.size() &&
                                   i < keep[e].size() && keep[e][i]);
      if (edge.candidates[i].zero || !kept) {
        cands.push_back(nullptr);
        continue;
      }
      cands.push_back(register_module(CandidateName(e, static_cast<int>(i)),
                                      MBConv(edge.Block(static_cast<int>(i)), sk.bn_momentum,
                                             sk.bn_eps)));
    }
    edges.push_back(std::move(cands));
  }
  int last = s.edges().empty() ? sk.stem_channels : s.edges().back().out_channels;
  if (sk.feature_mix_channels > 0) {
    feature_mix = register_module("feature_mix", ConvBnAct(last, sk.feature_mix_channels, 1, 1,
                                                           sk.bn_momentum, sk.bn_eps));
    last = sk.feature_mix_channels;
  }
  classifier = register_module("classifier", Classifier(last, sk.num_classes, sk.dropout));
  ToChannelsLast(*this);
}

std::string SuperNetImpl::CandidateName(int e, int i) { return CandidateModuleName(e, i); }

torch::Tensor SuperNetImpl::Head(torch::Tensor x) {
  x = stem->forward(x);
  for (auto& b : fixed_blocks) x = b->forward(x);
  return x;
}

torch::Tensor SuperNetImpl::Tail(torch::Tensor x) {
  if (!feature_mix.is_empty()) x = feature_mix->forward(x);
  return classifier->forward(x);
}

torch::Tensor SuperNetImpl::ForwardPath(const torch::Tensor& input, const std::vector<int>& path) {
  TORCH_CHECK(static_cast<int>(path.size()) == space.num_edges(), "path has ", path.size(),
              " choices for ", space.num_edges(), " edges");
  torch::Tensor x = Head(input);
  for (size_t e = 0; e < edges.size(); ++e) {
    TORCH_CHECK(path[e] >= 0 && path[e] < static_cast<int>(edges[e].size()), "path[", e,
                "] out of range");
    MBConv& op = edges[e][path[e]];
    bool zero = space.edges()[e].candidates[path[e]].zero;
    TORCH_CHECK(zero || !op.is_empty(), "edge ", e, " candidate ", path[e],
                " is not materialised in this supernet");
    if (zero) continue;  // Zero: identity through the shortcut
    torch::Tensor y = op->forward(x);
    x = space.edges()[e].shortcut ? x + y : y;
  }
  return Tail(x);
}

torch::Tensor SuperNetImpl::ForwardGated(const torch::Tensor& input,
                                         const std::vector<PairSample>& pairs,
                                         const torch::Tensor& gates) {
  TORCH_CHECK(static_cast<int>(pairs.size()) == space.num_edges(), "pairs: wrong length");
  torch::Tensor x = Head(input);
  for (size_t e = 0; e < edges.size(); ++e) {
    const EdgeSpec& edge = space.edges()[e];
    MBConv& a = edges[e][pairs[e].active];
    TORCH_CHECK(edge.candidates[pairs[e].active].zero || !a.is_empty(), "edge ", e, " candidate ",
                pairs[e].active, " is not materialised in this supernet");
    if (a.is_empty()) continue;  // active Zero: the edge is skipped and gets no gradient
    torch::Tensor out = gates[e][0] * a->forward(x);
    MBConv& b = edges[e][pairs[e].other];
    TORCH_CHECK(edge.candidates[pairs[e].other].zero || !b.is_empty(), "edge ", e, " candidate ",
                pairs[e].other, " is not materialised in this supernet");
    if (pairs[e].other != pairs[e].active && !b.is_empty()) {
      torch::Tensor ob;
      {
        torch::NoGradGuard no_grad;
        ob = b->forward(x);
      }
      out = out + gates[e][1] * ob;
    }
    x = space.edges()[e].shortcut ? x + out : out;
  }
  return Tail(x);
}

torch::Tensor SuperNetImpl::ForwardWeightedSum(const torch::Tensor& input,
                                               const std::vector<std::vector<double>>& probs) {
  torch::Tensor x = Head(input);
  for (size_t e = 0; e < edges.size(); ++e) {
    torch::Tensor out;
    for (size_t i = 0; i < edges[e].size(); ++i) {
      if (edges[e][i].is_empty()) continue;
      torch::Tensor o = probs[e][i] * edges[e][i]->forward(x);
      out = out.defined() ? out + o : o;
    }
    x = space.edges()[e].shortcut ? x + out : out;
  }
  return Tail(x);
}

std::vector<torch::Tensor> SuperNetImpl::PathParameters(const std::vector<int>& path) {
  std::vector<torch::Tensor> params;
  auto add = [&](torch::nn::Module& m) {
    for (auto& p : m.parameters()) params.push_back(p);
  };
  add(*stem);
  for (auto& b : fixed_blocks) add(*b);
  for (size_t e = 0; e < edges.size(); ++e) {
    if (!edges[e][path[e]].is_empty()) add(*edges[e][path[e]]);
  }
  if (!feature_mix.is_empty()) add(*feature_mix);
  add(*classifier);
  return params;
}

void SuperNetImpl::ExportPath(const std::vector<int>& path, Network& net) {
  torch::NoGradGuard no_grad;
  auto copy = [](torch::nn::Module& from, torch::nn::Module& to) {
    auto src = from.named_parameters();
    for (auto& p : to.named_parameters()) p.value().copy_(src[p.key()]);
    auto bsrc = from.named_buffers();
    for (auto& b : to.named_buffers()) b.value().copy_(bsrc[b.key()]);
  };
  copy(*stem, *net->stem);
  size_t fixed = fixed_blocks.size();
  for (size_t i = 0; i < fixed; ++i) copy(*fixed_blocks[i], *net->blocks[i]);
  for (size_t e = 0; e < edges.size(); ++e) {
    if (!edges[e][path[e]].is_empty()) copy(*edges[e][path[e]], *net->blocks[fixed + e]);
  }
  if (!feature_mix.is_empty()) copy(*feature_mix, *net->feature_mix);
  copy(*classifier, *net->classifier);
}

void ToChannelsLast(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

int64_t CountParameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace nas
