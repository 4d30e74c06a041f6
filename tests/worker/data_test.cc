#include "worker/data.h"

#include <torch/torch.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/search_driver.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "worker/profiler.h"
#include "worker/runtime.h"

namespace nas {
namespace {

namespace fs = std::filesystem;

std::string BigEndian(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nas_data_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // n images of h x w with label i % classes, pixel value = label * 10.
  void WriteIdx(const std::string& stem, int n, int h, int w, int classes, bool gz,
                int truncate_by = 0) {
    std::string img = BigEndian(2051) + BigEndian(n) + BigEndian(h) + BigEndian(w);
    std::string lab = BigEndian(2049) + BigEndian(n);
    for (int i = 0; i < n; ++i) {
      img.append(h * w, static_cast<char>((i % classes) * 10));
      lab.push_back(static_cast<char>(i % classes));
    }
    img.resize(img.size() - truncate_by);
    Write(stem + "-images-idx3-ubyte", img, gz);
    Write(stem + "-labels-idx1-ubyte", lab, gz);
  }
  void Write(const std::string& name, const std::string& bytes, bool gz) {
    std::string path = (dir_ / name).string();
    if (gz) {
      gzFile f = gzopen((path + ".gz").c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary) << bytes;
    }
  }
  fs::path dir_;
};

TEST_F(DataTest, LoadsGzippedIdx) {
  WriteIdx("train", 100, 6, 5, 10, true);
  WriteIdx("t10k", 20, 6, 5, 10, true);
  auto d = LoadDataSet("fashion-mnist", dir_.string(), true);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size(), 100);
  EXPECT_EQ(d->images.sizes(), (std::vector<int64_t>{100, 1, 6, 5}));
  EXPECT_EQ(d->num_classes, 10);
  EXPECT_EQ(d->labels[37].item<int64_t>(), 7);
  EXPECT_EQ(d->images[37][0][2][3].item<uint8_t>(), 70);
}

TEST_F(DataTest, TruncatedFileIsAClearError) {
  WriteIdx("train", 100, 6, 5, 10, false, /*truncate_by=*/7);
  auto d = LoadDataSet("mnist", dir_.string(), true);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("train-images-idx3-ubyte"), std::string::npos);
  EXPECT_NE(d.status().message().find("truncated"), std::string::npos) << d.status();
}

TEST_F(DataTest, WrongMagicAndMissingFiles) {
  Write("train-images-idx3-ubyte", BigEndian(1234) + std::string(12, '\0'), false);
  Write("train-labels-idx1-ubyte", BigEndian(2049) + BigEndian(0), false);
  auto d = LoadDataSet("mnist", dir_.string(), true);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("magic"), std::string::npos) << d.status();
  auto missing = LoadDataSet("mnist", (dir_ / "nope").string(), true);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto unknown = LoadDataSet("imagenet-22k", "", true);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DataTest, CorruptGzipIsAnError) {
  WriteIdx("train", 50, 4, 4, 10, true);
  std::string path = (dir_ / "train-images-idx3-ubyte.gz").string();
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(20);
  f.write("garbagegarbage", 14);
  f.close();
  auto d = LoadDataSet("mnist", dir_.string(), true);
  EXPECT_FALSE(d.ok());
}

// A small gzip file that inflates to much more than its limit is refused as it is read.
TEST_F(DataTest, AGzipBombIsRefusedAtItsLimit) {
  const std::string path = (dir_ / "bomb.gz").string();
  gzFile g = gzopen(path.c_str(), "wb9");
  ASSERT_NE(g, nullptr);
  const std::string zeros(1 << 20, '\0');
  for (int i = 0; i < 8; ++i) ASSERT_EQ(gzwrite(g, zeros.data(), zeros.size()), 1 << 20);
  gzclose(g);
  ASSERT_LT(std::filesystem::file_size(path), 64u << 10);  // 8 MiB in a few KB
  auto small = ReadMaybeGz(path, 4 << 20);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument) << small.status();
  EXPECT_NE(std::string(small.status().message()).find("inflates beyond the limit"),
            std::string::npos);
  auto whole = ReadMaybeGz(path, 8 << 20);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->size(), size_t{8} << 20);
}

