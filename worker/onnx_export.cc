#include "worker/onnx_export.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "nas_onnx/onnx.pb.h"

namespace nas {

namespace {

namespace fs = std::filesystem;
using Tensors = std::map<std::string, torch::Tensor>;

// Bounds on what a weights archive may hold (a network within NetworkConfigLimits has at most
// 256 blocks x 12 tensors plus the fixed layers).
constexpr int kMaxArchiveTensors = 20000;
constexpr int kMaxArchiveDepth = 8;

std::string Shape(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// The tensors a Network of `config` holds (NetworkImpl's names), with their shapes, in the order
// the graph uses them. BatchNorm's num_batches_tracked is allowed but not required.
struct Expected {
  std::string name;
  std::vector<int64_t> shape;
};

void AddBn(const std::string& prefix, int64_t c, std::vector<Expected>* out) {
  for (const char* p : {"weight", "bias", "running_mean", "running_var"}) {
    out->push_back({absl::StrCat(prefix, ".", p), {c}});
  }
}

std::vector<Expected> ExpectedTensors(const NetworkConfig& c) {
  std::vector<Expected> e;
  e.push_back({"stem.conv.weight", {c.stem_channels, c.input_channels, c.stem_kernel, c.stem_kernel}});
  AddBn("stem.bn", c.stem_channels, &e);
  int last = c.stem_channels;
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    const BlockConfig& b = c.blocks[i];
    if (b.zero) continue;
    std::string p = absl::StrCat("blocks_", i);
    int mid = b.mid_channels();
    if (b.expand != 1) {
      e.push_back({p + ".expand_conv.weight", {mid, b.in_channels, 1, 1}});
      AddBn(p + ".expand_bn", mid, &e);
    }
    e.push_back({p + ".depthwise_conv.weight", {mid, 1, b.kernel, b.kernel}});
    AddBn(p + ".depthwise_bn", mid, &e);
    e.push_back({p + ".project_conv.weight", {b.out_channels, mid, 1, 1}});
    AddBn(p + ".project_bn", b.out_channels, &e);
    last = b.out_channels;
  }
  if (c.feature_mix_channels > 0) {
    e.push_back({"feature_mix.conv.weight", {c.feature_mix_channels, last, 1, 1}});
    AddBn("feature_mix.bn", c.feature_mix_channels, &e);
  }
  e.push_back({"classifier.linear.weight", {c.num_classes, c.final_channels()}});
  e.push_back({"classifier.linear.bias", {c.num_classes}});
  return e;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Checks `tensors` (from `source`) against the network: every expected tensor present, float,
// of its shape, finite; variances >= 0; nothing else but num_batches_tracked. Returns the
// tensors as contiguous (NCHW) float CPU tensors.
absl::StatusOr<Tensors> CheckTensors(const NetworkConfig& config, const Tensors& tensors,
                                     const std::string& source) {
  std::vector<Expected> expected = ExpectedTensors(config);
  std::set<std::string> known;
  Tensors out;
  for (const Expected& e : expected) {
    known.insert(e.name);
    auto it = tensors.find(e.name);
    if (it == tensors.end() || !it->second.defined()) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensor ", e.name, " is missing (the architecture has it: weights of another "
          "network?)"));
    }
    const torch::Tensor& t = it->second;
    if (t.scalar_type() != torch::kFloat) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": tensor ", e.name, " is ",
                                                     c10::toString(t.scalar_type()),
                                                     ", expected Float (float32)"));
    }
    if (t.sizes().vec() != e.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensor ", e.name, " has shape ", Shape(t.sizes().vec()),
          " but the architecture expects ", Shape(e.shape), " (weights of another network?)"));
    }
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    if (!torch::isfinite(c).all().item<bool>()) {
      int64_t bad = c.numel() - torch::isfinite(c).sum().item<int64_t>();
      return absl::InvalidArgumentError(absl::StrCat(source, ": tensor ", e.name, " has ", bad,
                                                     " non-finite value(s) (NaN or infinity)"));
    }
    if (EndsWith(e.name, ".running_var") && (c < 0).any().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tensor ", e.name, " has negative variances"));
    }
    out[e.name] = c;
  }
  for (const auto& [name, t] : tensors) {
    if (known.count(name) > 0 || EndsWith(name, ".num_batches_tracked")) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": holds tensor ", name, ", which this architecture does not have (weights of "
        "another network?)"));
  }
  return out;
}

// --- the graph ---

