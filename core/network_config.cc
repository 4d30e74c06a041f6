#include "core/network_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

int ConvOutSize(int in, int stride) { return (in + stride - 1) / stride; }

int BlockConfig::mid_channels() const {
  return static_cast<int>(std::lround(static_cast<double>(in_channels) * expand));
}
int BlockConfig::out_height() const { return ConvOutSize(in_height, stride); }
int BlockConfig::out_width() const { return ConvOutSize(in_width, stride); }

int NetworkConfig::stem_height() const { return ConvOutSize(input_height, stem_stride); }
int NetworkConfig::stem_width() const { return ConvOutSize(input_width, stem_stride); }

int NetworkConfig::final_channels() const {
  if (feature_mix_channels > 0) return feature_mix_channels;
  return blocks.empty() ? stem_channels : blocks.back().out_channels;
}
int NetworkConfig::final_height() const {
  return blocks.empty() ? stem_height() : blocks.back().out_height();
}
int NetworkConfig::final_width() const {
  return blocks.empty() ? stem_width() : blocks.back().out_width();
}

absl::Status NetworkConfig::Validate() const {
  auto bad = [](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
  };
  using L = NetworkConfigLimits;
  auto in = [](int v, int lo, int hi) { return v >= lo && v <= hi; };
  if (!in(input_height, 1, L::kMaxSide) || !in(input_width, 1, L::kMaxSide) ||
      !in(input_channels, 1, L::kMaxInputChannels)) {
    return bad("input", absl::StrCat("height and width must be in [1, ", L::kMaxSide,
                                     "], channels in [1, ", L::kMaxInputChannels, "]"));
  }
  if (!in(stem_channels, 1, L::kMaxChannels)) {
    return bad("first_conv.out_channels", absl::StrCat("must be in [1, ", L::kMaxChannels, "]"));
  }
  if (stem_kernel % 2 != 1 || !in(stem_kernel, 1, L::kMaxKernel)) {
    return bad("first_conv.kernel_size", absl::StrCat("must be odd, at most ", L::kMaxKernel));
  }
  if (!in(stem_stride, 1, L::kMaxStemStride)) {
    return bad("first_conv.stride", absl::StrCat("must be in [1, ", L::kMaxStemStride, "]"));
  }
  if (!in(num_classes, 1, L::kMaxClasses)) {
    return bad("classifier.out_features", absl::StrCat("must be in [1, ", L::kMaxClasses, "]"));
  }
  if (blocks.size() > static_cast<size_t>(L::kMaxBlocks)) {
    return bad("blocks", absl::StrCat(blocks.size(), " blocks, at most ", L::kMaxBlocks));
  }
  if (bn_eps <= 0) return bad("bn.eps", "must be positive");
  int c = stem_channels, h = stem_height(), w = stem_width();
  for (size_t i = 0; i < blocks.size(); ++i) {
    const BlockConfig& b = blocks[i];
    std::string f = absl::StrCat("blocks[", i, "]");
    if (b.in_height != h || b.in_width != w) {
      return bad(f, absl::StrCat("input size ", b.in_height, "x", b.in_width,
                                 " does not follow the previous layer's ", h, "x", w));
    }
    if (b.zero) {
      if (!b.shortcut) return bad(f, "a Zero block needs an identity shortcut");
      if (b.stride != 1 || b.in_channels != c || b.out_channels != c) {
        return bad(f, "a Zero block must have stride 1 and equal in/out channels");
      }
      continue;
    }
    if (b.in_channels != c) {
      return bad(f + ".in_channels",
                 absl::StrCat(b.in_channels, " does not match the previous layer's ", c));
    }
    if (!in(b.out_channels, 1, L::kMaxChannels)) {
      return bad(f + ".out_channels", absl::StrCat("must be in [1, ", L::kMaxChannels, "]"));
    }
    if (!in(b.kernel, 1, L::kMaxKernel) || b.kernel % 2 != 1) {
      return bad(f + ".kernel_size", absl::StrCat("must be odd, at most ", L::kMaxKernel));
    }
    if (b.stride < 1 || b.stride > 2) return bad(f + ".stride", "must be 1 or 2");
    if (!in(b.expand, 1, L::kMaxExpand)) {
      return bad(f + ".expand_ratio", absl::StrCat("must be in [1, ", L::kMaxExpand, "]"));
    }
    if (b.shortcut && (b.stride != 1 || b.in_channels != b.out_channels)) {
      return bad(f + ".shortcut", "identity shortcut needs stride 1 and in == out channels");
    }
    c = b.out_channels;
    h = b.out_height();
    w = b.out_width();
  }
  if (!in(feature_mix_channels, 0, L::kMaxChannels)) {
    return bad("feature_mix_layer.out_channels",
               absl::StrCat("must be in [0, ", L::kMaxChannels, "]"));
  }
  if (dropout < 0 || dropout >= 1) return bad("classifier.dropout_rate", "must be in [0, 1)");
  return absl::OkStatus();
}