TEST_F(DataTest, CifarRecordsAndTruncation) {
  std::string batch;
  for (int i = 0; i < 10; ++i) {
    batch.push_back(static_cast<char>(i));
    batch.append(3072, static_cast<char>(i));
  }
  for (int k = 1; k <= 5; ++k) Write("data_batch_" + std::to_string(k) + ".bin", batch, false);
  auto d = LoadCifar10(dir_.string(), true);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->images.sizes(), (std::vector<int64_t>{50, 3, 32, 32}));
  EXPECT_EQ(d->labels[13].item<int64_t>(), 3);
  Write("test_batch.bin", batch.substr(0, 5000), false);
  auto t = LoadCifar10(dir_.string(), false);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("test_batch.bin"), std::string::npos);
}

TEST_F(DataTest, ValidationSplitIsClassBalancedDisjointAndSeeded) {
  WriteIdx("train", 1000, 4, 4, 10, false);
  auto d = LoadDataSet("mnist", dir_.string(), true);
  ASSERT_TRUE(d.ok());
  // Tag every image with its index so that membership can be checked.
  for (int64_t i = 0; i < 1000; ++i) d->images[i][0][0][0] = static_cast<uint8_t>(i % 256);
  d->images.select(2, 1).select(2, 1).select(1, 0).copy_(
      torch::arange(1000).div(256, "floor").to(torch::kUInt8));
  auto s = SplitValidation(*d, 200, 7);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->valid.size(), 200);
  EXPECT_EQ(s->train.size(), 800);
  torch::Tensor counts = torch::bincount(s->valid.labels, {}, 10);
  EXPECT_TRUE(torch::all(counts == 20).item<bool>()) << counts;
  auto id = [](const DataSet& ds) {
    return ds.images.select(2, 0).select(2, 0).select(1, 0).to(torch::kInt64) +
           256 * ds.images.select(2, 1).select(2, 1).select(1, 0).to(torch::kInt64);
  };
  torch::Tensor all = torch::cat({id(s->train), id(s->valid)});
  EXPECT_EQ(std::get<0>(torch::_unique(all)).numel(), 1000);  // disjoint and complete
  auto again = SplitValidation(*d, 200, 7);
  EXPECT_TRUE(torch::equal(id(again->valid), id(s->valid)));
  auto other = SplitValidation(*d, 200, 8);
  EXPECT_FALSE(torch::equal(id(other->valid), id(s->valid)));
  EXPECT_FALSE(SplitValidation(*d, 0, 1).ok());
}

TEST_F(DataTest, BatcherAugmentsOnlyWhenAsked) {
  WriteIdx("train", 64, 8, 8, 4, false);
  auto d = LoadDataSet("mnist", dir_.string(), true);
  ASSERT_TRUE(d.ok());
  Batcher plain(*d, 16, 1, {}, /*shuffle=*/false);
  torch::Tensor x, y;
  ASSERT_TRUE(plain.Next(&x, &y));
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{16, 1, 8, 8}));
  EXPECT_TRUE(x.is_contiguous(at::MemoryFormat::ChannelsLast));
  // One channel: the strides must still be channels-last's, or LibTorch runs every convolution
  // after the input in NCHW (a one-channel NCHW tensor also counts as channels-last contiguous).
  EXPECT_EQ(x.strides(), c10::get_channels_last_strides_2d(x.sizes()));
  EXPECT_EQ(x.suggest_memory_format(), at::MemoryFormat::ChannelsLast);
  // Images are constant, so without augmentation every pixel of an image is equal.
  EXPECT_NEAR((x.amax({1, 2, 3}) - x.amin({1, 2, 3})).abs().max().item<float>(), 0, 1e-6);
  Batcher shifted(*d, 16, 1, Augment{2, false}, false);
  ASSERT_TRUE(shifted.Next(&x, &y));
  // With shifts, zero padding enters some images (labels > 0 are non-zero images).
  EXPECT_GT((x.amax({1, 2, 3}) - x.amin({1, 2, 3})).max().item<float>(), 0.1);
  EXPECT_EQ(plain.batches_per_epoch(), 4);
}

