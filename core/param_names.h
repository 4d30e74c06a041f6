// Names of the supernet's tensors, shared by the worker (which builds modules with them) and the
// coordinator (which never sees LibTorch but must know which tensors belong to which candidate).
//
// A candidate op's tensors are named "edge<e>_<i>.<...>" (e.g. "edge3_1.depthwise_conv.weight");
// every other tensor (stem, fixed blocks, feature mix, classifier) is a fixed layer's and goes
// with every task. SGD momentum of parameter P travels as "momentum:P".
//
//   std::string n = CandidateModuleName(3, 1);              // "edge3_1"
//   TensorOwner o = ClassifyTensor("momentum:edge3_1.project_bn.weight");  // {3, 1}
#pragma once

#include <string>
#include <vector>

namespace nas {

std::string CandidateModuleName(int edge, int candidate);

inline constexpr char kMomentumPrefix[] = "momentum:";

struct TensorOwner {
  bool fixed = true;  // a fixed layer's tensor
  int edge = -1;
  int candidate = -1;
};
// Which op a tensor (or its momentum) belongs to.
TensorOwner ClassifyTensor(const std::string& name);

// Whether the tensor is needed by a task whose materialised candidates are `keep` ([edge][i]).
bool TensorNeeded(const std::string& name, const std::vector<std::vector<bool>>& keep);

}  // namespace nas