namespace {

absl::Status ExpectName(const Json& obj, const std::string& path, const std::string& want) {
  NAS_ASSIGN_OR_RETURN(std::string name, GetString(obj, path, "name"));
  if (name != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(FieldPath(path, "name"), ": expected \"", want, "\", got \"", name, "\""));
  }
  return absl::OkStatus();
}

// GetInt, and InvalidArgument naming the field unless the value is in [lo, hi]: every number is
// bounded before any size is computed from it.
absl::StatusOr<int> GetIntIn(const Json& obj, const std::string& parent, const std::string& key,
                             int lo, int hi) {
  NAS_ASSIGN_OR_RETURN(int v, GetInt(obj, parent, key));
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(FieldPath(parent, key), ": ", v, " is outside [", lo, ", ", hi, "]"));
  }
  return v;
}

}  // namespace

absl::StatusOr<NetworkConfig> NetworkConfig::FromReferenceJson(const std::string& text,
                                                               int input_height,
                                                               int input_width) {
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "network config"));
  using L = NetworkConfigLimits;
  if (input_height < 1 || input_height > L::kMaxSide || input_width < 1 ||
      input_width > L::kMaxSide) {
    return absl::InvalidArgumentError(absl::StrCat("network config: input size ", input_height, "x",
                                                   input_width, " is outside [1, ", L::kMaxSide,
                                                   "]"));
  }
  NetworkConfig net;
  net.input_height = input_height;
  net.input_width = input_width;
  if (j.contains("bn")) {
    NAS_ASSIGN_OR_RETURN(net.bn_momentum, GetDouble(j["bn"], "bn", "momentum"));
    NAS_ASSIGN_OR_RETURN(net.bn_eps, GetDouble(j["bn"], "bn", "eps"));
  }
  NAS_ASSIGN_OR_RETURN(const Json* first, GetMember(j, "", "first_conv"));
  NAS_RETURN_IF_ERROR(ExpectName(*first, "first_conv", "ConvLayer"));
  NAS_ASSIGN_OR_RETURN(net.input_channels,
                       GetIntIn(*first, "first_conv", "in_channels", 1, L::kMaxInputChannels));
  NAS_ASSIGN_OR_RETURN(net.stem_channels,
                       GetIntIn(*first, "first_conv", "out_channels", 1, L::kMaxChannels));
  NAS_ASSIGN_OR_RETURN(net.stem_kernel,
                       GetIntIn(*first, "first_conv", "kernel_size", 1, L::kMaxKernel));
  NAS_ASSIGN_OR_RETURN(net.stem_stride,
                       GetIntIn(*first, "first_conv", "stride", 1, L::kMaxStemStride));

  NAS_ASSIGN_OR_RETURN(const Json* blocks, GetMember(j, "", "blocks"));
  if (!blocks->is_array()) return absl::InvalidArgumentError("blocks: expected a list");
  if (blocks->size() > static_cast<size_t>(L::kMaxBlocks)) {
    return absl::InvalidArgumentError(
        absl::StrCat("blocks: ", blocks->size(), " blocks, at most ", L::kMaxBlocks));
  }
  int c = net.stem_channels, h = net.stem_height(), w = net.stem_width();
  for (size_t i = 0; i < blocks->size(); ++i) {
    const Json& bj = (*blocks)[i];
    std::string path = absl::StrCat("blocks[", i, "]");
    NAS_RETURN_IF_ERROR(ExpectName(bj, path, "MobileInvertedResidualBlock"));
    std::string conv_path = path + ".mobile_inverted_conv";
    NAS_ASSIGN_OR_RETURN(const Json* conv, GetMember(bj, path, "mobile_inverted_conv"));
    NAS_ASSIGN_OR_RETURN(std::string conv_name, GetString(*conv, conv_path, "name"));
    BlockConfig b;
    b.in_height = h;
    b.in_width = w;
    NAS_ASSIGN_OR_RETURN(const Json* sc, GetMember(bj, path, "shortcut"));
    b.shortcut = !sc->is_null();
    if (b.shortcut) NAS_RETURN_IF_ERROR(ExpectName(*sc, path + ".shortcut", "IdentityLayer"));
    if (conv_name == "ZeroLayer") {
      b.zero = true;
      NAS_ASSIGN_OR_RETURN(b.stride, GetIntOr(*conv, conv_path, "stride", 1));
      b.in_channels = b.out_channels = c;
      b.kernel = 0;
      b.expand = 0;
    } else if (conv_name == "MBInvertedConvLayer") {
      NAS_ASSIGN_OR_RETURN(b.in_channels,
                           GetIntIn(*conv, conv_path, "in_channels", 1, L::kMaxChannels));
      NAS_ASSIGN_OR_RETURN(b.out_channels,
                           GetIntIn(*conv, conv_path, "out_channels", 1, L::kMaxChannels));
      NAS_ASSIGN_OR_RETURN(b.kernel, GetIntIn(*conv, conv_path, "kernel_size", 1, L::kMaxKernel));
      NAS_ASSIGN_OR_RETURN(b.stride, GetIntIn(*conv, conv_path, "stride", 1, 2));
      NAS_ASSIGN_OR_RETURN(b.expand, GetIntIn(*conv, conv_path, "expand_ratio", 1, L::kMaxExpand));
      c = b.out_channels;
      h = b.out_height();
      w = b.out_width();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          conv_path, ".name: expected MBInvertedConvLayer or ZeroLayer, got \"", conv_name,
          "\""));
    }
    net.blocks.push_back(b);
  }
  if (j.contains("feature_mix_layer") && !j["feature_mix_layer"].is_null()) {
    const Json& fm = j["feature_mix_layer"];
    NAS_RETURN_IF_ERROR(ExpectName(fm, "feature_mix_layer", "ConvLayer"));
    NAS_ASSIGN_OR_RETURN(int fm_in, GetInt(fm, "feature_mix_layer", "in_channels"));
    if (fm_in != c) {
      return absl::InvalidArgumentError(absl::StrCat(
          "feature_mix_layer.in_channels: ", fm_in, " does not match the last block's ", c));
    }
    NAS_ASSIGN_OR_RETURN(net.feature_mix_channels,
                         GetIntIn(fm, "feature_mix_layer", "out_channels", 0, L::kMaxChannels));
  } else {
    net.feature_mix_channels = 0;
  }
  NAS_ASSIGN_OR_RETURN(const Json* cls, GetMember(j, "", "classifier"));
  NAS_RETURN_IF_ERROR(ExpectName(*cls, "classifier", "LinearLayer"));
  NAS_ASSIGN_OR_RETURN(int cls_in, GetInt(*cls, "classifier", "in_features"));
  if (cls_in != net.final_channels()) {
    return absl::InvalidArgumentError(absl::StrCat("classifier.in_features: ", cls_in,
                                                   " does not match the features' ",
                                                   net.final_channels()));
  }
  NAS_ASSIGN_OR_RETURN(net.num_classes,
                       GetIntIn(*cls, "classifier", "out_features", 1, L::kMaxClasses));
  NAS_ASSIGN_OR_RETURN(net.dropout, GetDoubleOr(*cls, "classifier", "dropout_rate", 0.0));
  NAS_RETURN_IF_ERROR(net.Validate());
  return net;
}

