#include "core/search_space.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

std::string Candidate::Name() const {
  if (zero) return "Zero";
  return absl::StrCat(kernel, "x", kernel, "_MBConv", expand);
}

absl::StatusOr<Candidate> Candidate::Parse(const std::string& name) {
  Candidate c;
  if (name == "Zero") {
    c.zero = true;
    return c;
  }
  // "KxK_MBConvE"
  std::vector<std::string> parts = absl::StrSplit(name, '_');
  int k1 = 0, k2 = 0, e = 0;
  if (parts.size() == 2 && absl::StartsWith(parts[1], "MBConv")) {
    std::vector<std::string> kk = absl::StrSplit(parts[0], 'x');
    if (kk.size() == 2 && absl::SimpleAtoi(kk[0], &k1) && absl::SimpleAtoi(kk[1], &k2) &&
        absl::SimpleAtoi(parts[1].substr(6), &e) && k1 == k2 && k1 > 0 && k1 % 2 == 1 && e >= 1) {
      c.kernel = k1;
      c.expand = e;
      return c;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("candidate \"", name,
                   "\": expected \"Zero\" or \"KxK_MBConvE\" with odd K (e.g. 3x3_MBConv6)"));
}

BlockConfig EdgeSpec::Block(int i) const {
  const Candidate& c = candidates.at(i);
  BlockConfig b;
  b.in_channels = in_channels;
  b.out_channels = out_channels;
  b.stride = stride;
  b.in_height = in_height;
  b.in_width = in_width;
  b.shortcut = shortcut;
  b.zero = c.zero;
  b.kernel = c.zero ? 0 : c.kernel;
  b.expand = c.zero ? 0 : c.expand;
  return b;
}

int EdgeSpec::ZeroIndex() const {
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].zero) return static_cast<int>(i);
  }
  return -1;
}

int EdgeSpec::LargestIndex() const {
  int best = 0;
  int64_t best_macs = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    int64_t m = BlockMacs(Block(static_cast<int>(i)));
    if (m > best_macs) {
      best_macs = m;
      best = static_cast<int>(i);
    }
  }
  return best;
}

int SearchSpace::MakeDivisible(double v, int divisor) {
  int new_v = std::max(divisor, static_cast<int>(v + divisor / 2.0) / divisor * divisor);
  if (new_v < 0.9 * v) new_v += divisor;
  return new_v;
}

std::vector<std::string> SearchSpace::PresetNames() {
  return {"proxyless-imagenet", "fashion-mnist", "cifar10"};
}

namespace {

// The exact ProxylessNAS ImageNet space (mobile setting; shared/data/proxylessnas/README.md).
constexpr char kImageNetPreset[] = R"({
  "name": "proxyless-imagenet",
  "input": {"height": 224, "width": 224, "channels": 3},
  "num_classes": 1000,
  "width_mult": 1.0,
  "stem": {"channels": 32, "kernel": 3, "stride": 2},
  "first_block": {"channels": 16, "kernel": 3, "expand": 1},
  "stages": [
    {"channels": 24, "blocks": 4, "stride": 2},
    {"channels": 40, "blocks": 4, "stride": 2},
    {"channels": 80, "blocks": 4, "stride": 2},
    {"channels": 96, "blocks": 4, "stride": 1},
    {"channels": 192, "blocks": 4, "stride": 2},
    {"channels": 320, "blocks": 1, "stride": 1}
  ],
  "feature_mix_channels": 1280,
  "candidates": {"kernels": [3, 5, 7], "expands": [3, 6], "zero": true},
  "bn": {"momentum": 0.1, "eps": 0.001},
  "dropout": 0.0
})";