class GraphBuilder {
 public:
  GraphBuilder(nas_onnx::GraphProto* graph, const Tensors& weights, bool fold_bn, double bn_eps)
      : graph_(graph), weights_(weights), fold_bn_(fold_bn), bn_eps_(bn_eps) {
    AddInitializer("relu6_min", {}, torch::zeros({}, torch::kFloat));
    AddInitializer("relu6_max", {}, torch::full({}, 6.0f, torch::kFloat));
  }

  // Conv (no bias) of `conv` over x, then its BatchNormalization `bn` (or folded), then Clip(0, 6)
  // when `relu6`. Returns the output's name.
  std::string ConvBn(const std::string& x, const std::string& conv, const std::string& bn,
                     int kernel, int stride, int group, bool relu6) {
    const std::string w_name = conv + ".weight";
    std::string h;
    if (fold_bn_) {
      torch::Tensor w = weights_.at(w_name).to(torch::kDouble);
      torch::Tensor gamma = weights_.at(bn + ".weight").to(torch::kDouble);
      torch::Tensor beta = weights_.at(bn + ".bias").to(torch::kDouble);
      torch::Tensor mean = weights_.at(bn + ".running_mean").to(torch::kDouble);
      torch::Tensor var = weights_.at(bn + ".running_var").to(torch::kDouble);
      torch::Tensor scale = gamma / torch::sqrt(var + bn_eps_);
      torch::Tensor wf = (w * scale.view({-1, 1, 1, 1})).to(torch::kFloat);
      torch::Tensor bf = (beta - mean * scale).to(torch::kFloat);
      AddInitializer(w_name, wf.sizes().vec(), wf);
      AddInitializer(conv + ".bias", bf.sizes().vec(), bf);
      h = Conv(x, conv, w_name, conv + ".bias", kernel, stride, group);
    } else {
      Use(w_name);
      h = Conv(x, conv, w_name, "", kernel, stride, group);
      for (const char* p : {".weight", ".bias", ".running_mean", ".running_var"}) Use(bn + p);
      nas_onnx::NodeProto* n =
          Node("BatchNormalization", bn,
               {h, bn + ".weight", bn + ".bias", bn + ".running_mean", bn + ".running_var"});
      AttrFloat(n, "epsilon", static_cast<float>(bn_eps_));
      h = bn;
    }
    if (relu6) {
      std::string act = absl::StrCat(bn, ".relu6");
      Node("Clip", act, {h, "relu6_min", "relu6_max"});
      h = act;
    }
    return h;
  }

  std::string Add(const std::string& a, const std::string& b, const std::string& name) {
    Node("Add", name, {a, b});
    return name;
  }

  std::string Classifier(const std::string& x, const std::string& out) {
    Node("GlobalAveragePool", "classifier.pool", {x});
    nas_onnx::NodeProto* f = Node("Flatten", "classifier.flatten", {"classifier.pool"});
    AttrInt(f, "axis", 1);
    Use("classifier.linear.weight");
    Use("classifier.linear.bias");
    nas_onnx::NodeProto* g =
        Node("Gemm", out, {"classifier.flatten", "classifier.linear.weight", "classifier.linear.bias"});
    AttrInt(g, "transB", 1);
    return out;
  }

 private:
  std::string Conv(const std::string& x, const std::string& name, const std::string& w,
                   const std::string& b, int kernel, int stride, int group) {
    std::vector<std::string> in = {x, w};
    if (!b.empty()) in.push_back(b);
    nas_onnx::NodeProto* n = Node("Conv", name, in);
    AttrInts(n, "kernel_shape", {kernel, kernel});
    AttrInts(n, "strides", {stride, stride});
    int p = kernel / 2;
    AttrInts(n, "pads", {p, p, p, p});
    AttrInts(n, "dilations", {1, 1});
    AttrInt(n, "group", group);
    return name;
  }

  // The initializer `name` from the weights, unchanged.
  void Use(const std::string& name) {
    const torch::Tensor& t = weights_.at(name);
    AddInitializer(name, t.sizes().vec(), t);
  }

  void AddInitializer(const std::string& name, const std::vector<int64_t>& dims,
                      const torch::Tensor& t) {
    if (!added_.insert(name).second) return;
    nas_onnx::TensorProto* p = graph_->add_initializer();
    p->set_name(name);
    p->set_data_type(nas_onnx::TensorProto::FLOAT);
    for (int64_t d : dims) p->add_dims(d);
    torch::Tensor c = t.to(torch::kFloat).contiguous();
    p->set_raw_data(std::string(static_cast<const char*>(c.data_ptr()),
                                static_cast<size_t>(c.numel()) * sizeof(float)));
  }