std::string NetworkConfig::ToReferenceJson() const {
  auto conv_layer = [](int in, int out, int k, int s) {
    return Json{{"name", "ConvLayer"},   {"kernel_size", k},    {"stride", s},
                {"dilation", 1},         {"groups", 1},         {"bias", false},
                {"has_shuffle", false},  {"in_channels", in},   {"out_channels", out},
                {"use_bn", true},        {"act_func", "relu6"}, {"dropout_rate", 0},
                {"ops_order", "weight_bn_act"}};
  };
  Json j;
  j["name"] = "ProxylessNASNets";
  j["bn"] = {{"momentum", bn_momentum}, {"eps", bn_eps}};
  j["first_conv"] = conv_layer(input_channels, stem_channels, stem_kernel, stem_stride);
  Json jblocks = Json::array();
  for (const BlockConfig& b : blocks) {
    Json conv;
    if (b.zero) {
      conv = {{"name", "ZeroLayer"}, {"stride", b.stride}};
    } else {
      conv = {{"name", "MBInvertedConvLayer"}, {"in_channels", b.in_channels},
              {"out_channels", b.out_channels}, {"kernel_size", b.kernel},
              {"stride", b.stride},             {"expand_ratio", b.expand}};
    }
    Json shortcut = nullptr;
    if (b.shortcut) {
      shortcut = {{"name", "IdentityLayer"},  {"in_channels", b.in_channels},
                  {"out_channels", b.out_channels}, {"use_bn", false},
                  {"act_func", nullptr},      {"dropout_rate", 0},
                  {"ops_order", "weight_bn_act"}};
    }
    jblocks.push_back({{"name", "MobileInvertedResidualBlock"},
                      {"mobile_inverted_conv", conv},
                      {"shortcut", shortcut}});
  }
  j["blocks"] = jblocks;
  int last = blocks.empty() ? stem_channels : blocks.back().out_channels;
  if (feature_mix_channels > 0) {
    j["feature_mix_layer"] = conv_layer(last, feature_mix_channels, 1, 1);
  } else {
    j["feature_mix_layer"] = nullptr;
  }
  j["classifier"] = {{"name", "LinearLayer"},  {"in_features", final_channels()},
                     {"out_features", num_classes}, {"bias", true},
                     {"use_bn", false},        {"act_func", nullptr},
                     {"dropout_rate", dropout}, {"ops_order", "weight_bn_act"}};
  return j.dump(4);
}