// The embedded default: small enough to search and train on 2 CPU cores in minutes.
// 28x28 -> stem stride 2 -> 14x14 -> 7x7 -> 4x4.
constexpr char kFashionMnistPreset[] = R"({
  "name": "fashion-mnist",
  "input": {"height": 28, "width": 28, "channels": 1},
  "num_classes": 10,
  "width_mult": 1.0,
  "stem": {"channels": 16, "kernel": 3, "stride": 2},
  "first_block": {"channels": 16, "kernel": 3, "expand": 1},
  "stages": [
    {"channels": 24, "blocks": 2, "stride": 2},
    {"channels": 32, "blocks": 2, "stride": 1},
    {"channels": 48, "blocks": 2, "stride": 2},
    {"channels": 64, "blocks": 1, "stride": 1}
  ],
  "feature_mix_channels": 256,
  "candidates": {"kernels": [3, 5, 7], "expands": [3, 6], "zero": true},
  "bn": {"momentum": 0.1, "eps": 0.001},
  "dropout": 0.0
})";

// CIFAR-10 (32x32x3): stem stride 1, three downsamplings to 4x4.
constexpr char kCifar10Preset[] = R"({
  "name": "cifar10",
  "input": {"height": 32, "width": 32, "channels": 3},
  "num_classes": 10,
  "width_mult": 1.0,
  "stem": {"channels": 32, "kernel": 3, "stride": 1},
  "first_block": {"channels": 16, "kernel": 3, "expand": 1},
  "stages": [
    {"channels": 24, "blocks": 3, "stride": 1},
    {"channels": 40, "blocks": 3, "stride": 2},
    {"channels": 80, "blocks": 3, "stride": 2},
    {"channels": 96, "blocks": 3, "stride": 1},
    {"channels": 192, "blocks": 3, "stride": 2},
    {"channels": 320, "blocks": 1, "stride": 1}
  ],
  "feature_mix_channels": 1280,
  "candidates": {"kernels": [3, 5, 7], "expands": [3, 6], "zero": true},
  "bn": {"momentum": 0.1, "eps": 0.001},
  "dropout": 0.0
})";

}  // namespace

absl::StatusOr<SearchSpace> SearchSpace::Preset(const std::string& name) {
  if (name == "proxyless-imagenet" || name == "imagenet") return FromJson(kImageNetPreset);
  if (name == "fashion-mnist") return FromJson(kFashionMnistPreset);
  if (name == "cifar10") return FromJson(kCifar10Preset);
  return absl::NotFoundError(absl::StrCat(
      "space \"", name, "\": unknown preset (known: ", absl::StrJoin(PresetNames(), ", "), ")"));
}

absl::StatusOr<SearchSpace> SearchSpace::Load(const std::string& name_or_path) {
  for (const std::string& p : PresetNames()) {
    if (p == name_or_path) return Preset(p);
  }
  if (name_or_path == "imagenet") return Preset(name_or_path);
  auto text = ReadFile(name_or_path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("space \"", name_or_path, "\": neither a preset (",
                                            absl::StrJoin(PresetNames(), ", "),
                                            ") nor a readable file"));
  }
  auto space = FromJson(*text);
  if (!space.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(name_or_path, ": ", space.status().message()));
  }
  return space;
}

