// LatencyRegistry without gRPC: the mobile_trim import, queries (measured, predicted, cache,
// errors), uploads (replace, merge, versions), and persistence in a table directory.
#include "latency_service/latency_registry.h"

#include <atomic>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/search_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nas {
namespace {

using ::testing::HasSubstr;

const std::string kMobileTrim = std::string(NAS_DATA_DIR) + "/proxylessnas/mobile_trim.yaml";

std::string FreshDir(const std::string& name) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/latency_registry_test_", name);
  std::filesystem::remove_all(dir);
  return dir;
}

std::unique_ptr<LatencyRegistry> OpenPixel1(const std::string& table_dir = "") {
  LatencyRegistryOptions o;
  o.table_dir = table_dir;
  o.builtin_tables = {{"pixel1-tflite", kMobileTrim}};
  absl::StatusOr<std::unique_ptr<LatencyRegistry>> r = LatencyRegistry::Open(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return std::move(r).value();
}

absl::Status Query(const LatencyRegistry& r, const std::string& device,
                   const std::vector<std::string>& keys, std::vector<LayerLatency>* out) {
  std::vector<absl::string_view> views(keys.begin(), keys.end());
  return r.Query(device, views, out);
}

LatencyTable SmallTable(const std::string& device, double scale) {
  LatencyTable t(LatencyTableInfo{device, "libtorch-cpu 1.13.1, 2 threads", 1, 2,
                                  "2026-11-25T20:00:00Z", "test"});
  SearchSpace space = SearchSpace::Preset("fashion-mnist").value();
  double ms = 0.1;
  for (const std::string& k : space.AllLayerKeys()) {
    EXPECT_TRUE(t.Insert(k, LatencyEntry{20, ms * scale, 1e-4}).ok());
    ms += 0.01;
  }
  return t;
}

TEST(LatencyRegistryTest, MobileTrimAll3x3Expand6NetworkSumsToTheTable) {
  std::unique_ptr<LatencyRegistry> r = OpenPixel1();
  SearchSpace space = SearchSpace::Preset("proxyless-imagenet").value();
  std::vector<int> choices;
  for (const EdgeSpec& e : space.edges()) {
    int idx = -1;
    for (size_t i = 0; i < e.candidates.size(); ++i) {
      if (e.candidates[i].Name() == "3x3_MBConv6") idx = static_cast<int>(i);
    }
    ASSERT_GE(idx, 0);
    choices.push_back(idx);
  }
  NetworkConfig net = space.Derive(choices).value();
  std::vector<std::string> keys = net.LayerKeys();
  ASSERT_EQ(keys.size(), 1 + 1 + 21 + 1 + 1u);  // stem, first block, 21 edges, mix, logits

  std::vector<LayerLatency> answers;
  ASSERT_TRUE(Query(*r, "pixel1-tflite", keys, &answers).ok());
  double service_sum = 0;
  for (const LayerLatency& a : answers) {
    EXPECT_EQ(a.source, LatencySource::kMeasured);
    service_sum += a.mean_ms;
  }
  LatencyTable table = LatencyTable::Load(kMobileTrim).value();
  EXPECT_DOUBLE_EQ(service_sum, table.SumMeans(keys).value());
  EXPECT_GT(service_sum, 50.0);  // a sanity bound: a full MobileNetV2-like net on a Pixel 1

  // Expected latency at uniform probabilities: fixed layers + per edge the mean over its
  // candidates (Zero costs 0), computed by hand from the table.
  std::vector<std::string> fixed = space.FixedLayerKeys();
  ASSERT_TRUE(Query(*r, "pixel1-tflite", fixed, &answers).ok());
  double expected = 0, by_hand = table.SumMeans(fixed).value();
  for (const LayerLatency& a : answers) expected += a.mean_ms;
  for (const EdgeSpec& e : space.edges()) {
    std::vector<std::string> cand;
    for (size_t i = 0; i < e.candidates.size(); ++i) {
      if (!e.candidates[i].zero) cand.push_back(BlockKey(e.Block(static_cast<int>(i))));
    }
    ASSERT_TRUE(Query(*r, "pixel1-tflite", cand, &answers).ok());
    double s = 0;
    for (const LayerLatency& a : answers) s += a.mean_ms;
    expected += s / e.candidates.size();
    by_hand += table.SumMeans(cand).value() / e.candidates.size();
  }
  EXPECT_NEAR(expected, by_hand, 1e-9);
}

TEST(LatencyRegistryTest, ListsThePixel1TableWithItsPredictorError) {
  std::unique_ptr<LatencyRegistry> r = OpenPixel1();
  std::vector<DeviceSummary> d = r->ListDevices();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].name, "pixel1-tflite");
  EXPECT_EQ(d[0].entries, 72);
  EXPECT_EQ(d[0].version, 1u);
  EXPECT_EQ(d[0].predictor.fitted_entries, 72);
  EXPECT_GT(d[0].predictor.holdout_entries, 10);
  EXPECT_GT(d[0].predictor.holdout_mape, 0.0);
}