std::string StemKey(int h, int w, int in_c, int out_h, int out_w, int out_c) {
  return absl::StrCat("Conv-input:", h, "x", w, "x", in_c, "-output:", out_h, "x", out_w, "x",
                      out_c);
}

std::string BlockKey(const BlockConfig& b) {
  return absl::StrCat("expanded_conv-input:", b.in_height, "x", b.in_width, "x", b.in_channels,
                      "-output:", b.out_height(), "x", b.out_width(), "x", b.out_channels,
                      "-expand:", b.expand, "-kernel:", b.kernel, "-stride:", b.stride,
                      "-idskip:", b.shortcut ? 1 : 0);
}

std::string FeatureMixKey(int h, int w, int in_c, int out_c) {
  return absl::StrCat("Conv_1-input:", h, "x", w, "x", in_c, "-output:", h, "x", w, "x", out_c);
}

std::string LogitsKey(int h, int w, int in_c, int classes) {
  return absl::StrCat("Logits-input:", h, "x", w, "x", in_c, "-output:", classes);
}

std::vector<std::string> NetworkConfig::LayerKeys() const {
  std::vector<std::string> keys;
  keys.push_back(StemKey(input_height, input_width, input_channels, stem_height(), stem_width(),
                         stem_channels));
  int c = stem_channels;
  for (const BlockConfig& b : blocks) {
    if (b.zero) continue;
    keys.push_back(BlockKey(b));
    c = b.out_channels;
  }
  if (feature_mix_channels > 0) {
    keys.push_back(FeatureMixKey(final_height(), final_width(), c, feature_mix_channels));
  }
  keys.push_back(LogitsKey(final_height(), final_width(), final_channels(), num_classes));
  return keys;
}

int64_t BlockParameterCount(const BlockConfig& b) {
  if (b.zero) return 0;
  int64_t in = b.in_channels, out = b.out_channels, mid = b.mid_channels(), k = b.kernel;
  int64_t n = 0;
  if (b.expand != 1) n += in * mid + 2 * mid;  // 1x1 conv + BN (weight, bias)
  n += mid * k * k + 2 * mid;                  // depthwise + BN
  n += mid * out + 2 * out;                    // 1x1 project + BN
  return n;
}

int64_t BlockMacs(const BlockConfig& b) {
  if (b.zero) return 0;
  int64_t in = b.in_channels, out = b.out_channels, mid = b.mid_channels(), k = b.kernel;
  int64_t hw_in = int64_t{b.in_height} * b.in_width;
  int64_t hw_out = int64_t{b.out_height()} * b.out_width();
  int64_t n = 0;
  if (b.expand != 1) n += in * mid * hw_in;
  n += mid * k * k * hw_out;
  n += mid * out * hw_out;
  return n;
}

int64_t NetworkConfig::ParameterCount() const {
  int64_t n = int64_t{input_channels} * stem_channels * stem_kernel * stem_kernel +
              2 * stem_channels;
  int c = stem_channels;
  for (const BlockConfig& b : blocks) {
    n += BlockParameterCount(b);
    if (!b.zero) c = b.out_channels;
  }
  if (feature_mix_channels > 0) n += int64_t{c} * feature_mix_channels + 2 * feature_mix_channels;
  n += int64_t{final_channels()} * num_classes + num_classes;
  return n;
}

int64_t NetworkConfig::Macs() const {
  int64_t n = int64_t{input_channels} * stem_channels * stem_kernel * stem_kernel *
              stem_height() * stem_width();
  int c = stem_channels;
  for (const BlockConfig& b : blocks) {
    n += BlockMacs(b);
    if (!b.zero) c = b.out_channels;
  }
  if (feature_mix_channels > 0) {
    n += int64_t{c} * feature_mix_channels * final_height() * final_width();
  }
  n += int64_t{final_channels()} * num_classes;
  return n;
}

}  // namespace nas