absl::StatusOr<SearchSpace> SearchSpace::FromJson(const std::string& text) {
  JsonLimits limits;
  limits.max_bytes = SpaceLimits::kMaxJsonBytes;
  limits.max_depth = SpaceLimits::kMaxJsonDepth;
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "search space", limits));
  SearchSpace s;
  NAS_ASSIGN_OR_RETURN(s.name_, GetString(j, "", "name"));
  NAS_ASSIGN_OR_RETURN(const Json* input, GetMember(j, "", "input"));
  NAS_ASSIGN_OR_RETURN(s.input_height_, GetInt(*input, "input", "height"));
  NAS_ASSIGN_OR_RETURN(s.input_width_, GetInt(*input, "input", "width"));
  NAS_ASSIGN_OR_RETURN(s.input_channels_, GetInt(*input, "input", "channels"));
  NAS_ASSIGN_OR_RETURN(s.num_classes_, GetInt(j, "", "num_classes"));
  NAS_ASSIGN_OR_RETURN(s.width_mult_, GetDoubleOr(j, "", "width_mult", 1.0));
  NAS_ASSIGN_OR_RETURN(const Json* stem, GetMember(j, "", "stem"));
  NAS_ASSIGN_OR_RETURN(s.stem_channels_, GetInt(*stem, "stem", "channels"));
  NAS_ASSIGN_OR_RETURN(s.stem_kernel_, GetIntOr(*stem, "stem", "kernel", 3));
  NAS_ASSIGN_OR_RETURN(s.stem_stride_, GetIntOr(*stem, "stem", "stride", 2));
  if (j.contains("first_block") && !j["first_block"].is_null()) {
    const Json& fb = j["first_block"];
    NAS_ASSIGN_OR_RETURN(s.first_block_channels_, GetInt(fb, "first_block", "channels"));
    NAS_ASSIGN_OR_RETURN(s.first_block_kernel_, GetIntOr(fb, "first_block", "kernel", 3));
    NAS_ASSIGN_OR_RETURN(s.first_block_expand_, GetIntOr(fb, "first_block", "expand", 1));
  } else {
    s.first_block_channels_ = 0;
  }
  NAS_ASSIGN_OR_RETURN(const Json* stages, GetMember(j, "", "stages"));
  if (!stages->is_array() || stages->empty()) {
    return absl::InvalidArgumentError("stages: expected a non-empty list");
  }
  if (stages->size() > static_cast<size_t>(SpaceLimits::kMaxStages)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stages: ", stages->size(), " stages, over the limit of ", SpaceLimits::kMaxStages));
  }
  for (size_t i = 0; i < stages->size(); ++i) {
    std::string p = absl::StrCat("stages[", i, "]");
    StageSpec st;
    NAS_ASSIGN_OR_RETURN(st.channels, GetInt((*stages)[i], p, "channels"));
    NAS_ASSIGN_OR_RETURN(st.blocks, GetInt((*stages)[i], p, "blocks"));
    NAS_ASSIGN_OR_RETURN(st.stride, GetIntOr((*stages)[i], p, "stride", 1));
    s.stages_.push_back(st);
  }
  NAS_ASSIGN_OR_RETURN(s.feature_mix_channels_, GetIntOr(j, "", "feature_mix_channels", 1280));
  NAS_ASSIGN_OR_RETURN(const Json* cand, GetMember(j, "", "candidates"));
  NAS_ASSIGN_OR_RETURN(s.kernels_, GetIntList(*cand, "candidates", "kernels"));
  NAS_ASSIGN_OR_RETURN(s.expands_, GetIntList(*cand, "candidates", "expands"));
  if (cand->contains("zero")) {
    NAS_ASSIGN_OR_RETURN(s.zero_, GetBool(*cand, "candidates", "zero"));
  }
  if (j.contains("bn")) {
    NAS_ASSIGN_OR_RETURN(s.bn_momentum_, GetDoubleOr(j["bn"], "bn", "momentum", 0.1));
    NAS_ASSIGN_OR_RETURN(s.bn_eps_, GetDoubleOr(j["bn"], "bn", "eps", 1e-3));
  }
  NAS_ASSIGN_OR_RETURN(s.dropout_, GetDoubleOr(j, "", "dropout", 0.0));
  NAS_RETURN_IF_ERROR(s.Build());
  return s;
}

