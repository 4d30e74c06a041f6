// The per-device predictor: features, fit on a synthetic table from a known formula, held-out
// error, errors for kinds it cannot answer, and its JSON form.
#include "latency_service/predictor.h"

#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace nas {
namespace {

using ::testing::HasSubstr;

// The "device": a known function of the layer's work and memory traffic, plus a fixed overhead.
double Formula(const LayerKey& k) {
  std::vector<double> f = LayerFeatures(k);
  if (k.kind == "expanded_conv") {
    return 0.05 + 0.004 * f[0] + 0.03 * f[1] + 0.005 * f[2] + 0.4 * f[3] + 0.2 * f[4] + 0.1 * f[5];
  }
  return 0.02 + 0.006 * f[0] + 0.3 * f[1];
}

std::string MbKey(int hw, int in_c, int out_c, int expand, int kernel, int stride) {
  int out_hw = (hw + stride - 1) / stride;
  int idskip = (stride == 1 && in_c == out_c) ? 1 : 0;
  return absl::StrCat("expanded_conv-input:", hw, "x", hw, "x", in_c, "-output:", out_hw, "x",
                      out_hw, "x", out_c, "-expand:", expand, "-kernel:", kernel,
                      "-stride:", stride, "-idskip:", idskip);
}

// Every MBConv of a grid of sizes, channels, expands, kernels and strides.
std::vector<std::string> GridKeys() {
  std::vector<std::string> keys;
  for (int hw : {56, 28, 14, 7}) {
    for (int in_c : {16, 24, 40, 80}) {
      for (int out_c : {24, 40, 80}) {
        for (int expand : {3, 6}) {
          for (int kernel : {3, 5, 7}) {
            for (int stride : {1, 2})
              keys.push_back(MbKey(hw, in_c, out_c, expand, kernel, stride));
          }
        }
      }
    }
  }
  return keys;
}

LatencyTable SyntheticTable(const std::vector<std::string>& keys, double noise) {
  LatencyTable t(LatencyTableInfo{"synthetic", "formula", 1, 1, "", "test"});
  int i = 0;
  for (const std::string& key : keys) {
    LayerKey k = LayerKey::Parse(key).value();
    // Deterministic +-noise pattern.
    double jitter = 1.0 + noise * ((i++ % 7) - 3) / 3.0;
    EXPECT_TRUE(t.Insert(key, LatencyEntry{10, Formula(k) * jitter, 1e-4}).ok());
  }
  EXPECT_TRUE(
      t.Insert(
           "Conv-input:224x224x3-output:112x112x32",
           LatencyEntry{
               10, Formula(LayerKey::Parse("Conv-input:224x224x3-output:112x112x32").value()), 0})
          .ok());
  return t;
}

TEST(LayerFeaturesTest, MbconvMacsMatchTheBlockFormula) {
  // 56x56x24 -> 56x56x24, expand 6 (mid 144), 5x5, stride 1.
  LayerKey k = LayerKey::Parse(MbKey(56, 24, 24, 6, 5, 1)).value();
  std::vector<double> f = LayerFeatures(k);
  ASSERT_EQ(f.size(), LayerFeatureNames("expanded_conv").size());
  EXPECT_DOUBLE_EQ(f[0], 24.0 * 144 * 56 * 56 / 1e6);
  EXPECT_DOUBLE_EQ(f[1], 144.0 * 25 * 56 * 56 / 1e6);
  EXPECT_DOUBLE_EQ(f[2], 144.0 * 24 * 56 * 56 / 1e6);
}

TEST(LatencyPredictorTest, SyntheticFormulaHasSmallHeldOutError) {
  LatencyTable t = SyntheticTable(GridKeys(), 0.0);
  absl::StatusOr<LatencyPredictor> p = LatencyPredictor::Fit(t, {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->models().at("expanded_conv").form, "linear");
  EXPECT_EQ(p->models().at("Conv").form, "ratio");
  EXPECT_GT(p->report().holdout_entries, 100);
  EXPECT_LT(p->report().holdout_mape, 0.5);
  EXPECT_LT(p->report().holdout_max_ape, 2.0);

  // Keys the table never saw (other sizes and channels) follow the formula too.
  for (const std::string& key :
       {MbKey(112, 32, 48, 3, 5, 2), MbKey(20, 64, 64, 6, 7, 1), MbKey(10, 120, 200, 4, 3, 1)}) {
    LayerKey k = LayerKey::Parse(key).value();
    absl::StatusOr<double> ms = p->Predict(k);
    ASSERT_TRUE(ms.ok()) << ms.status();
    EXPECT_NEAR(*ms, Formula(k), 0.02 * Formula(k)) << key;
  }
}

TEST(LatencyPredictorTest, NoisyTableStillPredictsWithinTheNoise) {
  LatencyTable t = SyntheticTable(GridKeys(), 0.05);  // +-5% measurement noise
  absl::StatusOr<LatencyPredictor> p = LatencyPredictor::Fit(t, {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_LT(p->report().holdout_mape, 5.0);
}

TEST(LatencyPredictorTest, KindWithoutEntriesIsAnErrorNotADefault) {
  LatencyTable t = SyntheticTable(GridKeys(), 0.0);
  LatencyPredictor p = LatencyPredictor::Fit(t, {}).value();
  absl::StatusOr<double> ms =
      p.Predict(LayerKey::Parse("Logits-input:7x7x1280-output:1000").value());
  ASSERT_FALSE(ms.ok());
  EXPECT_EQ(ms.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ms.status().message(), HasSubstr("Logits-input:7x7x1280-output:1000"));
  EXPECT_THAT(ms.status().message(), HasSubstr("no Logits entries"));
}

TEST(LatencyPredictorTest, JsonRoundTripPredictsTheSame) {
  LatencyPredictor p = LatencyPredictor::Fit(SyntheticTable(GridKeys(), 0.02), {}).value();
  p.set_table_version(7);
  absl::StatusOr<LatencyPredictor> q = LatencyPredictor::FromJson(p.ToJson());
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->table_version(), 7u);
  EXPECT_EQ(q->device(), "synthetic");
  EXPECT_DOUBLE_EQ(q->report().holdout_mape, p.report().holdout_mape);
  LayerKey k = LayerKey::Parse(MbKey(20, 64, 64, 6, 7, 1)).value();
  EXPECT_DOUBLE_EQ(q->Predict(k).value(), p.Predict(k).value());
}

TEST(LatencyPredictorTest, BadJsonNamesTheField) {
  absl::StatusOr<LatencyPredictor> q = LatencyPredictor::FromJson(
      R"({"format": "nas-latency-predictor/2", "device": "d", "table_version": 1,
          "report": {"fitted_entries": 1, "holdout_entries": 0, "holdout_mape_percent": 0,
                     "holdout_max_ape_percent": 0},
          "models": {"Conv": {"form": "linear", "entries": 1, "coef": [1, 2], "scale": [1]}}})");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("models.Conv.coef"));
}

// Every number of a predictor file is checked; old files are refused saying why.
TEST(LatencyPredictorTest, HostileOrOldJsonIsRefusedNamingTheField) {
  LatencyPredictor p = LatencyPredictor::Fit(SyntheticTable(GridKeys(), 0.02), {}).value();
  const nlohmann::json good = nlohmann::json::parse(p.ToJson());
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string want;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& j) { j["format"] = "nas-latency-predictor/1"; },
       "predates per-kind errors"},
      {[](nlohmann::json& j) { j["models"]["Conv"]["coef"][0] = -1.0; },
       "models.Conv.coef: -1 is below 0"},
      {[](nlohmann::json& j) { j["models"]["Conv"]["min"][0] = 1e9; }, "models.Conv.min[0]"},
      {[](nlohmann::json& j) {
         j["models"]["Conv"]["max"] = {1, 2};
       },
       "models.Conv.max: expected 3 numbers"},
      {[](nlohmann::json& j) { j["models"]["Conv"]["entries"] = 0; }, "models.Conv.entries"},
      {[](nlohmann::json& j) { j["models"]["Conv"]["entries"] = 100000; }, "models.Conv.entries"},
      {[](nlohmann::json& j) { j["models"]["Conv"]["error"]["rms_percent"] = -1; },
       "models.Conv.error.rms_percent"},
      {[](nlohmann::json& j) { j["models"]["Conv"]["error"]["method"] = "guess"; },
       "models.Conv.error.method"},
      {[](nlohmann::json& j) { j["models"]["Conv"].erase("error"); }, "models.Conv.error: missing"},
      {[](nlohmann::json& j) { j["report"]["holdout_mape_percent"] = -3; },
       "report.holdout_mape_percent"},
      {[](nlohmann::json& j) { j["report"]["holdout_entries"] = 1000000; },
       "report.holdout_entries"},
      {[](nlohmann::json& j) { j["models"]["Deconv"] = 1; }, "models.Deconv: unknown layer kind"},
      {[](nlohmann::json& j) { j["models"]["Conv"] = 1; }, "models.Conv: expected an object"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = good;
    c.edit(j);
    absl::StatusOr<LatencyPredictor> q = LatencyPredictor::FromJson(j.dump());
    ASSERT_FALSE(q.ok()) << c.want;
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << q.status();
    EXPECT_THAT(q.status().message(), HasSubstr(c.want));
  }
  absl::StatusOr<LatencyPredictor> q =
      LatencyPredictor::FromJson(std::string(kMaxPredictorBytes + 1, ' '));
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("over the limit of 1048576"));
  EXPECT_FALSE(LatencyPredictor::FromJson("[1, 2]").ok());
  EXPECT_FALSE(LatencyPredictor::FromJson("{\"format\": 1e999}").ok());
}

