#include "core/param_names.h"

#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nas {

std::string CandidateModuleName(int edge, int candidate) {
  return absl::StrCat("edge", edge, "_", candidate);
}

TensorOwner ClassifyTensor(const std::string& full) {
  absl::string_view name = full;
  absl::ConsumePrefix(&name, kMomentumPrefix);
  TensorOwner o;
  if (!absl::ConsumePrefix(&name, "edge")) return o;
  size_t us = name.find('_');
  size_t dot = name.find('.');
  if (us == absl::string_view::npos || dot == absl::string_view::npos || us > dot) return o;
  int e = 0, i = 0;
  if (!absl::SimpleAtoi(name.substr(0, us), &e) ||
      !absl::SimpleAtoi(name.substr(us + 1, dot - us - 1), &i)) {
    return o;
  }
  o.fixed = false;
  o.edge = e;
  o.candidate = i;
  return o;
}

bool TensorNeeded(const std::string& name, const std::vector<std::vector<bool>>& keep) {
  TensorOwner o = ClassifyTensor(name);
  if (o.fixed) return true;
  return o.edge >= 0 && static_cast<size_t>(o.edge) < keep.size() && o.candidate >= 0 &&
         static_cast<size_t>(o.candidate) < keep[o.edge].size() && keep[o.edge][o.candidate];
}

}  // namespace nas