TEST(LatencyRegistryTest, PredictsMissingKeysAndCachesThem) {
  std::unique_ptr<LatencyRegistry> r = OpenPixel1();
  // A 0.75-width layer: not in the table, same kind as 66 entries.
  std::string key =
      "expanded_conv-input:56x56x16-output:56x56x16-expand:3-kernel:5-stride:1-idskip:1";
  std::vector<LayerLatency> a, b;
  ASSERT_TRUE(Query(*r, "pixel1-tflite", {key}, &a).ok());
  EXPECT_EQ(a[0].source, LatencySource::kPredicted);
  EXPECT_GT(a[0].mean_ms, 0);
  ASSERT_TRUE(Query(*r, "pixel1-tflite", {key, key}, &b).ok());
  EXPECT_DOUBLE_EQ(b[0].mean_ms, a[0].mean_ms);
  EXPECT_DOUBLE_EQ(b[1].mean_ms, a[0].mean_ms);
}

TEST(LatencyRegistryTest, NonCanonicalSpellingFindsTheMeasuredEntry) {
  std::unique_ptr<LatencyRegistry> r = OpenPixel1();
  std::vector<LayerLatency> a;
  ASSERT_TRUE(
      Query(*r, "pixel1-tflite",
            {"Conv-output:112x112x32-input:224x224x3", "Conv-input:224x224x3-output:112x112x32"},
            &a)
          .ok());
  EXPECT_EQ(a[0].source, LatencySource::kMeasured);
  EXPECT_DOUBLE_EQ(a[0].mean_ms, a[1].mean_ms);
}

TEST(LatencyRegistryTest, ErrorsNameTheDeviceOrTheKey) {
  std::unique_ptr<LatencyRegistry> r = OpenPixel1();
  std::vector<LayerLatency> a;
  absl::Status s = Query(*r, "no-such-phone", {"Conv-input:224x224x3-output:112x112x32"}, &a);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("no-such-phone"));
  EXPECT_THAT(s.message(), HasSubstr("pixel1-tflite"));

  s = Query(*r, "pixel1-tflite", {"Conv-input:224x224x3-output:112x112x32", "expanded_conv-x"}, &a);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("layer_keys[1]"));
  EXPECT_THAT(s.message(), HasSubstr("'expanded_conv-x'"));
}

TEST(LatencyRegistryTest, KindTheTableLacksIsAnError) {
  LatencyRegistryOptions o;
  std::unique_ptr<LatencyRegistry> r = LatencyRegistry::Open(o).value();
  LatencyTable t = SmallTable("cpu-no-logits", 1.0);
  LatencyTable pruned(t.info());
  for (const auto& [k, e] : t.entries()) {
    if (k.rfind("Logits", 0) != 0) ASSERT_TRUE(pruned.Insert(k, e).ok());
  }
  ASSERT_TRUE(r->PutTable(pruned, PutMode::kReplace).ok());
  std::vector<LayerLatency> a;
  absl::Status s = Query(*r, "cpu-no-logits", {"Logits-input:7x7x1280-output:1000"}, &a);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("layer_keys[0]"));
  EXPECT_THAT(s.message(), HasSubstr("no Logits entries"));
}

