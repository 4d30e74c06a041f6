// worker/onnx_export: the model's structure read back with the same schema, its semantics
// (the graph evaluated node by node with LibTorch's functional ops against Network::forward in
// eval mode, with and without fold_bn), and clear errors for bad weights. The independent
// readers (Debian's python3-onnx checker and ONNX Runtime) are in tests/integration/onnx_test.sh.
#include "worker/onnx_export.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "nas_onnx/onnx.pb.h"
#include "worker/ops.h"

namespace nas {
namespace {

namespace F = torch::nn::functional;

// Three edges with Zero allowed, expand 1 in the first block, a stride-2 stage.
SearchSpace TinySpace() {
  auto s = SearchSpace::FromJson(R"({"name": "tiny", "input": {"height": 16, "width": 16,
    "channels": 3}, "num_classes": 5, "stem": {"channels": 8, "kernel": 3, "stride": 2},
    "first_block": {"channels": 8, "kernel": 3, "expand": 1},
    "stages": [{"channels": 16, "blocks": 2, "stride": 2}, {"channels": 16, "blocks": 2, "stride": 1}],
    "feature_mix_channels": 32,
    "candidates": {"kernels": [3, 5], "expands": [3, 6], "zero": true}})");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

// A network whose BatchNorm statistics are not the identity (so folding matters).
Network MakeNetwork(const NetworkConfig& config) {
  torch::manual_seed(3);
  Network net(config);
  torch::NoGradGuard no_grad;
  for (auto& b : net->named_buffers()) {
    if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.5, 0.5);
    if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
  }
  for (auto& p : net->named_parameters()) {
    if (p.key().find("bn.weight") != std::string::npos) p.value().uniform_(0.5, 1.5);
    if (p.key().find("bn.bias") != std::string::npos) p.value().uniform_(-0.2, 0.2);
  }
  net->eval();
  return net;
}

NetworkConfig DerivedWithZero(const SearchSpace& space) {
  std::vector<int> choices(space.num_edges(), 0);
  // The last edge (stride 1, 16 -> 16) skipped: its Zero candidate is the last one.
  choices.back() = space.CandidatesPerEdge().back() - 1;
  auto c = space.Derive(choices);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

nas_onnx::ModelProto Parse(const std::string& bytes) {
  nas_onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

torch::Tensor FromProto(const nas_onnx::TensorProto& t) {
  std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  torch::Tensor out = torch::empty(dims, torch::kFloat);
  EXPECT_EQ(t.raw_data().size(), static_cast<size_t>(out.numel()) * sizeof(float)) << t.name();
  std::memcpy(out.data_ptr(), t.raw_data().data(), t.raw_data().size());
  return out;
}

std::vector<int64_t> Ints(const nas_onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return {a.ints().begin(), a.ints().end()};
  return {};
}
int64_t Int(const nas_onnx::NodeProto& n, const std::string& name, int64_t def) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.i();
  return def;
}
float Float(const nas_onnx::NodeProto& n, const std::string& name, float def) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.f();
  return def;
}

// Evaluates the graph with LibTorch's functional ops, one node at a time: the reading of each
// operator's ONNX definition, not of our exporter.
torch::Tensor RunGraph(const nas_onnx::ModelProto& m, const torch::Tensor& input) {
  std::map<std::string, torch::Tensor> v;
  for (const auto& t : m.graph().initializer()) v[t.name()] = FromProto(t);
  v[m.graph().input(0).name()] = input;
  for (const auto& n : m.graph().node()) {
    auto in = [&](int i) { return v.at(n.input(i)); };
    torch::Tensor y;
    const std::string& op = n.op_type();
    if (op == "Conv") {
      std::vector<int64_t> pads = Ints(n, "pads");
      EXPECT_EQ(pads[0], pads[2]);
      y = torch::conv2d(in(0), in(1), n.input_size() > 2 ? in(2) : torch::Tensor(),
                        Ints(n, "strides"), {pads[0], pads[1]}, Ints(n, "dilations"),
                        Int(n, "group", 1));
    } else if (op == "BatchNormalization") {
      y = torch::batch_norm(in(0), in(1), in(2), in(3), in(4), false, 0.0,
                            Float(n, "epsilon", 1e-5f), false);
    } else if (op == "Clip") {
      y = torch::clamp(in(0), in(1).item<float>(), in(2).item<float>());
    } else if (op == "Add") {
      y = in(0) + in(1);
    } else if (op == "GlobalAveragePool") {
      y = in(0).mean({2, 3}, /*keepdim=*/true);
    } else if (op == "Flatten") {
      y = in(0).flatten(Int(n, "axis", 1));
    } else if (op == "Gemm") {
      EXPECT_EQ(Int(n, "transB", 0), 1);
      y = torch::addmm(in(2), in(0), in(1).t());
    } else {
      ADD_FAILURE() << "unexpected op " << op;
    }
    v[n.output(0)] = y;
  }
  return v.at(m.graph().output(0).name());
}