absl::Status SearchSpace::Build() {
  auto bad = [](const std::string& f, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(f, ": ", why));
  };
  if (name_.empty()) return bad("name", "must not be empty");
  auto over = [&](const std::string& f, int64_t v, int64_t limit) {
    return bad(f, absl::StrCat(v, " is over the limit of ", limit));
  };
  if (input_height_ <= 0 || input_width_ <= 0) return bad("input", "size must be positive");
  if (input_height_ > SpaceLimits::kMaxInputSize) {
    return over("input.height", input_height_, SpaceLimits::kMaxInputSize);
  }
  if (input_width_ > SpaceLimits::kMaxInputSize) {
    return over("input.width", input_width_, SpaceLimits::kMaxInputSize);
  }
  if (input_channels_ <= 0) return bad("input.channels", "must be positive");
  if (input_channels_ > SpaceLimits::kMaxInputChannels) {
    return over("input.channels", input_channels_, SpaceLimits::kMaxInputChannels);
  }
  if (num_classes_ < 2) return bad("num_classes", "must be at least 2");
  if (num_classes_ > SpaceLimits::kMaxClasses) {
    return over("num_classes", num_classes_, SpaceLimits::kMaxClasses);
  }
  if (stages_.size() > static_cast<size_t>(SpaceLimits::kMaxStages)) {
    return over("stages", static_cast<int64_t>(stages_.size()), SpaceLimits::kMaxStages);
  }
  for (auto [field, v] : {std::pair<const char*, int>{"stem.channels", stem_channels_},
                          {"first_block.channels", first_block_channels_},
                          {"feature_mix_channels", feature_mix_channels_}}) {
    if (v > SpaceLimits::kMaxChannels) return over(field, v, SpaceLimits::kMaxChannels);
  }
  if (stem_kernel_ > SpaceLimits::kMaxKernel) {
    return over("stem.kernel", stem_kernel_, SpaceLimits::kMaxKernel);
  }
  if (first_block_kernel_ > SpaceLimits::kMaxKernel) {
    return over("first_block.kernel", first_block_kernel_, SpaceLimits::kMaxKernel);
  }
  if (first_block_expand_ < 1 || first_block_expand_ > SpaceLimits::kMaxExpand) {
    return bad("first_block.expand",
               absl::StrCat(first_block_expand_, " is not in [1, ", SpaceLimits::kMaxExpand, "]"));
  }
  if (kernels_.size() > static_cast<size_t>(SpaceLimits::kMaxKernels)) {
    return over("candidates.kernels", static_cast<int64_t>(kernels_.size()),
                SpaceLimits::kMaxKernels);
  }
  if (expands_.size() > static_cast<size_t>(SpaceLimits::kMaxExpands)) {
    return over("candidates.expands", static_cast<int64_t>(expands_.size()),
                SpaceLimits::kMaxExpands);
  }
  if (!(width_mult_ > 0) || width_mult_ > 8) return bad("width_mult", "must be in (0, 8]");
  if (stem_channels_ <= 0) return bad("stem.channels", "must be positive");
  if (stem_kernel_ <= 0 || stem_kernel_ % 2 == 0) return bad("stem.kernel", "must be odd");
  if (stem_stride_ < 1 || stem_stride_ > 2) return bad("stem.stride", "must be 1 or 2");
  if (first_block_channels_ < 0) return bad("first_block.channels", "must be positive");
  if (first_block_channels_ > 0 && first_block_kernel_ % 2 == 0) {
    return bad("first_block.kernel", "must be odd");
  }
  if (kernels_.empty()) return bad("candidates.kernels", "must not be empty");
  if (expands_.empty()) return bad("candidates.expands", "must not be empty");
  std::set<int> seen_k, seen_e;
  for (int k : kernels_) {
    if (k <= 0 || k % 2 == 0) return bad("candidates.kernels", absl::StrCat(k, " is not odd"));
    if (k > SpaceLimits::kMaxKernel) return over("candidates.kernels", k, SpaceLimits::kMaxKernel);
    if (!seen_k.insert(k).second) return bad("candidates.kernels", absl::StrCat(k, " repeated"));
  }
  for (int e : expands_) {
    if (e < 1) return bad("candidates.expands", absl::StrCat(e, " is below 1"));
    if (e > SpaceLimits::kMaxExpand) return over("candidates.expands", e, SpaceLimits::kMaxExpand);
    if (!seen_e.insert(e).second) return bad("candidates.expands", absl::StrCat(e, " repeated"));
  }
  if (feature_mix_channels_ < 0) return bad("feature_mix_channels", "must be >= 0");
  if (!(bn_eps_ > 0) || bn_eps_ > 1) return bad("bn.eps", "must be in (0, 1]");
  if (!(bn_momentum_ >= 0 && bn_momentum_ <= 1)) return bad("bn.momentum", "must be in [0, 1]");
  if (!(dropout_ >= 0 && dropout_ < 1)) return bad("dropout", "must be in [0, 1)");
  int64_t edges = 0;
  for (size_t i = 0; i < stages_.size(); ++i) {
    std::string p = absl::StrCat("stages[", i, "]");
    if (stages_[i].channels <= 0) return bad(p + ".channels", "must be positive");
    if (stages_[i].channels > SpaceLimits::kMaxChannels) {
      return over(p + ".channels", stages_[i].channels, SpaceLimits::kMaxChannels);
    }
    if (stages_[i].blocks <= 0) return bad(p + ".blocks", "must be positive");
    edges += stages_[i].blocks;
    if (edges > SpaceLimits::kMaxEdges) {
      return bad(p + ".blocks", absl::StrCat(stages_[i].blocks, " brings the space to ", edges,
                                             " edges, over the limit of ", SpaceLimits::kMaxEdges));
    }
    if (stages_[i].stride < 1 || stages_[i].stride > 2) return bad(p + ".stride", "must be 1 or 2");
  }

  NetworkConfig& sk = skeleton_;
  sk = NetworkConfig();
  sk.input_height = input_height_;
  sk.input_width = input_width_;
  sk.input_channels = input_channels_;
  sk.stem_channels = MakeDivisible(stem_channels_ * width_mult_);
  sk.stem_kernel = stem_kernel_;
  sk.stem_stride = stem_stride_;
  sk.bn_momentum = bn_momentum_;
  sk.bn_eps = bn_eps_;
  sk.dropout = dropout_;
  sk.num_classes = num_classes_;
  // The reference keeps 1280 below width 1.0 and scales it above.
  sk.feature_mix_channels = width_mult_ > 1.0 ? MakeDivisible(feature_mix_channels_ * width_mult_)
                                              : feature_mix_channels_;
  int c = sk.stem_channels, h = sk.stem_height(), w = sk.stem_width();
  if (first_block_channels_ > 0) {
    BlockConfig fb;
    fb.in_channels = c;
    fb.out_channels = MakeDivisible(first_block_channels_ * width_mult_);
    fb.kernel = first_block_kernel_;
    fb.expand = first_block_expand_;
    fb.stride = 1;
    fb.in_height = h;
    fb.in_width = w;
    fb.shortcut = false;  // the reference never gives the first block a shortcut
    sk.blocks.push_back(fb);
    c = fb.out_channels;
  }
  edges_.clear();
  for (const StageSpec& st : stages_) {
    int width = MakeDivisible(st.channels * width_mult_);
    for (int b = 0; b < st.blocks; ++b) {
      EdgeSpec e;
      e.in_channels = c;
      e.out_channels = width;
      e.stride = b == 0 ? st.stride : 1;
      e.in_height = h;
      e.in_width = w;
      e.shortcut = e.stride == 1 && e.in_channels == e.out_channels;
      for (int k : kernels_) {
        for (int x : expands_) e.candidates.push_back(Candidate{k, x, false});
      }
      if (zero_ && e.shortcut) e.candidates.push_back(Candidate{0, 0, true});
      edges_.push_back(e);
      c = width;
      h = ConvOutSize(h, e.stride);
      w = ConvOutSize(w, e.stride);
    }
  }
  if (h < 1 || w < 1) return bad("stages", "downsample the input below 1x1");
  if (int64_t p = SupernetParameterCount(); p > SpaceLimits::kMaxSupernetParameters) {
    return bad("stages", absl::StrCat("the supernet has ", p, " parameters, over the limit of ",
                                      SpaceLimits::kMaxSupernetParameters));
  }
  NetworkConfig largest = skeleton_;
  for (const EdgeSpec& e : edges_) largest.blocks.push_back(e.Block(e.LargestIndex()));
  if (int64_t m = largest.Macs(); m > SpaceLimits::kMaxPathMacs) {
    return bad("stages", absl::StrCat("the largest path takes ", m, " MACs, over the limit of ",
                                      SpaceLimits::kMaxPathMacs));
  }
  return absl::OkStatus();
}

