// The search space: stages of MBConv blocks whose searchable blocks ("edges") each choose one
// candidate operation, plus the fixed layers around them.
//
// As in ProxylessNAS: stem conv, a fixed first block (MBConv expand 1), then stages of edges;
// each edge has candidates kernel x expand (e.g. {3,5,7} x {3,6}) plus Zero where the edge has
// stride 1 and equal in/out channels (the block then has an identity shortcut and Zero skips it);
// then a 1x1 feature-mix conv, global pooling and a linear classifier. Channel widths are given
// at width multiplier 1.0 and rounded as the reference does (make_divisible by 8).
//
//   NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Preset("fashion-mnist"));
//   for (const EdgeSpec& e : space.edges()) ...
//   NAS_ASSIGN_OR_RETURN(NetworkConfig net, space.Derive(arch));
//
// Presets: "proxyless-imagenet" (the paper's exact 21-edge space), "fashion-mnist" (28x28x1,
// the embedded default) and "cifar10" (32x32x3). Spaces load from JSON (see ToJson for the
// format); errors name the field.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/network_config.h"

namespace nas {

// One candidate operation of an edge.
struct Candidate {
  int kernel = 3;
  int expand = 6;
  bool zero = false;

  // "3x3_MBConv6" or "Zero", as the reference names them.
  std::string Name() const;
  static absl::StatusOr<Candidate> Parse(const std::string& name);
  bool operator==(const Candidate& o) const {
    return zero == o.zero && (zero || (kernel == o.kernel && expand == o.expand));
  }
};

// A searchable block.
struct EdgeSpec {
  int in_channels = 0;
  int out_channels = 0;
  int stride = 1;
  int in_height = 0;
  int in_width = 0;
  bool shortcut = false;  // stride 1 and in == out
  std::vector<Candidate> candidates;

  // The concrete block for candidate `i`.
  BlockConfig Block(int i) const;
  // Index of the Zero candidate, or -1.
  int ZeroIndex() const;
  // Index of the candidate with the most MACs (the "largest" one).
  int LargestIndex() const;
};

struct StageSpec {
  int channels = 0;  // at width multiplier 1.0
  int blocks = 1;
  int stride = 1;  // of the first block
};

class Architecture;

// Bounds on a search space, checked by Build() before anything is expanded, so that a small
// hostile document (a stage of two billion blocks, ten thousand kernels) is refused instead of
// growing the process. The presets sit well inside them (the ImageNet space at width 1.4: 21
// edges, 7 candidates, a ~0.1 G-parameter supernet, ~0.6 G MACs on its largest path).
struct SpaceLimits {
  static constexpr int kMaxInputSize = 1024;  // input height and width
  static constexpr int kMaxInputChannels = 16;
  static constexpr int kMaxClasses = 100000;
  static constexpr int kMaxChannels = 8192;  // any layer's, at width multiplier 1.0
  static constexpr int kMaxStages = 32;
  static constexpr int kMaxEdges = 128;  // searchable blocks in all
  static constexpr int kMaxKernel = 15;
  static constexpr int kMaxKernels = 8;  // distinct kernel sizes
  static constexpr int kMaxExpand = 16;
  static constexpr int kMaxExpands = 8;                           // distinct expansion ratios
  static constexpr int64_t kMaxSupernetParameters = 400'000'000;  // every candidate's weights
  static constexpr int64_t kMaxPathMacs = 50'000'000'000;         // the largest path, batch 1
  static constexpr size_t kMaxJsonBytes = 1 << 20;                // a space document
  static constexpr int kMaxJsonDepth = 16;
};

class SearchSpace {
 public:
  // Builds and validates (within SpaceLimits). Errors name the field ("stages[2].stride: must be
  // 1 or 2", "stages[0].blocks: 2000000000 is over the limit of 128 edges").
  static absl::StatusOr<SearchSpace> FromJson(const std::string& text);
  static absl::StatusOr<SearchSpace> Preset(const std::string& name);
  static std::vector<std::string> PresetNames();
  // A preset name, or otherwise a path to a space JSON file.
  static absl::StatusOr<SearchSpace> Load(const std::string& name_or_path);

  std::string ToJson() const;

  const std::string& name() const { return name_; }
  int num_classes() const { return num_classes_; }
  int input_height() const { return input_height_; }
  int input_width() const { return input_width_; }
  int input_channels() const { return input_channels_; }
  double width_mult() const { return width_mult_; }
  const std::vector<EdgeSpec>& edges() const { return edges_; }
  int num_edges() const { return static_cast<int>(edges_.size()); }
  std::vector<int> CandidatesPerEdge() const;
  // Trainable parameters of every candidate of every edge plus the fixed layers (what a
  // coordinator stores for the job).
  int64_t SupernetParameterCount() const;

  // The network for one choice per edge (validated against the space).
  absl::StatusOr<NetworkConfig> Derive(const std::vector<int>& choices) const;
  // The network whose edges all take their largest candidate (the usual baseline).
  std::vector<int> LargestChoices() const;
  // The fixed layers (stem, first block, feature mix, classifier) with no edges; used for
  // latency of the fixed part and as the skeleton of supernets.
  NetworkConfig Skeleton() const;

  // Latency-table keys: of the fixed layers, and of every candidate of every edge, deduplicated
  // in first-seen order (the set a profiler must time).
  std::vector<std::string> FixedLayerKeys() const;
  std::vector<std::string> AllLayerKeys() const;

  // Scaled channel count as the reference: make_divisible(c * width_mult, 8).
  static int MakeDivisible(double v, int divisor = 8);

 private:
  absl::Status Build();

  std::string name_;
  int input_height_ = 224, input_width_ = 224, input_channels_ = 3;
  int num_classes_ = 1000;
  double width_mult_ = 1.0;
  int stem_channels_ = 32, stem_kernel_ = 3, stem_stride_ = 2;
  int first_block_channels_ = 16;  // 0: no fixed first block
  int first_block_kernel_ = 3;
  int first_block_expand_ = 1;
  std::vector<StageSpec> stages_;
  int feature_mix_channels_ = 1280;
  std::vector<int> kernels_ = {3, 5, 7};
  std::vector<int> expands_ = {3, 6};
  bool zero_ = true;
  double bn_momentum_ = 0.1, bn_eps_ = 1e-3, dropout_ = 0.0;

  // Derived by Build().
  NetworkConfig skeleton_;  // fixed layers, scaled
  std::vector<EdgeSpec> edges_;
};

}  // namespace nas