// The spread of a predicted answer is the kind's held-out error, not 0; a kind of one entry
// (no error estimate) says 100%; keys beyond the fitted range are flagged, far beyond refused.
TEST(LatencyPredictorTest, AnswersCarryTheirSpreadAndExtrapolation) {
  LatencyTable t = SyntheticTable(GridKeys(), 0.05);
  LatencyPredictor p = LatencyPredictor::Fit(t, {}).value();
  const LatencyPredictor::KindModel& mb = p.models().at("expanded_conv");
  EXPECT_EQ(mb.error.method, "holdout");
  EXPECT_GT(mb.error.entries, 100);
  EXPECT_GT(mb.error.rms_percent, 0.5);
  EXPECT_GE(mb.error.rms_percent, mb.error.mape_percent);
  EXPECT_EQ(p.models().at("Conv").error.method, "none");  // a single stem entry

  // Inside the grid (a channel count between the grid's): spread = mean x RMS error.
  LayerKey inside = LayerKey::Parse(MbKey(28, 32, 40, 6, 5, 1)).value();
  PredictedLatency a = p.Answer(inside).value();
  EXPECT_FALSE(a.extrapolated);
  EXPECT_DOUBLE_EQ(a.std_ms, a.mean_ms * mb.error.rms_percent / 100);
  EXPECT_DOUBLE_EQ(p.Predict(inside).value(), a.mean_ms);
  // Beyond the grid (112x112 inputs; the largest fitted is 56x56: 4x the work): flagged.
  a = p.Answer(LayerKey::Parse(MbKey(112, 80, 80, 6, 7, 1)).value()).value();
  EXPECT_TRUE(a.extrapolated);
  EXPECT_GT(a.std_ms, 0);
  // The stem: no error estimate, so the spread is the mean itself.
  a = p.Answer(LayerKey::Parse("Conv-input:112x112x3-output:56x56x32").value()).value();
  EXPECT_DOUBLE_EQ(a.std_ms, a.mean_ms);
  EXPECT_TRUE(a.extrapolated);
  // Far beyond (2048x2048 inputs: over 1000x the work of the largest fitted block): refused.
  absl::StatusOr<PredictedLatency> far =
      p.Answer(LayerKey::Parse(MbKey(2048, 80, 80, 6, 7, 1)).value());
  ASSERT_FALSE(far.ok());
  EXPECT_EQ(far.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(far.status().message(), HasSubstr("above the largest"));
  EXPECT_THAT(far.status().message(), HasSubstr("the limit is 100x"));
  // And far below (1x1 inputs with few channels).
  far = p.Answer(LayerKey::Parse(MbKey(1, 1, 1, 1, 1, 1)).value());
  ASSERT_FALSE(far.ok());
  EXPECT_THAT(far.status().message(), HasSubstr("below the smallest"));

  // Kinds of 2-4 entries get a leave-one-out error.
  LatencyTable small(LatencyTableInfo{"small", "r", 1, 1, "", ""});
  ASSERT_TRUE(small.Insert("Conv_1-input:7x7x320-output:7x7x1280", {5, 3.0, 0}).ok());
  ASSERT_TRUE(small.Insert("Conv_1-input:4x4x320-output:4x4x1280", {5, 1.2, 0}).ok());
  ASSERT_TRUE(small.Insert("Conv_1-input:7x7x160-output:7x7x1280", {5, 1.4, 0}).ok());
  LatencyPredictor ps = LatencyPredictor::Fit(small, {}).value();
  const KindError& e = ps.models().at("Conv_1").error;
  EXPECT_EQ(e.method, "leave-one-out");
  EXPECT_EQ(e.entries, 3);
  EXPECT_GT(e.rms_percent, 0);
  // The error and the ranges survive the JSON round trip.
  LatencyPredictor back = LatencyPredictor::FromJson(p.ToJson()).value();
  PredictedLatency b = back.Answer(inside).value();
  EXPECT_DOUBLE_EQ(b.std_ms, p.Answer(inside).value().std_ms);
  EXPECT_EQ(back.Answer(LayerKey::Parse(MbKey(112, 80, 80, 6, 7, 1)).value())->extrapolated, true);
}

}  // namespace
}  // namespace nas
