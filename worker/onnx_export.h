// The derived network as an ONNX model (opset 13), for runtimes that do not load LibTorch.
//
// The graph computes what NetworkImpl::forward (worker/ops.h) computes in eval mode:
//   input [batch, C, H, W] float (NCHW, already normalised: see input_mean/input_std below)
//   stem:        Conv (k, stride s, pads k/2) - BatchNormalization - Clip(0, 6)
//   each block:  [Conv 1x1 - BN - Clip] - Conv kxk depthwise (group = channels) - BN - Clip -
//                Conv 1x1 - BN, then Add with the block's input where it has the shortcut;
//                the expand conv is absent at expand 1; a Zero block (skipped edge) has no nodes
//   feature mix: Conv 1x1 - BN - Clip (when the network has one)
//   classifier:  GlobalAveragePool - Flatten - Gemm (transB) -> logits [batch, classes]
// Clip takes min and max as inputs (the opset >= 11 form); dropout is the identity in eval mode
// and is left out. With fold_bn each BatchNormalization is folded into the Conv before it
// (w' = w * g / sqrt(v + eps), b' = beta - m * g / sqrt(v + eps), computed in double).
// Initialisers keep the LibTorch names ("blocks_3.depthwise_conv.weight"; with fold_bn the
// folded conv's weight and bias are "<conv>.weight" and "<conv>.bias").
//
// Every weight is checked before anything is written: present, float, of the shape the network
// config implies, finite, BatchNorm variances >= 0. Errors are InvalidArgument (or NotFound for a
// missing file) naming the file or tensor and the problem; no LibTorch exception escapes.
//
//   OnnxExportOptions o;  o.fold_bn = true;  o.space = "fashion-mnist";
//   NAS_RETURN_IF_ERROR(WriteOnnxModel(config, *net, o, "results/run1/derived.onnx"));
//   // or, from files (`nas export`):
//   NAS_ASSIGN_OR_RETURN(std::string bytes, OnnxFromWeightsFile(config, "derived.pt", o));
//
// No LibTorch in this header (the CLI includes it): modules are passed by reference to the
// forward-declared torch::nn::Module.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/network_config.h"

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace nas {

// The opset the exporter writes (its operators are those of opset 13) and the IR version that
// goes with it.
inline constexpr int kOnnxOpset = 13;
inline constexpr int kOnnxIrVersion = 7;
// Weights files larger than this are refused before they are read.
inline constexpr int64_t kMaxOnnxWeightsFileBytes = int64_t{4} << 30;

struct OnnxExportOptions {
  // Fold every BatchNormalization into the Conv before it. Default false.
  bool fold_bn = false;
  // Recorded in the model's doc_string and metadata_props ("space", "architecture"); the space
  // name, the candidate names. Default "" (left out).
  std::string space;
  std::string architecture;
  // The per-channel normalisation the input is expected to have had, in [0, 1] pixel units:
  // input = (pixel / 255 - mean[c]) / std[c] (worker/data.h Normalize). Recorded in metadata
  // ("input_mean", "input_std"); the graph itself does not normalise. Default empty (unknown).
  std::vector<float> input_mean;
  std::vector<float> input_std;
  // Where the weights came from, recorded as metadata "weights". Default "".
  std::string weights_source;
  // More metadata_props (key -> value). Default none.
  std::map<std::string, std::string> metadata;
};

// The model's producer_name and producer_version.
inline constexpr char kOnnxProducerName[] = "proxyless-nas-service";
inline constexpr char kOnnxProducerVersion[] = "1.0";

// Serialised ModelProto of `config` with the weights of `net`, a module with NetworkImpl's
// parameter and buffer names (a Network, or any module with the same names). `config` must be
// valid (NetworkConfig::Validate).
absl::StatusOr<std::string> OnnxFromModule(const NetworkConfig& config,
                                           const torch::nn::Module& net,
                                           const OnnxExportOptions& options);

// The same from a LibTorch weights archive (what SaveModule writes: derived.pt, weights.pt).
// Errors name `weights_path`: missing or unreadable file, not a LibTorch archive, a missing
// tensor (by its full name), a wrong shape or dtype, non-finite values.
absl::StatusOr<std::string> OnnxFromWeightsFile(const NetworkConfig& config,
                                                const std::string& weights_path,
                                                const OnnxExportOptions& options);

// OnnxFromModule, written to `out_path` (through a temporary file and a rename).
absl::Status WriteOnnxModel(const NetworkConfig& config, const torch::nn::Module& net,
                            const OnnxExportOptions& options, const std::string& out_path);

// Writes `bytes` to `path` through `path`.tmp and a rename.
absl::Status WriteOnnxBytes(const std::string& bytes, const std::string& path);

}  // namespace nas