TEST(ProfilerTest, TimesEveryKeyAndRejectsBadKeys) {
  ConfigureCpuRuntime(1);
  ProfileOptions o;
  o.repeats = 8;
  o.warmup = 1;
  o.device = "test-cpu";
  std::vector<std::string> keys = {
      "Conv-input:16x16x3-output:8x8x8",
      "expanded_conv-input:8x8x8-output:8x8x8-expand:3-kernel:5-stride:1-idskip:1",
      "expanded_conv-input:8x8x8-output:4x4x16-expand:6-kernel:3-stride:2-idskip:0",
      "Conv_1-input:4x4x16-output:4x4x32",
      "Logits-input:4x4x32-output:10"};
  o.passes = 2;
  std::vector<std::pair<int, std::string>> calls;
  auto t = ProfileKeys(keys, o, [&](int i, int n, const std::string& key) {
    EXPECT_EQ(n, 10);
    calls.emplace_back(i, key);
  });
  ASSERT_TRUE(t.ok()) << t.status();
  // Every key once per pass, the passes one after the other: the first in order, the second
  // a permutation.
  ASSERT_EQ(calls.size(), 10u);
  std::vector<std::string> second;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(calls[i].first, i + 1);
    if (i < 5) EXPECT_EQ(calls[i].second, keys[i]);
    if (i >= 5) second.push_back(calls[i].second);
  }
  std::sort(second.begin(), second.end());
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(second, sorted);
  EXPECT_EQ(t->size(), 5u);
  EXPECT_EQ(t->info().device, "test-cpu");
  EXPECT_EQ(t->info().threads, 1);
  for (const std::string& k : keys) {
    auto e = t->Lookup(k);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->count, 4);  // the middle half of 8 runs
    EXPECT_GT(e->mean_ms, 0);
  }
  auto bad = ProfileKeys({"expanded_conv-input:8x8x8-output:8x8x8-expand:3-kernel:4-stride:1-idskip:1"},
                         o, nullptr);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  o.backend = "tpu";
  EXPECT_EQ(ProfileKeys(keys, o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProfilerTest, CalibrationPredictingNoTimeIsNotKept) {
  // Layers "timed" at 5 ms each, as on a machine far busier than when the networks are measured
  // (~0.5 ms): the fitted overhead is about minus the layer sums, so the smaller networks of the
  // space would be predicted to take no time - the table keeps plain layer sums instead.
  ConfigureCpuRuntime(1);
  SearchSpace space = SearchSpace::Preset("fashion-mnist").value();
  LatencyTable t(LatencyTableInfo{"test-cpu", "r", 1, 1, "", ""});
  for (const std::string& k : space.AllLayerKeys()) ASSERT_TRUE(t.Insert(k, {4, 5.0, 0}).ok());
  ProfileOptions o;
  o.repeats = 3;
  o.warmup = 1;
  o.calibration_networks = 6;
  o.max_calibration_error_pct = 1e9;  // only the prediction rule can refuse it
  ProfileReport report;
  ASSERT_TRUE(CalibrateTable(space, o, &t, nullptr, &report).ok());
  EXPECT_FALSE(t.info().calibration.has_value());
  EXPECT_FALSE(report.calibration_steady);
  EXPECT_TRUE(BuildLatencyModel(space, t).ok());
}

TEST(ProfilerTest, TimingsAddUpWithOthersWeightedByWindow) {
  TimingReport sum;
  AddTiming({1, 30.0, 0.5}, &sum);
  AddTiming({0, 10.0, 0.1}, &sum);
  AddTiming({2, 0.0, 9.0}, &sum);  // no window: no weight
  EXPECT_EQ(sum.retimed, 3);
  EXPECT_DOUBLE_EQ(sum.window_ms, 40.0);
  EXPECT_DOUBLE_EQ(sum.others_cpu, (0.5 * 30 + 0.1 * 10) / 40);
  TimingReport empty;
  AddTiming({}, &empty);
  EXPECT_EQ(empty.others_cpu, 0);
}

// A table records OpenBLAS's idle setting in its runtime (a cached table of another setting is
// profiled again: tests/integration/cli_test.sh).
TEST(ProfilerTest, RuntimeNamesOpenBlasIdleSetting) {
  const char* was = std::getenv("OPENBLAS_THREAD_TIMEOUT");
  const std::string saved = was != nullptr ? was : "";
  ProfileOptions o;
  o.threads = 2;
  unsetenv("OPENBLAS_THREAD_TIMEOUT");
  const std::string plain = RuntimeDescription(o);
  EXPECT_EQ(plain.find("OPENBLAS"), std::string::npos) << plain;
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
  EXPECT_EQ(RuntimeDescription(o), plain + ", OPENBLAS_THREAD_TIMEOUT=4");
  if (was != nullptr) {
    setenv("OPENBLAS_THREAD_TIMEOUT", saved.c_str(), 1);
  } else {
    unsetenv("OPENBLAS_THREAD_TIMEOUT");
  }
}

TEST(ProfilerTest, NetworksAreMeasuredInInterleavedPasses) {
  ConfigureCpuRuntime(1);
  SearchSpace space = SearchSpace::Preset("fashion-mnist").value();
  std::vector<NetworkConfig> nets;
  for (int c : {0, 1, 2}) {
    nets.push_back(space.Derive(std::vector<int>(space.num_edges(), c)).value());
  }
  ProfileOptions o;
  o.repeats = 4;
  o.warmup = 1;
  o.passes = 3;
  std::vector<std::pair<int, int>> calls;
  std::vector<TimingReport> reports;
  auto m = MeasureNetworks(nets, o, &reports, [&](int i, int n) { calls.emplace_back(i, n); });
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), nets.size());
  ASSERT_EQ(reports.size(), nets.size());
  // One timing per network per pass, counted 1..9 of 9.
  ASSERT_EQ(calls.size(), 9u);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(calls[i], std::make_pair(i + 1, 9));
  const LatencyEntry one = MeasureNetwork(nets[0], o).value();
  for (size_t i = 0; i < nets.size(); ++i) {
    EXPECT_EQ((*m)[i].count, one.count) << "network " << i;
    EXPECT_GT((*m)[i].mean_ms, 0) << "network " << i;
    EXPECT_GT(reports[i].window_ms, 0) << "network " << i;
  }
  // The protocol is part of the table's method (a cached table of another protocol is redone).
  ProfileOptions five = o;
  five.passes = 5;
  EXPECT_NE(ProfileMethod(o), ProfileMethod(five));
  o.passes = 0;
  EXPECT_EQ(MeasureNetworks(nets, o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChannelsLastStridedTest, GivesChannelsLastStridesAndKeepsValues) {
  for (int64_t c : {1, 3}) {
    torch::Tensor x = torch::randn({4, c, 5, 6});
    torch::Tensor y = ChannelsLastStrided(x);
    EXPECT_EQ(y.strides(), c10::get_channels_last_strides_2d(y.sizes())) << "channels " << c;
    EXPECT_EQ(y.suggest_memory_format(), at::MemoryFormat::ChannelsLast) << "channels " << c;
    EXPECT_TRUE(torch::equal(x, y));
    // One channel: NCHW memory is already channels-last memory, so no copy is made.
    if (c == 1) EXPECT_EQ(y.data_ptr(), x.data_ptr());
    // Already channels-last strided: the same tensor, no copy.
    EXPECT_TRUE(ChannelsLastStrided(y).is_same(y));
  }
  torch::Tensor v = torch::randn({3, 4});
  EXPECT_TRUE(ChannelsLastStrided(v).is_same(v));
}

}  // namespace
}  // namespace nas