int64_t SearchSpace::SupernetParameterCount() const {
  // The largest path (fixed layers sized as in every path), plus every other candidate.
  NetworkConfig largest = skeleton_;
  for (const EdgeSpec& e : edges_) largest.blocks.push_back(e.Block(e.LargestIndex()));
  int64_t n = largest.ParameterCount();
  for (const EdgeSpec& e : edges_) {
    for (int i = 0; i < static_cast<int>(e.candidates.size()); ++i) {
      if (i != e.LargestIndex()) n += BlockParameterCount(e.Block(i));
    }
  }
  return n;
}

std::string SearchSpace::ToJson() const {
  Json j;
  j["name"] = name_;
  j["input"] = {{"height", input_height_}, {"width", input_width_}, {"channels", input_channels_}};
  j["num_classes"] = num_classes_;
  j["width_mult"] = width_mult_;
  j["stem"] = {{"channels", stem_channels_}, {"kernel", stem_kernel_}, {"stride", stem_stride_}};
  if (first_block_channels_ > 0) {
    j["first_block"] = {{"channels", first_block_channels_},
                        {"kernel", first_block_kernel_},
                        {"expand", first_block_expand_}};
  } else {
    j["first_block"] = nullptr;
  }
  Json stages = Json::array();
  for (const StageSpec& st : stages_) {
    stages.push_back({{"channels", st.channels}, {"blocks", st.blocks}, {"stride", st.stride}});
  }
  j["stages"] = stages;
  j["feature_mix_channels"] = feature_mix_channels_;
  j["candidates"] = {{"kernels", kernels_}, {"expands", expands_}, {"zero", zero_}};
  j["bn"] = {{"momentum", bn_momentum_}, {"eps", bn_eps_}};
  j["dropout"] = dropout_;
  return j.dump(2);
}