TEST(LatencyRegistryTest, PutReplacesMergesAndVersions) {
  LatencyRegistryOptions o;
  std::unique_ptr<LatencyRegistry> r = LatencyRegistry::Open(o).value();
  LatencyTable t = SmallTable("x86-test", 1.0);
  const std::string key = t.entries().begin()->first;
  DeviceSummary s1 = r->PutTable(t, PutMode::kReplace).value();
  EXPECT_EQ(s1.version, 1u);
  EXPECT_EQ(s1.entries, static_cast<int64_t>(t.size()));

  // Merge a second measurement of every key at 3x the time: pooled mean is the average.
  DeviceSummary s2 = r->PutTable(SmallTable("x86-test", 3.0), PutMode::kMerge).value();
  EXPECT_EQ(s2.version, 2u);
  EXPECT_EQ(s2.entries, static_cast<int64_t>(t.size()));
  LatencyEntry pooled = r->GetTable("x86-test").value().Lookup(key).value();
  EXPECT_EQ(pooled.count, 40);
  EXPECT_NEAR(pooled.mean_ms, 2.0 * t.Lookup(key).value().mean_ms, 1e-12);
  EXPECT_GT(pooled.var, 1e-4);  // the two means differ, so the union spreads

  // A conditional upload at a stale version is refused and changes nothing.
  absl::StatusOr<DeviceSummary> stale = r->PutTable(t, PutMode::kReplace, /*if_version=*/1);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("version 2"));
  EXPECT_EQ(r->Describe("x86-test").value().version, 2u);
  EXPECT_EQ(r->PutTable(t, PutMode::kReplace, 2).value().version, 3u);

  // Merging timings from another set-up is refused, naming the field.
  LatencyTable other = SmallTable("x86-test", 1.0);
  other.mutable_info().threads = 1;
  absl::StatusOr<DeviceSummary> bad = r->PutTable(other, PutMode::kMerge);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.status().message(), HasSubstr("table.threads"));

  LatencyTable badname = SmallTable("../etc", 1.0);
  EXPECT_EQ(r->PutTable(badname, PutMode::kReplace).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LatencyRegistryTest, UploadsSurviveAReopenAndWinOverBuiltins) {
  const std::string dir = FreshDir("reopen");
  {
    std::unique_ptr<LatencyRegistry> r = OpenPixel1(dir);
    ASSERT_TRUE(r->PutTable(SmallTable("x86-test", 1.0), PutMode::kReplace).ok());
    // Replace the built-in pixel1 table with a one-entry table.
    LatencyTable one(LatencyTableInfo{"pixel1-tflite", "uploaded", 1, 1, "", ""});
    ASSERT_TRUE(one.Insert("Conv-input:224x224x3-output:112x112x32", {5, 9.0, 0}).ok());
    EXPECT_EQ(r->PutTable(one, PutMode::kReplace).value().version, 2u);
  }
  EXPECT_TRUE(std::filesystem::exists(dir + "/x86-test.table.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/x86-test.predictor.json"));
  std::unique_ptr<LatencyRegistry> r = OpenPixel1(dir);
  std::vector<DeviceSummary> d = r->ListDevices();
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].name, "pixel1-tflite");
  EXPECT_EQ(d[0].version, 2u);
  EXPECT_EQ(d[0].entries, 1);
  EXPECT_EQ(d[1].name, "x86-test");
  EXPECT_EQ(d[1].version, 1u);
  std::vector<LayerLatency> a;
  ASSERT_TRUE(Query(*r, "pixel1-tflite", {"Conv-input:224x224x3-output:112x112x32"}, &a).ok());
  EXPECT_DOUBLE_EQ(a[0].mean_ms, 9.0);
}

LatencyCalibration Calibration(double overhead_ms) {
  LatencyCalibration c;
  c.overhead_ms = overhead_ms;
  c.networks = 12;
  c.min_layers = 6;
  c.max_layers = 10;
  c.raw_rmse_ms = overhead_ms;
  c.rmse_ms = 0.02;
  c.loo_rmse_ms = 0.025;
  c.max_error_pct = 4.0;
  return c;
}

TEST(LatencyRegistryTest, CalibrationTravelsThroughPutGetMergeAndAReopen) {
  const std::string dir = FreshDir("calibration");
  {
    std::unique_ptr<LatencyRegistry> r = OpenPixel1(dir);
    // The built-in YAML table has none.
    EXPECT_FALSE(r->Describe("pixel1-tflite").value().calibration.has_value());
    LatencyTable t = SmallTable("x86-test", 1.0);
    t.mutable_info().calibration = Calibration(0.17);
    DeviceSummary put = r->PutTable(t, PutMode::kReplace).value();
    ASSERT_TRUE(put.calibration.has_value());
    EXPECT_EQ(put.calibration->overhead_ms, 0.17);
    EXPECT_EQ(put.calibration->networks, 12);
    // GetTable and its JSON return it.
    ASSERT_TRUE(r->GetTable("x86-test").value().info().calibration.has_value());
    LatencyTable back = LatencyTable::ParseJson(r->GetTableJson("x86-test").value()).value();
    ASSERT_TRUE(back.info().calibration.has_value());
    EXPECT_EQ(back.info().calibration->overhead_ms, 0.17);
    EXPECT_EQ(back.info().calibration->max_error_pct, 4.0);
    // A merge without a calibration keeps the stored one; with one, the upload's wins.
    EXPECT_EQ(r->PutTable(SmallTable("x86-test", 1.0), PutMode::kMerge)
                  .value()
                  .calibration->overhead_ms,
              0.17);
    LatencyTable again = SmallTable("x86-test", 1.0);
    again.mutable_info().calibration = Calibration(0.21);
    EXPECT_EQ(r->PutTable(again, PutMode::kMerge).value().calibration->overhead_ms, 0.21);
    // The persisted file holds it.
    Json j = ParseJson(ReadFile(dir + "/x86-test.table.json").value(), "file").value();
    EXPECT_EQ(j["calibration"]["overhead_ms"], 0.21);
    // A replace without one drops it: the new table was not calibrated.
    ASSERT_TRUE(r->PutTable(SmallTable("x86-old", 1.0), PutMode::kReplace).ok());
    EXPECT_FALSE(r->Describe("x86-old").value().calibration.has_value());
  }
  std::unique_ptr<LatencyRegistry> r = OpenPixel1(dir);
  DeviceSummary d = r->Describe("x86-test").value();
  ASSERT_TRUE(d.calibration.has_value());
  EXPECT_EQ(d.calibration->overhead_ms, 0.21);
  EXPECT_EQ(d.calibration->rmse_ms, 0.02);
  EXPECT_FALSE(r->Describe("x86-old").value().calibration.has_value());
}

