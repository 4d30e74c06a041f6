// A tiny real search on a class-balanced subset of Fashion-MNIST (Debian's
// dataset-fashion-mnist, installed by scripts/setup.sh).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/architecture.h"
#include "core/json_fields.h"
#include "core/latency_table.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "worker/search.h"

namespace nas {
namespace {

namespace fs = std::filesystem;

class SearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("nas_search_test_" + std::to_string(::getpid()));
    fs::create_directories(root_);
    // One profiled table shared by the runs, so that they see identical latencies.
    ProfileOptions p;
    p.repeats = 6;
    p.warmup = 1;
    p.threads = 1;
    auto t = RunProfile("fashion-mnist", p, (root_ / "table.json").string());
    ASSERT_TRUE(t.ok()) << t.status();
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  void SetUp() override {
    if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
      GTEST_SKIP() << "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)";
    }
  }

  SearchOptions Tiny(const std::string& name) {
    SearchOptions o;
    o.out_dir = (root_ / name).string();
    o.latency_table = (root_ / "table.json").string();
    o.train_subset = 1200;
    o.valid_size = 200;
    o.test_subset = 200;
    o.warmup_epochs = 1;
    o.search_epochs = 2;
    o.train_epochs = 1;
    o.batch_size = 50;
    o.arch_every = 1;
    o.baseline = false;
    o.threads = 1;
    o.seed = 11;
    o.progress = false;
    o.arch_adam.lr = 0.05;  // move alpha visibly in a few steps
    return o;
  }
  static fs::path root_;
};
fs::path SearchTest::root_;

TEST_F(SearchTest, WritesAValidResultDirectory) {
  SearchOptions o = Tiny("run");
  o.baseline = true;
  o.train_epochs = 3;  // enough to be well above chance on 1000 images
  o.train_lr = 0.05;
  auto r = RunSearch(o);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const char* f : {"architecture.json", "network.json", "alpha_history.jsonl", "derived.pt",
                        "baseline.pt", "derived.onnx", "baseline.onnx", "latency_table.json",
                        "search_space.json", "report.json", "report.md"}) {
    EXPECT_TRUE(fs::exists(fs::path(o.out_dir) / f)) << f;
  }
  auto space = SearchSpace::Preset("fashion-mnist");
  auto arch = Architecture::FromJson(ReadTextFile(o.out_dir + "/architecture.json"), *space);
  ASSERT_TRUE(arch.ok()) << arch.status();
  EXPECT_EQ(arch->choices, r->choices);
  auto net = NetworkConfig::FromReferenceJson(ReadTextFile(o.out_dir + "/network.json"), 28, 28);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(net->ParameterCount(), r->derived.parameters);
  auto report = ParseJson(ReadTextFile(o.out_dir + "/report.json"), "report");
  ASSERT_TRUE(report.ok());
  EXPECT_GT((*report)["derived"]["test_accuracy"].get<double>(), 0.3);  // well above chance
  EXPECT_GT((*report)["baseline"]["measured_latency_ms"].get<double>(), 0);
  // 1200 - 200 valid = 1000 train images / 50 = 20 steps per epoch; arch steps in epoch 2 only.
  EXPECT_EQ(r->weight_steps, 60);
  EXPECT_EQ(r->arch_steps, 20);
  int lines = 0;
  std::ifstream hist(o.out_dir + "/alpha_history.jsonl");
  for (std::string line; std::getline(hist, line);) ++lines;
  EXPECT_EQ(lines, 1 + 20 + 1);  // init, every arch step, final
}

TEST_F(SearchTest, SameSeedSameAlphaTrajectory) {
  SearchOptions a = Tiny("seed_a"), b = Tiny("seed_b"), c = Tiny("seed_c");
  c.seed = 12;
  ASSERT_TRUE(RunSearch(a).ok());
  ASSERT_TRUE(RunSearch(b).ok());
  ASSERT_TRUE(RunSearch(c).ok());
  std::string ha = ReadTextFile(a.out_dir + "/alpha_history.jsonl");
  EXPECT_FALSE(ha.empty());
  EXPECT_EQ(ha, ReadTextFile(b.out_dir + "/alpha_history.jsonl"));
  EXPECT_NE(ha, ReadTextFile(c.out_dir + "/alpha_history.jsonl"));
}

TEST_F(SearchTest, ReinforceVariantRuns) {
  SearchOptions o = Tiny("rl");
  o.arch_algo = "rl";
  auto r = RunSearch(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->arch_steps, 20);
}

TEST_F(SearchTest, BadOptionsAreClearErrors) {
  SearchOptions o = Tiny("bad");
  o.space = "no-such-space";
  auto r = RunSearch(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("no-such-space"), std::string::npos);
  o = Tiny("bad");
  o.arch_algo = "evolution";
  EXPECT_EQ(RunSearch(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Tiny("bad");
  o.space = "cifar10";  // 32x32x3 space on 28x28x1 data
  r = RunSearch(o);
  EXPECT_FALSE(r.ok());
  o = Tiny("bad");
  o.loss.type = HardwareLossOptions::Type::kMulLog;
  o.loss.target_ms = 0.5;
  r = RunSearch(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("target"), std::string::npos);
}

}  // namespace
}  // namespace nas