  nas_onnx::NodeProto* Node(const std::string& op, const std::string& output,
                            const std::vector<std::string>& inputs) {
    nas_onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (const std::string& i : inputs) n->add_input(i);
    n->add_output(output);
    return n;
  }

  static void AttrInt(nas_onnx::NodeProto* n, const std::string& name, int64_t v) {
    nas_onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(nas_onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void AttrFloat(nas_onnx::NodeProto* n, const std::string& name, float v) {
    nas_onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(nas_onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
  static void AttrInts(nas_onnx::NodeProto* n, const std::string& name,
                       const std::vector<int64_t>& v) {
    nas_onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(nas_onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  nas_onnx::GraphProto* graph_;
  const Tensors& weights_;
  bool fold_bn_;
  double bn_eps_;
  std::set<std::string> added_;
};

void SetTensorType(nas_onnx::ValueInfoProto* v, const std::string& name,
                   const std::vector<int64_t>& dims) {
  v->set_name(name);
  nas_onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(nas_onnx::TensorProto::FLOAT);
  nas_onnx::TensorShapeProto* s = t->mutable_shape();
  s->add_dim()->set_dim_param("batch");
  for (int64_t d : dims) s->add_dim()->set_dim_value(d);
}

std::string Floats(const std::vector<float>& v) {
  return absl::StrJoin(v, ",", [](std::string* out, float f) { absl::StrAppendFormat(out, "%.8g", f); });
}

absl::StatusOr<std::string> BuildModel(const NetworkConfig& config, const Tensors& w,
                                       const OnnxExportOptions& o) {
  nas_onnx::ModelProto model;
  model.set_ir_version(kOnnxIrVersion);
  nas_onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  model.set_producer_name(kOnnxProducerName);
  model.set_producer_version(kOnnxProducerVersion);
  model.set_model_version(1);
  std::string doc = absl::StrCat(
      "ProxylessNAS derived network", o.space.empty() ? "" : absl::StrCat(" of space ", o.space),
      o.architecture.empty() ? "" : absl::StrCat(": ", o.architecture), ". Input: NCHW float ",
      config.input_channels, "x", config.input_height, "x", config.input_width,
      ", normalised per channel ((pixel/255 - mean) / std)",
      o.input_mean.empty() ? "" : absl::StrCat(", mean ", Floats(o.input_mean), ", std ", Floats(o.input_std)),
      "; output: logits [batch, ", config.num_classes, "]",
      o.fold_bn ? "; BatchNorm folded into the convolutions" : "", ".");
  model.set_doc_string(doc);
  auto meta = [&](const std::string& k, const std::string& v) {
    nas_onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(k);
    e->set_value(v);
  };
  if (!o.space.empty()) meta("space", o.space);
  if (!o.architecture.empty()) meta("architecture", o.architecture);
  meta("network_config", config.ToReferenceJson());
  meta("fold_bn", o.fold_bn ? "true" : "false");
  meta("input_layout", "NCHW");
  if (!o.input_mean.empty()) meta("input_mean", Floats(o.input_mean));
  if (!o.input_std.empty()) meta("input_std", Floats(o.input_std));
  if (!o.weights_source.empty()) meta("weights", o.weights_source);
  for (const auto& [k, v] : o.metadata) meta(k, v);

  nas_onnx::GraphProto* g = model.mutable_graph();
  g->set_name(o.space.empty() ? "proxyless_nas" : absl::StrCat("proxyless_nas_", o.space));
  g->set_doc_string(doc);
  SetTensorType(g->add_input(), "input",
                {config.input_channels, config.input_height, config.input_width});
  SetTensorType(g->add_output(), "logits", {config.num_classes});

  GraphBuilder b(g, w, o.fold_bn, config.bn_eps);
  std::string h =
      b.ConvBn("input", "stem.conv", "stem.bn", config.stem_kernel, config.stem_stride, 1, true);
  for (size_t i = 0; i < config.blocks.size(); ++i) {
    const BlockConfig& blk = config.blocks[i];
    if (blk.zero) continue;  // the shortcut alone: no nodes
    std::string p = absl::StrCat("blocks_", i);
    int mid = blk.mid_channels();
    std::string x = h;
    if (blk.expand != 1) x = b.ConvBn(x, p + ".expand_conv", p + ".expand_bn", 1, 1, 1, true);
    x = b.ConvBn(x, p + ".depthwise_conv", p + ".depthwise_bn", blk.kernel, blk.stride, mid, true);
    x = b.ConvBn(x, p + ".project_conv", p + ".project_bn", 1, 1, 1, false);
    h = blk.shortcut ? b.Add(h, x, p + ".add") : x;
  }
  if (config.feature_mix_channels > 0) {
    h = b.ConvBn(h, "feature_mix.conv", "feature_mix.bn", 1, 1, 1, true);
  }
  b.Classifier(h, "logits");
  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    return absl::InternalError("ONNX model: protobuf serialisation failed (over 2 GiB?)");
  }
  return bytes;
}

absl::StatusOr<std::string> Export(const NetworkConfig& config, const Tensors& tensors,
                                   const std::string& source, const OnnxExportOptions& o) {
  NAS_RETURN_IF_ERROR(config.Validate());
  try {
    NAS_ASSIGN_OR_RETURN(Tensors w, CheckTensors(config, tensors, source));
    return BuildModel(config, w, o);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("ONNX export of ", source, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("ONNX export of ", source, ": ", e.what()));
  }
}

// Every tensor of a LibTorch archive (what Module::save writes: nested archives per submodule),
// by dotted name.
void ReadArchive(torch::serialize::InputArchive& a, const std::string& prefix, int depth,
                 Tensors* out) {
  TORCH_CHECK(depth <= kMaxArchiveDepth, "nested deeper than ", kMaxArchiveDepth, " modules");
  for (const std::string& key : a.keys()) {
    std::string name = prefix.empty() ? key : absl::StrCat(prefix, ".", key);
    torch::serialize::InputArchive sub;
    if (a.try_read(key, sub)) {
      ReadArchive(sub, name, depth + 1, out);
      continue;
    }
    torch::Tensor t;
    if (a.try_read(key, t, /*is_buffer=*/false) || a.try_read(key, t, /*is_buffer=*/true)) {
      TORCH_CHECK(out->size() < static_cast<size_t>(kMaxArchiveTensors), "more than ",
                  kMaxArchiveTensors, " tensors");
      (*out)[name] = t;
    }
  }
}

}  // namespace

absl::StatusOr<std::string> OnnxFromModule(const NetworkConfig& config,
                                           const torch::nn::Module& net,
                                           const OnnxExportOptions& options) {
  Tensors tensors;
  try {
    for (const auto& p : net.named_parameters()) tensors[p.key()] = p.value();
    for (const auto& b : net.named_buffers()) tensors[b.key()] = b.value();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("ONNX export: ", e.what_without_backtrace()));
  }
  return Export(config, tensors, "network", options);
}

absl::StatusOr<std::string> OnnxFromWeightsFile(const NetworkConfig& config,
                                                const std::string& path,
                                                const OnnxExportOptions& options) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("weights file ", path, ": not found or not a file"));
  }
  uintmax_t size = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("weights file ", path, ": ", ec.message()));
  if (size > static_cast<uintmax_t>(kMaxOnnxWeightsFileBytes)) {
    return absl::InvalidArgumentError(absl::StrCat("weights file ", path, ": ", size,
                                                   " bytes, over the limit of ",
                                                   kMaxOnnxWeightsFileBytes));
  }
  Tensors tensors;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, torch::Device(torch::kCPU));
    ReadArchive(archive, "", 0, &tensors);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat("weights file ", path,
                                                   ": not a readable LibTorch archive: ",
                                                   e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights file ", path, ": not a readable LibTorch archive: ", e.what()));
  }
  if (tensors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("weights file ", path, ": holds no tensors"));
  }
  OnnxExportOptions o = options;
  if (o.weights_source.empty()) o.weights_source = fs::path(path).filename().string();
  return Export(config, tensors, "weights file " + path, o);
}

absl::Status WriteOnnxBytes(const std::string& bytes, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      std::remove(tmp.c_str());
      return absl::DataLossError(absl::StrCat(path, ": write failed (disk full?)"));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot rename into place: ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status WriteOnnxModel(const NetworkConfig& config, const torch::nn::Module& net,
                            const OnnxExportOptions& options, const std::string& out_path) {
  NAS_ASSIGN_OR_RETURN(std::string bytes, OnnxFromModule(config, net, options));
  return WriteOnnxBytes(bytes, out_path);
}

}  // namespace nas
