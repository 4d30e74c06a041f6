#include "core/architecture.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

absl::StatusOr<Architecture> Architecture::FromJson(const std::string& text,
                                                    const SearchSpace& space) {
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "architecture"));
  Architecture a;
  NAS_ASSIGN_OR_RETURN(a.space, GetString(j, "", "space"));
  if (a.space != space.name()) {
    return absl::InvalidArgumentError(absl::StrCat("space: architecture is for \"", a.space,
                                                   "\", not \"", space.name(), "\""));
  }
  NAS_ASSIGN_OR_RETURN(const Json* choices, GetMember(j, "", "choices"));
  if (!choices->is_array()) return absl::InvalidArgumentError("choices: expected a list");
  if (static_cast<int>(choices->size()) != space.num_edges()) {
    return absl::InvalidArgumentError(absl::StrCat("choices: ", choices->size(), " entries for ",
                                                   space.num_edges(), " edges"));
  }
  for (size_t i = 0; i < choices->size(); ++i) {
    std::string field = absl::StrCat("choices[", i, "]");
    if (!(*choices)[i].is_string()) {
      return absl::InvalidArgumentError(field + ": expected a candidate name");
    }
    auto cand = Candidate::Parse((*choices)[i].get<std::string>());
    if (!cand.ok()) return absl::InvalidArgumentError(field + ": " + std::string(cand.status().message()));
    const EdgeSpec& e = space.edges()[i];
    int found = -1;
    for (size_t k = 0; k < e.candidates.size(); ++k) {
      if (e.candidates[k] == *cand) found = static_cast<int>(k);
    }
    if (found < 0) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": \"", cand->Name(),
                                                     "\" is not a candidate of this edge"));
    }
    a.choices.push_back(found);
  }
  return a;
}

std::string Architecture::ToJson(const SearchSpace& space) const {
  Json names = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    names.push_back(space.edges()[i].candidates[choices[i]].Name());
  }
  Json j = {{"space", space.name()}, {"choices", names}};
  return j.dump(2);
}

std::string Architecture::ToString(const SearchSpace& space) const {
  std::vector<std::string> names;
  for (size_t i = 0; i < choices.size(); ++i) {
    names.push_back(space.edges()[i].candidates[choices[i]].Name());
  }
  return absl::StrJoin(names, " | ");
}

absl::StatusOr<Architecture> Architecture::FromReferenceConfig(const std::string& text,
                                                               const SearchSpace& space) {
  NAS_ASSIGN_OR_RETURN(NetworkConfig net, NetworkConfig::FromReferenceJson(
                                              text, space.input_height(), space.input_width()));
  NetworkConfig skeleton = space.Skeleton();
  size_t fixed = skeleton.blocks.size();
  if (net.blocks.size() != fixed + space.edges().size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("blocks: ", net.blocks.size(), " blocks, but space ", space.name(),
                     " has ", fixed, " fixed blocks and ", space.num_edges(), " edges"));
  }
  if (net.stem_channels != skeleton.stem_channels) {
    return absl::InvalidArgumentError(absl::StrCat("first_conv.out_channels: ",
                                                   net.stem_channels, " but the space has ",
                                                   skeleton.stem_channels));
  }
  if (net.input_channels != skeleton.input_channels || net.stem_kernel != skeleton.stem_kernel ||
      net.stem_stride != skeleton.stem_stride) {
    return absl::InvalidArgumentError(absl::StrCat(
        "first_conv: in_channels ", net.input_channels, ", kernel ", net.stem_kernel,
        ", stride ", net.stem_stride, " but the space has ", skeleton.input_channels, ", ",
        skeleton.stem_kernel, ", ", skeleton.stem_stride));
  }
  // The fixed blocks are not choices, so they must be the space's exactly.
  for (size_t i = 0; i < fixed; ++i) {
    const BlockConfig& b = net.blocks[i];
    const BlockConfig& s = skeleton.blocks[i];
    if (b.zero || b.in_channels != s.in_channels || b.out_channels != s.out_channels ||
        b.kernel != s.kernel || b.expand != s.expand || b.stride != s.stride ||
        b.shortcut != s.shortcut) {
      return absl::InvalidArgumentError(absl::StrCat(
          "blocks[", i, "]: does not match the fixed block of space ", space.name(), " (",
          s.in_channels, "->", s.out_channels, " ", Candidate{s.kernel, s.expand, false}.Name(),
          " stride ", s.stride, ")"));
    }
  }
  if (net.feature_mix_channels != skeleton.feature_mix_channels) {
    return absl::InvalidArgumentError(absl::StrCat("feature_mix_layer.out_channels: ",
                                                   net.feature_mix_channels,
                                                   " but the space has ",
                                                   skeleton.feature_mix_channels));
  }
  if (net.num_classes != skeleton.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("classifier.out_features: ", net.num_classes,
                                                   " but the space has ",
                                                   skeleton.num_classes));
  }
  Architecture a;
  a.space = space.name();
  for (int i = 0; i < space.num_edges(); ++i) {
    const BlockConfig& b = net.blocks[fixed + i];
    const EdgeSpec& e = space.edges()[i];
    std::string field = absl::StrCat("blocks[", fixed + i, "]");
    if (!b.zero && (b.in_channels != e.in_channels || b.out_channels != e.out_channels ||
                    b.stride != e.stride)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": ", b.in_channels, "->", b.out_channels, " stride ", b.stride,
          " does not fit edge ", i, " of space ", space.name(), " (", e.in_channels, "->",
          e.out_channels, " stride ", e.stride, ")"));
    }
    Candidate c{b.kernel, b.expand, b.zero};
    int found = -1;
    for (size_t k = 0; k < e.candidates.size(); ++k) {
      if (e.candidates[k] == c) found = static_cast<int>(k);
    }
    if (found < 0) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", c.Name(),
                                                     " is not a candidate of edge ", i));
    }
    a.choices.push_back(found);
  }
  return a;
}

}  // namespace nas