std::vector<int> SearchSpace::CandidatesPerEdge() const {
  std::vector<int> n;
  for (const EdgeSpec& e : edges_) n.push_back(static_cast<int>(e.candidates.size()));
  return n;
}

absl::StatusOr<NetworkConfig> SearchSpace::Derive(const std::vector<int>& choices) const {
  if (choices.size() != edges_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("architecture.choices: ", choices.size(),
                                                   " choices for ", edges_.size(),
                                                   " edges of space ", name_));
  }
  NetworkConfig net = skeleton_;
  for (size_t i = 0; i < edges_.size(); ++i) {
    int n = static_cast<int>(edges_[i].candidates.size());
    if (choices[i] < 0 || choices[i] >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("architecture.choices[", i, "]: ", choices[i], " is outside [0, ", n, ")"));
    }
    net.blocks.push_back(edges_[i].Block(choices[i]));
  }
  NAS_RETURN_IF_ERROR(net.Validate());
  return net;
}

std::vector<int> SearchSpace::LargestChoices() const {
  std::vector<int> c;
  for (const EdgeSpec& e : edges_) c.push_back(e.LargestIndex());
  return c;
}

NetworkConfig SearchSpace::Skeleton() const { return skeleton_; }

std::vector<std::string> SearchSpace::FixedLayerKeys() const {
  // Candidate 0 is never Zero (kernels x expands come first), so every edge contributes one key.
  NetworkConfig net = skeleton_;
  for (const EdgeSpec& e : edges_) net.blocks.push_back(e.Block(0));
  std::vector<std::string> all = net.LayerKeys();
  size_t head = 1 + skeleton_.blocks.size();
  size_t tail = skeleton_.feature_mix_channels > 0 ? 2 : 1;
  std::vector<std::string> keys(all.begin(), all.begin() + head);
  keys.insert(keys.end(), all.end() - tail, all.end());
  return keys;
}

std::vector<std::string> SearchSpace::AllLayerKeys() const {
  std::vector<std::string> keys = FixedLayerKeys();
  std::set<std::string> seen(keys.begin(), keys.end());
  for (const EdgeSpec& e : edges_) {
    for (size_t i = 0; i < e.candidates.size(); ++i) {
      if (e.candidates[i].zero) continue;
      std::string k = BlockKey(e.Block(static_cast<int>(i)));
      if (seen.insert(k).second) keys.push_back(k);
    }
  }
  return keys;
}

}  // namespace nas