TEST(OnnxExport, StructureMatchesTheNetwork) {
  SearchSpace space = TinySpace();
  NetworkConfig config = DerivedWithZero(space);
  Network net = MakeNetwork(config);
  OnnxExportOptions o;
  o.space = "tiny";
  o.architecture = "arch-name";
  o.input_mean = {0.5f, 0.4f, 0.3f};
  o.input_std = {0.2f, 0.2f, 0.2f};
  auto bytes = OnnxFromModule(config, *net, o);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  nas_onnx::ModelProto m = Parse(*bytes);
  EXPECT_EQ(m.ir_version(), kOnnxIrVersion);
  ASSERT_EQ(m.opset_import_size(), 1);
  EXPECT_EQ(m.opset_import(0).version(), 13);
  EXPECT_EQ(m.producer_name(), kOnnxProducerName);
  EXPECT_NE(m.doc_string().find("tiny"), std::string::npos);
  std::map<std::string, std::string> meta;
  for (const auto& e : m.metadata_props()) meta[e.key()] = e.value();
  EXPECT_EQ(meta["space"], "tiny");
  EXPECT_EQ(meta["architecture"], "arch-name");
  EXPECT_EQ(meta["fold_bn"], "false");
  EXPECT_EQ(meta["input_mean"], "0.5,0.40000001,0.30000001");
  EXPECT_FALSE(meta["network_config"].empty());

  const auto& g = m.graph();
  ASSERT_EQ(g.input_size(), 1);
  EXPECT_EQ(g.input(0).name(), "input");
  const auto& shape = g.input(0).type().tensor_type().shape();
  ASSERT_EQ(shape.dim_size(), 4);
  EXPECT_EQ(shape.dim(0).dim_param(), "batch");
  EXPECT_EQ(shape.dim(1).dim_value(), 3);
  EXPECT_EQ(shape.dim(2).dim_value(), 16);
  ASSERT_EQ(g.output_size(), 1);
  EXPECT_EQ(g.output(0).name(), "logits");
  EXPECT_EQ(g.output(0).type().tensor_type().shape().dim(1).dim_value(), 5);

  std::map<std::string, int> ops;
  int depthwise = 0, adds = 0;
  for (const auto& n : g.node()) {
    ++ops[n.op_type()];
    if (n.op_type() == "Conv" && Int(n, "group", 1) > 1) ++depthwise;
    if (n.op_type() == "Clip") EXPECT_EQ(n.input_size(), 3) << "Clip takes min and max as inputs";
    if (n.op_type() == "Add") ++adds;
  }
  int blocks = 0, expands = 0, shortcuts = 0;
  for (const BlockConfig& b : config.blocks) {
    if (b.zero) continue;
    ++blocks;
    expands += b.expand != 1;
    shortcuts += b.shortcut;
  }
  EXPECT_EQ(blocks, static_cast<int>(config.blocks.size()) - 1) << "one Zero block";
  EXPECT_EQ(ops["Conv"], 2 + 2 * blocks + expands);  // stem, feature mix, per block
  EXPECT_EQ(ops["BatchNormalization"], ops["Conv"]);
  EXPECT_EQ(ops["Clip"], 2 + blocks + expands);
  EXPECT_EQ(depthwise, blocks);
  EXPECT_EQ(adds, shortcuts);
  EXPECT_EQ(ops["Gemm"], 1);
  EXPECT_EQ(ops["GlobalAveragePool"], 1);
  for (const auto& n : g.node()) {
    EXPECT_EQ(n.name().find(absl::StrCat("blocks_", config.blocks.size() - 1)), std::string::npos)
        << "the Zero block has no nodes: " << n.name();
  }

  o.fold_bn = true;
  auto folded = OnnxFromModule(config, *net, o);
  ASSERT_TRUE(folded.ok()) << folded.status();
  nas_onnx::ModelProto f = Parse(*folded);
  int bn = 0, conv_with_bias = 0;
  for (const auto& n : f.graph().node()) {
    bn += n.op_type() == "BatchNormalization";
    conv_with_bias += n.op_type() == "Conv" && n.input_size() == 3;
  }
  EXPECT_EQ(bn, 0);
  EXPECT_EQ(conv_with_bias, ops["Conv"]);
}

