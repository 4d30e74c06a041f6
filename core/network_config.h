// A concrete (derived) network: the plain description the worker builds a LibTorch model from.
//
// A NetworkConfig is what a search ends with (SearchSpace::Derive) and what the ProxylessNAS
// reference publishes (`proxyless_*.config.json`). Layout, as in the reference:
//   stem: kxk conv (stride s) - BN - ReLU6
//   blocks: MBConv (1x1 expand - BN - ReLU6, kxk depthwise - BN - ReLU6, 1x1 project - BN;
//           the expand conv is omitted at expand 1), optional identity shortcut; a Zero block
//           (the skipped edge) is just its shortcut
//   feature mix: 1x1 conv - BN - ReLU6 (optional: out_channels 0 means none)
//   global average pool, dropout, linear classifier
//
//   NAS_ASSIGN_OR_RETURN(NetworkConfig net, NetworkConfig::FromReferenceJson(text));
//   std::vector<std::string> keys = net.LayerKeys();   // ProxylessNAS latency-table keys
//   int64_t n = net.ParameterCount();
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nas {

struct BlockConfig {
  int in_channels = 0;
  int out_channels = 0;
  int kernel = 3;
  int stride = 1;
  int expand = 1;
  bool zero = false;      // the Zero candidate: the block is skipped (output = input)
  bool shortcut = false;  // identity shortcut (stride 1, in == out)
  int in_height = 0;      // spatial size of the block's input
  int in_width = 0;

  int mid_channels() const;  // round(in * expand), as the reference
  int out_height() const;
  int out_width() const;
};

// Bounds on every number of a network config (a file from outside, or what a search derives).
// At or above what any space within SpaceLimits (core/search_space.h) derives, with room for a
// width multiplier of 2, and low enough that sizes, ParameterCount and Macs cannot overflow.
struct NetworkConfigLimits {
  static constexpr int kMaxSide = 1024;         // input height and width
  static constexpr int kMaxInputChannels = 64;  // image channels
  static constexpr int kMaxChannels = 16384;    // stem, block, feature-mix channels
  static constexpr int kMaxKernel = 15;         // stem and block kernels
  static constexpr int kMaxStemStride = 4;      // blocks: 1 or 2
  static constexpr int kMaxExpand = 16;         // block expand ratio
  static constexpr int kMaxBlocks = 256;
  static constexpr int kMaxClasses = 1000000;  // classifier outputs
};

struct NetworkConfig {
  int input_height = 224;
  int input_width = 224;
  int input_channels = 3;
  int stem_channels = 32;
  int stem_kernel = 3;
  int stem_stride = 2;
  std::vector<BlockConfig> blocks;
  int feature_mix_channels = 1280;  // 0: no feature-mix layer
  int num_classes = 1000;
  double bn_momentum = 0.1;
  double bn_eps = 1e-3;
  double dropout = 0.0;

  int stem_height() const;
  int stem_width() const;
  // Channels and spatial size entering the pooling/classifier.
  int final_channels() const;
  int final_height() const;
  int final_width() const;

  // Checks channel chaining, strides, shortcuts, sizes and NetworkConfigLimits; errors name the
  // block and field.
  absl::Status Validate() const;

  // Reads the reference's network-config JSON (ProxylessNASNets: first_conv, blocks[] of
  // MobileInvertedResidualBlock, feature_mix_layer, classifier, bn). Input size defaults to
  // 224x224 as in the reference; pass others for other data sets. Every number is checked
  // against NetworkConfigLimits as it is read (InvalidArgument naming the field).
  static absl::StatusOr<NetworkConfig> FromReferenceJson(const std::string& text,
                                                         int input_height = 224,
                                                         int input_width = 224);
  // Writes the same format back.
  std::string ToReferenceJson() const;

  // Latency-table keys of every layer in execution order (Zero blocks have none).
  std::vector<std::string> LayerKeys() const;

  // Number of trainable parameters of the network built as the reference builds it.
  int64_t ParameterCount() const;
  // Multiply-accumulates of one forward pass at batch 1.
  int64_t Macs() const;
};

// Keys in the ProxylessNAS grammar.
std::string StemKey(int h, int w, int in_c, int out_h, int out_w, int out_c);
std::string BlockKey(const BlockConfig& b);
std::string FeatureMixKey(int h, int w, int in_c, int out_c);
std::string LogitsKey(int h, int w, int in_c, int classes);

// Parameters of one MBConv block (0 for Zero).
int64_t BlockParameterCount(const BlockConfig& b);
int64_t BlockMacs(const BlockConfig& b);

// Output size of a "same"-padded conv: ceil(in / stride).
int ConvOutSize(int in, int stride);

}  // namespace nas