TEST(LatencyRegistryTest, TableFileWithoutCalibrationStillLoads) {
  // A table directory written before calibration existed.
  const std::string dir = FreshDir("old_file");
  std::filesystem::create_directories(dir);
  Json j = ParseJson(SmallTable("x86-test", 1.0).ToJson(), "t").value();
  ASSERT_FALSE(j.contains("calibration"));
  j["version"] = 4;
  ASSERT_TRUE(WriteFile(dir + "/x86-test.table.json", j.dump(2)).ok());
  std::unique_ptr<LatencyRegistry> r = OpenPixel1(dir);
  DeviceSummary d = r->Describe("x86-test").value();
  EXPECT_EQ(d.version, 4u);
  EXPECT_FALSE(d.calibration.has_value());
}

TEST(LatencyRegistryTest, StalePredictorFileIsRefitted) {
  const std::string dir = FreshDir("stale");
  {
    std::unique_ptr<LatencyRegistry> r = OpenPixel1(dir);
    ASSERT_TRUE(r->PutTable(SmallTable("x86-test", 1.0), PutMode::kReplace).ok());
  }
  // As if the process died between writing the table (version 2) and its predictor.
  std::string path = dir + "/x86-test.table.json";
  Json j = ParseJson(ReadFile(path).value(), path).value();
  j["version"] = 2;
  ASSERT_TRUE(WriteFile(path, j.dump()).ok());
  std::unique_ptr<LatencyRegistry> r = OpenPixel1(dir);
  EXPECT_EQ(r->Describe("x86-test").value().version, 2u);
  Json p = ParseJson(ReadFile(dir + "/x86-test.predictor.json").value(), "p").value();
  EXPECT_EQ(p["table_version"], 2);
}

TEST(LatencyRegistryTest, CorruptTableFileFailsOpenNamingIt) {
  const std::string dir = FreshDir("corrupt");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteFile(dir + "/bad.table.json", "{\"format\": ").ok());
  ASSERT_TRUE(WriteFile(dir + "/.ignored.table.json.tmp.1", "garbage").ok());
  LatencyRegistryOptions o;
  o.table_dir = dir;
  absl::StatusOr<std::unique_ptr<LatencyRegistry>> r = LatencyRegistry::Open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("bad.table.json"));
}

TEST(LatencyRegistryTest, EveryBatchSeesOneVersionWhileUploadsRun) {
  LatencyRegistryOptions o;
  std::unique_ptr<LatencyRegistry> r = LatencyRegistry::Open(o).value();
  // Version v of the table answers v ms for every key.
  auto table_at = [](int v) {
    LatencyTable t = SmallTable("x86-test", 1.0);
    LatencyTable u(t.info());
    for (const auto& [k, e] : t.entries()) EXPECT_TRUE(u.Insert(k, {1, double(v), 0}).ok());
    return u;
  };
  ASSERT_TRUE(r->PutTable(table_at(1), PutMode::kReplace).ok());
  std::vector<std::string> keys;
  const LatencyTable first = table_at(1);
  for (const auto& [k, e] : first.entries()) keys.push_back(k);
  std::atomic<bool> done{false};
  std::atomic<int> mixed{0}, batches{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      std::vector<LayerLatency> a;
      while (!done.load()) {
        if (!Query(*r, "x86-test", keys, &a).ok()) continue;
        for (const LayerLatency& x : a) mixed += x.mean_ms != a[0].mean_ms;
        ++batches;
      }
    });
  }
  for (int v = 2; v <= 30; ++v) ASSERT_TRUE(r->PutTable(table_at(v), PutMode::kReplace).ok());
  // On a loaded machine the readers may not have been scheduled yet: let each read at least
  // once (the last version then) before they stop.
  while (batches.load() < 2) std::this_thread::yield();
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(mixed.load(), 0);
  EXPECT_GT(batches.load(), 0);
  EXPECT_EQ(r->Describe("x86-test").value().version, 30u);
}

}  // namespace
}  // namespace nas