TEST(OnnxExport, GraphComputesTheEvalForward) {
  SearchSpace space = TinySpace();
  for (const NetworkConfig& config : {DerivedWithZero(space), *space.Derive(space.LargestChoices())}) {
    Network net = MakeNetwork(config);
    torch::manual_seed(5);
    torch::Tensor x = torch::randn({4, 3, 16, 16});
    torch::Tensor want;
    {
      torch::NoGradGuard no_grad;
      want = net->forward(x.contiguous(at::MemoryFormat::ChannelsLast));
    }
    for (bool fold : {false, true}) {
      OnnxExportOptions o;
      o.fold_bn = fold;
      auto bytes = OnnxFromModule(config, *net, o);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      torch::Tensor got;
      {
        torch::NoGradGuard no_grad;
        got = RunGraph(Parse(*bytes), x);
      }
      ASSERT_EQ(got.sizes(), want.sizes());
      double diff = (got - want).abs().max().item<double>();
      EXPECT_LT(diff, 1e-4) << "fold_bn " << fold;
    }
  }
}

class OnnxWeightsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("onnx_export_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    space_ = TinySpace();
    config_ = DerivedWithZero(space_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Save(torch::nn::Module& m, const std::string& name) {
    std::string path = (dir_ / name).string();
    torch::serialize::OutputArchive a;
    m.save(a);
    a.save_to(path);
    return path;
  }
  std::string ExportError(const std::string& path) {
    auto r = OnnxFromWeightsFile(config_, path, {});
    EXPECT_FALSE(r.ok());
    return std::string(r.status().message());
  }

  std::filesystem::path dir_;
  SearchSpace space_;
  NetworkConfig config_;
};

TEST_F(OnnxWeightsFileTest, FileAndModuleGiveTheSameModel) {
  Network net = MakeNetwork(config_);
  std::string path = Save(*net, "derived.pt");
  OnnxExportOptions o;
  o.weights_source = "derived.pt";
  auto from_file = OnnxFromWeightsFile(config_, path, o);
  auto from_module = OnnxFromModule(config_, *net, o);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  ASSERT_TRUE(from_module.ok()) << from_module.status();
  EXPECT_EQ(*from_file, *from_module);
  std::string out = (dir_ / "m.onnx").string();
  ASSERT_TRUE(WriteOnnxModel(config_, *net, o, out).ok());
  std::ifstream f(out, std::ios::binary);
  std::string written((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(written, *from_module);
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
}

TEST_F(OnnxWeightsFileTest, BadWeightsAreNamed) {
  std::string missing = (dir_ / "nope.pt").string();
  std::string e = ExportError(missing);
  EXPECT_NE(e.find(missing), std::string::npos) << e;
  EXPECT_NE(e.find("not found"), std::string::npos) << e;

  std::string garbage = (dir_ / "garbage.pt").string();
  std::ofstream(garbage) << "this is not a zip archive";
  e = ExportError(garbage);
  EXPECT_NE(e.find(garbage), std::string::npos) << e;
  EXPECT_NE(e.find("not a readable LibTorch archive"), std::string::npos) << e;

  Network net = MakeNetwork(config_);
  std::string good = Save(*net, "good.pt");
  std::string truncated = (dir_ / "truncated.pt").string();
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  e = ExportError(truncated);
  EXPECT_NE(e.find("not a readable LibTorch archive"), std::string::npos) << e;

  // Weights of the largest network for an architecture with a skipped block: an extra tensor,
  // and expand-ratio shapes that differ.
  Network other = MakeNetwork(*space_.Derive(space_.LargestChoices()));
  e = ExportError(Save(*other, "other.pt"));
  EXPECT_NE(e.find("weights of another network"), std::string::npos) << e;

  {
    torch::NoGradGuard no_grad;
    net->blocks[1]->depthwise_conv->weight.view(-1)[3] = std::nanf("");
  }
  e = ExportError(Save(*net, "nan.pt"));
  EXPECT_NE(e.find("blocks_1.depthwise_conv.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("non-finite"), std::string::npos) << e;

  Network neg = MakeNetwork(config_);
  {
    torch::NoGradGuard no_grad;
    neg->stem->bn->running_var[0] = -1;
  }
  e = ExportError(Save(*neg, "neg.pt"));
  EXPECT_NE(e.find("stem.bn.running_var"), std::string::npos) << e;

  // A module that lacks the classifier.
  Network partial = MakeNetwork(config_);
  partial->unregister_module("classifier");
  e = ExportError(Save(*partial, "partial.pt"));
  EXPECT_NE(e.find("classifier.linear.weight is missing"), std::string::npos) << e;

  Network dbl = MakeNetwork(config_);
  dbl->to(torch::kDouble);
  e = ExportError(Save(*dbl, "double.pt"));
  EXPECT_NE(e.find("expected Float"), std::string::npos) << e;
}

}  // namespace
}  // namespace nas
