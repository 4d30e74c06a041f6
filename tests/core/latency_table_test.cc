#include "core/latency_table.h"

#include <cmath>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/arch_params.h"
#include "core/json_fields.h"
#include "core/network_config.h"
#include "core/rng.h"
#include "core/search_driver.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

const std::string kMobileTrim = std::string(NAS_DATA_DIR) + "/proxylessnas/mobile_trim.yaml";

const char kStem[] = "Conv-input:224x224x3-output:112x112x32";
const char kMix[] = "Conv_1-input:7x7x320-output:7x7x1280";
const char kLogits[] = "Logits-input:7x7x1280-output:1000";
const char kBlock[] =
    "expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0";

TEST(LatencyTableTest, ImportsTheReferenceYaml) {
  auto t = LatencyTable::Load(kMobileTrim);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->size(), 72u);
  EXPECT_EQ(t->info().device, "mobile_trim");
  auto stem = t->Lookup(kStem);
  ASSERT_TRUE(stem.ok()) << stem.status();
  // Values as they appear in the file.
  EXPECT_EQ(stem->count, 982);
  EXPECT_DOUBLE_EQ(stem->mean_ms, 4.083755600814664);
  EXPECT_DOUBLE_EQ(stem->var, 0.2502372872758427);
  EXPECT_DOUBLE_EQ(t->Lookup(kMix)->mean_ms, 3.088623217922607);
  EXPECT_DOUBLE_EQ(t->Lookup(kLogits)->mean_ms, 0.3096415478615071);
  auto first = t->Lookup(
      "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->count, 164);
  EXPECT_DOUBLE_EQ(first->mean_ms, 6.240567073170731);
  // Sum of all 72 means (python3 over the file: 388.3047854956828).
  double sum = 0;
  for (const auto& [k, e] : t->entries()) sum += e.mean_ms;
  EXPECT_NEAR(sum, 388.3047854956828, 1e-10);
  // Every key of the paper's table is in the grammar and prints back identically.
  for (const auto& [k, e] : t->entries()) {
    auto parsed = LayerKey::Parse(k);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->ToString(), k);
  }
}

TEST(LatencyTableTest, LookupOfMissingKeyIsNotFoundNamingKeyAndDevice) {
  auto t = LatencyTable::Load(kMobileTrim);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string missing =
      "expanded_conv-input:56x56x24-output:28x28x40-expand:9-kernel:5-stride:2-idskip:0";
  EXPECT_FALSE(t->Contains(missing));
  EXPECT_TRUE(
      IsError(t->Lookup(missing).status(), absl::StatusCode::kNotFound, {missing, "mobile_trim"}));
  auto sum = t->SumMeans({kStem, kMix});
  ASSERT_TRUE(sum.ok());
  EXPECT_DOUBLE_EQ(*sum, 4.083755600814664 + 3.088623217922607);
  EXPECT_TRUE(IsError(t->SumMeans({kStem, missing, kMix}).status(), absl::StatusCode::kNotFound,
                      {missing}));
  EXPECT_DOUBLE_EQ(*t->SumMeans({}), 0.0);
}

TEST(LatencyTableTest, JsonSaveLoadRoundTripKeepsProvenance) {
  LatencyTableInfo info;
  info.device = "x86-2core";
  info.runtime = "libtorch-cpu 1.13";
  info.batch_size = 4;
  info.threads = 2;
  info.profiled_at = "2026-11-25T20:00:00Z";
  info.method = "50 timed runs after 10 warm-up runs";
  LatencyTable t(info);
  ASSERT_TRUE(t.Insert(kStem, {50, 0.123456789012345, 1.5e-5}).ok());
  ASSERT_TRUE(t.Insert(kBlock, {7, 1.0 / 3.0, 0.0}).ok());
  ASSERT_TRUE(t.Insert(kLogits, {1, 1e-3, 2e-9}).ok());
  const std::string path = ::testing::TempDir() + "/latency_table_test_roundtrip.json";
  ASSERT_TRUE(t.Save(path).ok());

  auto back = LatencyTable::Load(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->info().device, "x86-2core");
  EXPECT_EQ(back->info().runtime, "libtorch-cpu 1.13");
  EXPECT_EQ(back->info().batch_size, 4);
  EXPECT_EQ(back->info().threads, 2);
  EXPECT_EQ(back->info().profiled_at, "2026-11-25T20:00:00Z");
  EXPECT_EQ(back->info().method, "50 timed runs after 10 warm-up runs");
  ASSERT_EQ(back->size(), 3u);
  for (const auto& [k, e] : t.entries()) {
    auto got = back->Lookup(k);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->count, e.count);
    EXPECT_EQ(got->mean_ms, e.mean_ms);  // exact: JSON doubles round-trip
    EXPECT_EQ(got->var, e.var);
  }
  EXPECT_EQ(back->ToJson(), t.ToJson());

  // The YAML import re-exported as JSON keeps every entry.
  auto yaml = LatencyTable::Load(kMobileTrim);
  ASSERT_TRUE(yaml.ok());
  auto reparsed = LatencyTable::ParseJson(yaml->ToJson());
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  EXPECT_EQ(reparsed->size(), 72u);
  EXPECT_EQ(reparsed->info().device, "mobile_trim");
  EXPECT_EQ(reparsed->ToJson(), yaml->ToJson());
}

TEST(LatencyTableTest, MalformedYamlErrorsCarryLineNumbers) {
  const std::string stem = std::string(kStem) + ":\n";
  // Missing mean (the entry starts on line 1).
  EXPECT_TRUE(
      IsError(LatencyTable::ParseYaml(stem + "  count: 3\n  var: 0.1\n" + std::string(kMix) +
                                          ":\n  count: 1\n  mean: 1.0\n  var: 0.0\n",
                                      "dev")
                  .status(),
              absl::StatusCode::kInvalidArgument, {"line 1:", kStem, "lacks", "mean"}));
  // Missing var in the last entry (line 5).
  EXPECT_TRUE(IsError(LatencyTable::ParseYaml(stem + "  count: 3\n  mean: 1\n  var: 0.1\n" +
                                                  std::string(kMix) + ":\n  count: 1\n  mean: 2\n",
                                              "dev")
                          .status(),
                      absl::StatusCode::kInvalidArgument, {"line 5:", kMix, "var"}));
  // A value that is not a number (line 3).
  EXPECT_TRUE(IsError(
      LatencyTable::ParseYaml(stem + "  count: 3\n  mean: fast\n  var: 0.1\n", "dev").status(),
      absl::StatusCode::kInvalidArgument, {"line 3:", "mean", "\"fast\"", "not a number"}));
  // Unknown field (line 2).
  EXPECT_TRUE(IsError(
      LatencyTable::ParseYaml(stem + "  stddev: 3\n  mean: 1\n  var: 0.1\n", "dev").status(),
      absl::StatusCode::kInvalidArgument, {"line 2:", "stddev"}));
  // A field before any key (line 2, after a comment).
  EXPECT_TRUE(IsError(LatencyTable::ParseYaml("# table\n  count: 3\n", "dev").status(),
                      absl::StatusCode::kInvalidArgument, {"line 2:"}));
  // A top-level line that is not "KEY:" (line 5).
  EXPECT_TRUE(
      IsError(LatencyTable::ParseYaml(stem + "  count: 3\n  mean: 1\n  var: 0.1\nnonsense\n", "dev")
                  .status(),
              absl::StatusCode::kInvalidArgument, {"line 5:"}));
  // A key outside the grammar (line 1) and non-positive numbers.
  EXPECT_TRUE(
      IsError(LatencyTable::ParseYaml(
                  "Deconv-input:1x1x1-output:1x1x1:\n  count: 1\n  mean: 1\n  var: 0\n", "dev")
                  .status(),
              absl::StatusCode::kInvalidArgument, {"line 1:", "Deconv", "unknown kind"}));
  EXPECT_TRUE(
      IsError(LatencyTable::ParseYaml(stem + "  count: 3\n  mean: 0\n  var: 0.1\n", "dev").status(),
              absl::StatusCode::kInvalidArgument, {"line 1:", "mean"}));
  // Duplicate keys (the second one starts on line 5).
  const std::string entry = stem + "  count: 3\n  mean: 1\n  var: 0.1\n";
  EXPECT_TRUE(IsError(LatencyTable::ParseYaml(entry + entry, "dev").status(),
                      absl::StatusCode::kInvalidArgument, {"line 5:", "twice"}));
  EXPECT_TRUE(IsError(LatencyTable::ParseYaml("# nothing\n\n", "dev").status(),
                      absl::StatusCode::kInvalidArgument, {"no entries"}));
  // Load names the file.
  const std::string path = ::testing::TempDir() + "/latency_table_test_bad.yaml";
  ASSERT_TRUE(WriteFile(path, stem + "  count: x\n").ok());
  EXPECT_TRUE(IsError(LatencyTable::Load(path).status(), absl::StatusCode::kInvalidArgument,
                      {path, "line 2:"}));
  EXPECT_EQ(LatencyTable::Load(::testing::TempDir() + "/no_such_table.yaml").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LatencyTableTest, YamlToleratesCommentsBlankLinesAndCrlf) {
  auto t = LatencyTable::ParseYaml(
      "# a comment\r\n" + std::string(kStem) + ":\r\n  count: 3\r\n\r\n  mean: 1.5\r\n  var: 0\r\n",
      "dev");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->size(), 1u);
  EXPECT_EQ(t->Lookup(kStem)->mean_ms, 1.5);
  EXPECT_EQ(t->info().device, "dev");
}

TEST(LatencyTableTest, MalformedJsonErrorsNameTheField) {
  EXPECT_TRUE(IsError(LatencyTable::ParseJson("{").status(), absl::StatusCode::kInvalidArgument,
                      {"latency table", "not valid JSON"}));
  EXPECT_TRUE(IsError(
      LatencyTable::ParseJson(R"({"format": "other/2", "device": "d", "entries": {}})").status(),
      absl::StatusCode::kInvalidArgument, {"format"}));
  EXPECT_TRUE(IsError(
      LatencyTable::ParseJson(R"({"format": "nas-latency-table/1", "entries": {}})").status(),
      absl::StatusCode::kInvalidArgument, {"device: missing"}));
  EXPECT_TRUE(IsError(
      LatencyTable::ParseJson(R"({"format": "nas-latency-table/1", "device": "d"})").status(),
      absl::StatusCode::kInvalidArgument, {"entries: missing"}));
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(
                          R"({"format": "nas-latency-table/1", "device": "d", "threads": 0,
                              "entries": {}})")
                          .status(),
                      absl::StatusCode::kInvalidArgument, {"threads"}));
  const std::string bad_mean = std::string(R"({"format": "nas-latency-table/1", "device": "d",
      "entries": {")") + kStem +
                               R"(": {"count": 5, "mean": -1, "var": 0}}})";
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(bad_mean).status(),
                      absl::StatusCode::kInvalidArgument, {kStem, "mean"}));
  const std::string no_var = std::string(R"({"format": "nas-latency-table/1", "device": "d",
      "entries": {")") + kStem +
                             R"(": {"count": 5, "mean": 1}}})";
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(no_var).status(), absl::StatusCode::kInvalidArgument,
                      {kStem, "var: missing"}));
  const std::string str_count = std::string(R"({"format": "nas-latency-table/1", "device": "d",
      "entries": {")") + kStem + R"(": {"count": "5", "mean": 1, "var": 0}}})";
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(str_count).status(),
                      absl::StatusCode::kInvalidArgument, {"count", "expected an integer"}));
}

TEST(LatencyTableTest, InsertValidatesKeyAndNumbers) {
  LatencyTable t;
  EXPECT_TRUE(t.Insert(kStem, {1, 0.5, 0}).ok());
  EXPECT_TRUE(IsError(t.Insert(kStem, {0, 0.5, 0}), absl::StatusCode::kInvalidArgument, {"count"}));
  EXPECT_TRUE(IsError(t.Insert(kStem, {1, 0.0, 0}), absl::StatusCode::kInvalidArgument, {"mean"}));
  EXPECT_TRUE(IsError(t.Insert(kStem, {1, NAN, 0}), absl::StatusCode::kInvalidArgument, {"mean"}));
  EXPECT_TRUE(IsError(t.Insert(kStem, {1, 0.5, -1}), absl::StatusCode::kInvalidArgument, {"var"}));
  EXPECT_TRUE(IsError(t.Insert("Conv-input:1x1x1", {1, 0.5, 0}), absl::StatusCode::kInvalidArgument,
                      {"layer key"}));
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.Lookup(kStem)->mean_ms, 0.5);
}

TEST(LayerKeyTest, ParsesEveryKindAndRoundTrips) {
  auto b = LayerKey::Parse(kBlock);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->kind, "expanded_conv");
  EXPECT_EQ(b->in_h, 56);
  EXPECT_EQ(b->in_w, 56);
  EXPECT_EQ(b->in_c, 24);
  EXPECT_EQ(b->out_h, 28);
  EXPECT_EQ(b->out_w, 28);
  EXPECT_EQ(b->out_c, 40);
  EXPECT_EQ(b->expand, 6);
  EXPECT_EQ(b->kernel, 5);
  EXPECT_EQ(b->stride, 2);
  EXPECT_EQ(b->idskip, 0);
  EXPECT_EQ(b->ToString(), kBlock);

  auto l = LayerKey::Parse(kLogits);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->kind, "Logits");
  EXPECT_EQ(l->in_c, 1280);
  EXPECT_EQ(l->out_c, 1000);
  EXPECT_EQ(l->ToString(), kLogits);

  for (const char* k : {kStem, kMix,
                        "expanded_conv-input:7x5x192-output:7x5x192-expand:3-kernel:7-stride:1-"
                        "idskip:1"}) {
    auto p = LayerKey::Parse(k);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->ToString(), k);
  }
  EXPECT_EQ(LayerKey::Parse(kMix)->kind, "Conv_1");
  EXPECT_EQ(LayerKey::Parse(kStem)->out_c, 32);
  // Field order does not matter for parsing; printing is canonical.
  auto shuffled = LayerKey::Parse(
      "expanded_conv-input:56x56x24-output:28x28x40-kernel:5-expand:6-idskip:0-stride:2");
  ASSERT_TRUE(shuffled.ok()) << shuffled.status();
  EXPECT_EQ(shuffled->ToString(), kBlock);
}

// Every key form that exists must stay valid: the paper's table, every key of every preset's
// search space, and the paper's published networks.
TEST(LayerKeyTest, EveryRealKeyIsAccepted) {
  std::vector<std::string> keys;
  LatencyTable mobile = LatencyTable::Load(kMobileTrim).value();
  for (const auto& [k, e] : mobile.entries()) keys.push_back(k);
  ASSERT_EQ(keys.size(), 72u);
  for (const std::string& name : SearchSpace::PresetNames()) {
    SearchSpace space = SearchSpace::Preset(name).value();
    std::vector<std::string> all = space.AllLayerKeys();
    keys.insert(keys.end(), all.begin(), all.end());
    std::vector<std::string> largest = space.Derive(space.LargestChoices()).value().LayerKeys();
    keys.insert(keys.end(), largest.begin(), largest.end());
  }
  for (const char* config :
       {"proxyless_cpu", "proxyless_gpu", "proxyless_mobile", "proxyless_mobile_14"}) {
    const std::string path = absl::StrCat(NAS_DATA_DIR, "/proxylessnas/", config, ".config.json");
    absl::StatusOr<NetworkConfig> net = NetworkConfig::FromReferenceJson(ReadTextFile(path));
    ASSERT_TRUE(net.ok()) << path << ": " << net.status();
    std::vector<std::string> k = net->LayerKeys();
    keys.insert(keys.end(), k.begin(), k.end());
  }
  for (const std::string& k : keys) {
    absl::StatusOr<LayerKey> p = LayerKey::Parse(k);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(p->Validate().ok()) << k;
  }
  EXPECT_GT(keys.size(), 300u);
}

TEST(LayerKeyTest, InconsistentShapesAreRefusedNamingTheProblem) {
  struct Case {
    std::string key;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      // The impossible key a service once "predicted" at 137 ms.
      {"expanded_conv-input:999x999x16-output:9x9x16-expand:3-kernel:3-stride:1-idskip:0",
       {"output 9x9 is not input 999x999 at stride 1", "expected 999x999"}},
      {"expanded_conv-input:56x56x24-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0",
       {"output 56x56 is not input 56x56 at stride 2", "expected 28x28"}},
      {"expanded_conv-input:7x7x24-output:4x7x24-expand:3-kernel:3-stride:2-idskip:0",
       {"output 4x7"}},
      {"expanded_conv-input:56x56x24-output:19x19x24-expand:3-kernel:3-stride:3-idskip:0",
       {"stride 3 is not 1 or 2"}},
      {"expanded_conv-input:56x56x24-output:28x28x24-expand:3-kernel:3-stride:2-idskip:1",
       {"idskip 1 needs stride 1 and equal input and output channels", "stride 2"}},
      {"expanded_conv-input:28x28x24-output:28x28x32-expand:3-kernel:3-stride:1-idskip:1",
       {"idskip 1 needs", "24 -> 32 channels"}},
      {"expanded_conv-input:28x28x24-output:28x28x24-expand:3-kernel:33-stride:1-idskip:1",
       {"kernel 33 is not in 1..31"}},
      {"expanded_conv-input:28x28x24-output:28x28x24-expand:33-kernel:3-stride:1-idskip:1",
       {"expand 33 is not in 1..32"}},
      {"Conv-input:224x224x3-output:56x56x32",
       {"output 56x56 is not input 224x224 at stride 1 or 2"}},
      {"Conv-input:225x224x3-output:112x112x32", {"output 112x112 is not input 225x224"}},
      {"Conv_1-input:7x7x320-output:4x4x1280", {"output 4x4 differs from input 7x7"}},
      {"Conv-input:4097x4097x3-output:4097x4097x32", {"input height 4097 is not in 1..4096"}},
      {"Conv_1-input:7x7x65537-output:7x7x1280", {"input channels 65537 is not in 1..65536"}},
      {"Conv_1-input:7x7x320-output:7x7x65537", {"output channels 65537 is not in 1..65536"}},
      {"Logits-input:7x7x1280-output:1000001", {"output classes 1000001 is not in 1..1000000"}},
      // One spelling of numbers: no sign, no spaces, at most 9 digits.
      {"Conv-input:+224x224x3-output:112x112x32", {"input is not HxWxC"}},
      {"Conv-input: 224x224x3-output:112x112x32", {"input is not HxWxC"}},
      {"Conv-input:2240000000x224x3-output:112x112x32", {"input is not HxWxC"}},
      {"expanded_conv-input:28x28x24-output:28x28x24-expand:3-kernel:3-stride:1-idskip:-1",
       {"not name:value"}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> want = c.want;
    want.push_back(c.key);
    EXPECT_TRUE(IsError(LayerKey::Parse(c.key).status(), absl::StatusCode::kInvalidArgument, want))
        << c.key;
  }
  // A hostile key: refused by length before any parsing; the message quotes only its start.
  const std::string huge = "Conv-input:" + std::string(1 << 20, '7');
  absl::Status s = LayerKey::Parse(huge).status();
  EXPECT_TRUE(
      IsError(s, absl::StatusCode::kInvalidArgument, {"1048587 bytes, over the limit of 256"}));
  EXPECT_LT(s.message().size(), 300u);
  // Control characters are escaped in the message.
  s = LayerKey::Parse("Conv\n-input:1x1x1-output:1x1x1").status();
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"Conv\\n"}));
  // A LayerKey built in code is checked the same way.
  LayerKey k = LayerKey::Parse(kBlock).value();
  k.out_h = 27;
  EXPECT_TRUE(IsError(k.Validate(), absl::StatusCode::kInvalidArgument, {"output 27x28"}));
}

TEST(LatencyTableTest, HostileYamlNumbersAreRefusedNamingTheEntry) {
  const std::string stem = std::string(kStem) + ":\n";
  struct Case {
    std::string fields;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {"  count: 3\n  mean: inf\n  var: 0.1\n", {"line 3:", ".mean", "\"inf\" is not a number"}},
      {"  count: 3\n  mean: nan\n  var: 0.1\n", {"line 3:", ".mean", "\"nan\" is not a number"}},
      {"  count: 3\n  mean: 0x10\n  var: 0.1\n", {"line 3:", "\"0x10\" is not a number"}},
      {"  count: 3\n  mean: 1e999\n  var: 0.1\n",
       {"line 3:", ".mean", "1e999 is beyond the range of a double"}},
      {"  count: 3\n  mean: 1\n  var: -1e999\n", {"line 4:", ".var", "beyond the range"}},
      {"  count: 3\n  mean: 1e300\n  var: 0.1\n", {"line 1:", ".mean", "is not a number in"}},
      {"  count: 3\n  mean: 1e-300\n  var: 0.1\n", {"line 1:", ".mean", "1e-06"}},
      {"  count: 3\n  mean: -2\n  var: 0.1\n", {"line 1:", ".mean"}},
      {"  count: 3\n  mean: 1\n  var: -0.5\n", {"line 1:", ".var"}},
      {"  count: 1e30\n  mean: 1\n  var: 0.1\n", {"line 2:", ".count", "is not in 1..1000000000"}},
      {"  count: 2.5\n  mean: 1\n  var: 0.1\n", {"line 2:", ".count", "not a whole number"}},
      {"  count: 0\n  mean: 1\n  var: 0.1\n", {"line 2:", ".count", "is not in 1.."}},
      {"  count: 3\n  count: 4\n  mean: 1\n  var: 0.1\n", {"line 3:", ".count: repeated"}},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(IsError(LatencyTable::ParseYaml(stem + c.fields, "dev").status(),
                        absl::StatusCode::kInvalidArgument, c.want))
        << c.fields;
  }
  // An inconsistent key in YAML names its line.
  EXPECT_TRUE(IsError(LatencyTable::ParseYaml("Conv-input:224x224x3-output:9x9x32:\n  count: 1\n"
                                              "  mean: 1\n  var: 0\n",
                                              "dev")
                          .status(),
                      absl::StatusCode::kInvalidArgument, {"line 1:", "output 9x9"}));
}

TEST(LatencyTableTest, HostileJsonNumbersAreRefusedNamingTheEntry) {
  auto table = [](const std::string& entry) {
    return std::string(R"({"format": "nas-latency-table/1", "device": "d", "entries": {")") +
           kStem + "\": " + entry + "}}";
  };
  struct Case {
    std::string entry;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {R"({"count": 5, "mean": 1e999, "var": 0})", {}},  // beyond a double: the JSON parser's
      {R"({"count": 5, "mean": 1e300, "var": 0})", {kStem, ".mean", "is not a number in"}},
      {R"({"count": 5, "mean": -1, "var": 0})", {kStem, ".mean"}},
      {R"({"count": 5, "mean": 1, "var": 1e13})", {kStem, ".var"}},
      {R"({"count": 5, "mean": 1, "var": -1})", {kStem, ".var"}},
      {R"({"count": 0, "mean": 1, "var": 0})", {kStem, ".count", "is not in 1.."}},
      {R"({"count": 4000000000, "mean": 1, "var": 0})", {kStem, "count"}},
      {R"({"count": 5, "mean": "1", "var": 0})", {kStem, "mean"}},
      {R"([1, 2])", {kStem, "expected an object"}},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(IsError(LatencyTable::ParseJson(table(c.entry)).status(),
                        absl::StatusCode::kInvalidArgument, c.want))
        << c.entry;
  }
  const std::string base = R"({"format": "nas-latency-table/1", "device": "d", "entries": {}, )";
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(base + R"("batch_size": 0})").status(),
                      absl::StatusCode::kInvalidArgument, {"batch_size: 0 is not in 1..65536"}));
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(base + R"("threads": 5000})").status(),
                      absl::StatusCode::kInvalidArgument, {"threads: 5000 is not in 1..4096"}));
  EXPECT_TRUE(IsError(
      LatencyTable::ParseJson(base + R"("method": ")" + std::string(5000, 'm') + "\"}").status(),
      absl::StatusCode::kInvalidArgument, {"method: 5000 bytes, over the limit of 4096"}));
  EXPECT_TRUE(IsError(LatencyTable::ParseJson("[1]").status(), absl::StatusCode::kInvalidArgument,
                      {"expected an object"}));
  // Calibration numbers are bounded too.
  LatencyTable t(LatencyTableInfo{"d", "r", 1, 1, "", ""});
  ASSERT_TRUE(t.Insert(kStem, {5, 0.5, 0}).ok());
  LatencyCalibration c;
  c.networks = 3;
  t.mutable_info().calibration = c;
  Json good = ParseJson(t.ToJson(), "t").value();
  for (auto [field, value, want] :
       {std::tuple<const char*, double, const char*>{"overhead_ms", 1e300, "overhead_ms"},
        {"networks", 2e6, "networks"},
        {"max_layers", -1, "max_layers"},
        {"min_layers", 5, "min_layers: 5 exceeds max_layers 0"},
        {"loo_rmse_ms", 1e7, "loo_rmse_ms"}}) {
    Json j = good;
    j["calibration"][field] = value;
    if (std::string(field) == "networks" || std::string(field) == "max_layers" ||
        std::string(field) == "min_layers") {
      j["calibration"][field] = static_cast<int>(value);
    }
    EXPECT_TRUE(IsError(LatencyTable::ParseJson(j.dump()).status(),
                        absl::StatusCode::kInvalidArgument, {"calibration", want}))
        << field;
  }
}

TEST(LatencyTableTest, TablesBeyondTheSizeLimitsAreRefused) {
  // Entries: Insert refuses the 65537th key (ResourceExhausted naming the limit).
  LatencyTable t(LatencyTableInfo{"big", "r", 1, 1, "", ""});
  for (size_t i = 1; i <= kMaxLatencyTableEntries; ++i) {
    ASSERT_TRUE(t.Insert(absl::StrCat("Logits-input:1x1x1-output:", i), {1, 1.0, 0}).ok()) << i;
  }
  EXPECT_TRUE(IsError(t.Insert("Logits-input:1x1x2-output:1", {1, 1.0, 0}),
                      absl::StatusCode::kResourceExhausted, {"limit of 65536 entries"}));
  // Overwriting an existing key is still fine at the limit.
  EXPECT_TRUE(t.Insert("Logits-input:1x1x1-output:1", {2, 1.0, 0}).ok());
  // The same table as JSON text: refused before any entry is inserted.
  Json j = ParseJson(t.ToJson(), "t").value();
  j["entries"]["Logits-input:1x1x2-output:1"] = {{"count", 1}, {"mean", 1.0}, {"var", 0.0}};
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(j.dump()).status(),
                      absl::StatusCode::kResourceExhausted, {"entries: 65537 entries", "65536"}));
  // Bytes: text over 16 MiB is refused before parsing, JSON and YAML alike, and by Load.
  const std::string big(kMaxLatencyTableBytes + 1, '\n');
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(big).status(), absl::StatusCode::kInvalidArgument,
                      {"over the limit of 16777216"}));
  EXPECT_TRUE(IsError(LatencyTable::ParseYaml(big, "dev").status(),
                      absl::StatusCode::kInvalidArgument, {"over the limit of 16777216"}));
  const std::string path = ::testing::TempDir() + "/big.yaml";
  {
    std::ofstream out(path);
    out << big;
  }
  EXPECT_TRUE(IsError(LatencyTable::Load(path).status(), absl::StatusCode::kInvalidArgument,
                      {path, "over the limit of 16777216"}));
  // A text of only newlines just under the limit is one pass, not millions of strings.
  EXPECT_TRUE(
      IsError(LatencyTable::ParseYaml(std::string(kMaxLatencyTableBytes, '\n'), "dev").status(),
              absl::StatusCode::kInvalidArgument, {"no entries"}));
}

TEST(LayerKeyTest, RejectsMalformedKeys) {
  struct Case {
    std::string key;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"Deconv-input:1x1x1-output:1x1x1", "unknown kind"},
      {"Conv", "expected KIND-input"},
      {"Conv-input:224x224x3-output:112x112", "output is not HxWxC"},
      {"Conv-input:224x224-output:112x112x32", "input is not HxWxC"},
      {"Conv-input:0x224x3-output:112x112x32", "input is not HxWxC"},
      {"Conv-output:112x112x32-stride:2", "missing field \"input\""},
      {"Conv-input:224x224x3-output:112x112x32-kernel:3", "unexpected field \"kernel\""},
      {"Logits-input:7x7x1280-output:7x7x1000", "number of classes"},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand:6-stride:2-idskip:0",
       "missing field \"kernel\""},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:4-stride:2-idskip:0",
       "kernel 4 is not odd"},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand:0-kernel:3-stride:2-idskip:0",
       "expand 0 is not in 1..32"},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand:x-kernel:3-stride:2-idskip:0",
       "\"expand\" is not a non-negative integer"},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand:3-kernel:3-stride:0-idskip:0",
       "stride 0 is not 1 or 2"},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand:3-kernel:3-stride:2-idskip:2",
       "idskip 2 is not 0 or 1"},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand:3-kernel:3-kernel:5-stride:2-idskip:0",
       "repeated"},
      {"expanded_conv-input:56x56x24-output:28x28x40-expand3-kernel:3-stride:2-idskip:0",
       "not name:value"},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(IsError(LayerKey::Parse(c.key).status(), absl::StatusCode::kInvalidArgument,
                        {c.key, c.want}))
        << c.key;
  }
}

// ---------------------------------------------------------------- network calibration

LatencyCalibration SomeCalibration() {
  LatencyCalibration c;
  c.overhead_ms = 0.1949123456789;
  c.per_layer_ms = 0.0031;
  c.model = "linear";
  c.networks = 20;
  c.rejected = 2;
  c.min_layers = 6;
  c.max_layers = 10;
  c.raw_rmse_ms = 0.19;
  c.rmse_ms = 0.021;
  c.loo_rmse_ms = 0.025;
  c.max_error_pct = 4.5;
  return c;
}

void ExpectSameCalibration(const LatencyCalibration& a, const LatencyCalibration& b) {
  EXPECT_EQ(a.overhead_ms, b.overhead_ms);  // exact: JSON doubles round-trip
  EXPECT_EQ(a.per_layer_ms, b.per_layer_ms);
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.networks, b.networks);
  EXPECT_EQ(a.rejected, b.rejected);
  EXPECT_EQ(a.min_layers, b.min_layers);
  EXPECT_EQ(a.max_layers, b.max_layers);
  EXPECT_EQ(a.raw_rmse_ms, b.raw_rmse_ms);
  EXPECT_EQ(a.rmse_ms, b.rmse_ms);
  EXPECT_EQ(a.loo_rmse_ms, b.loo_rmse_ms);
  EXPECT_EQ(a.max_error_pct, b.max_error_pct);
}

TEST(LatencyCalibrationTest, RoundTripsThroughJsonAndFile) {
  LatencyTable t(LatencyTableInfo{"x86-2core", "libtorch-cpu 1.13", 1, 2, "", "m"});
  ASSERT_TRUE(t.Insert(kStem, {50, 0.25, 1e-5}).ok());
  t.mutable_info().calibration = SomeCalibration();
  const std::string path = ::testing::TempDir() + "/latency_table_test_calibration.json";
  ASSERT_TRUE(t.Save(path).ok());
  Json j = ParseJson(ReadFile(path).value(), path).value();
  ASSERT_TRUE(j.contains("calibration"));
  EXPECT_EQ(j["calibration"]["model"], "linear");
  auto back = LatencyTable::Load(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->info().calibration.has_value());
  ExpectSameCalibration(*back->info().calibration, SomeCalibration());
  EXPECT_EQ(back->ToJson(), t.ToJson());
}

TEST(LatencyCalibrationTest, TablesWithoutCalibrationLoadAndPredictTheLayerSum) {
  // A table written before calibration existed: no "calibration" member.
  const std::string old = std::string(R"({"format": "nas-latency-table/1", "device": "d",
      "runtime": "r", "batch_size": 1, "threads": 2, "profiled_at": "", "method": "old",
      "entries": {")") + kStem + R"(": {"count": 5, "mean": 0.5, "var": 0},
      ")" + kMix + R"(": {"count": 5, "mean": 0.25, "var": 0}}})";
  auto t = LatencyTable::ParseJson(old);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE(t->info().calibration.has_value());
  EXPECT_EQ(t->NetworkCorrection(7), 0.0);
  EXPECT_DOUBLE_EQ(t->PredictNetwork({kStem, kMix}).value(), 0.75);
  EXPECT_FALSE(ParseJson(t->ToJson(), "t").value().contains("calibration"));
  // An explicit null reads as none.
  Json j = ParseJson(old, "old").value();
  j["calibration"] = nullptr;
  EXPECT_FALSE(LatencyTable::ParseJson(j.dump()).value().info().calibration.has_value());
  // The YAML import has none.
  EXPECT_FALSE(LatencyTable::Load(kMobileTrim).value().info().calibration.has_value());

  // With one: sum + overhead + per_layer * layers.
  t->mutable_info().calibration = SomeCalibration();
  EXPECT_DOUBLE_EQ(t->NetworkCorrection(2), 0.1949123456789 + 2 * 0.0031);
  EXPECT_DOUBLE_EQ(t->PredictNetwork({kStem, kMix}).value(), 0.75 + 0.1949123456789 + 2 * 0.0031);
  EXPECT_EQ(t->PredictNetwork({kStem, kLogits}).status().code(), absl::StatusCode::kNotFound);
}

TEST(LatencyCalibrationTest, MalformedCalibrationErrorsNameTheField) {
  LatencyTable t(LatencyTableInfo{"d", "r", 1, 1, "", ""});
  ASSERT_TRUE(t.Insert(kStem, {5, 0.5, 0}).ok());
  t.mutable_info().calibration = SomeCalibration();
  const Json good = ParseJson(t.ToJson(), "t").value();
  struct Case {
    std::string field;
    Json value;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"overhead_ms", "fast", "calibration.overhead_ms"},
      {"networks", 0, "calibration.networks"},
      {"model", "cubic", "calibration.model"},
      {"rmse_ms", -1.0, "calibration"},
      {"rejected", -1, "calibration.rejected"},
  };
  for (const Case& c : cases) {
    Json j = good;
    j["calibration"][c.field] = c.value;
    EXPECT_TRUE(IsError(LatencyTable::ParseJson(j.dump()).status(),
                        absl::StatusCode::kInvalidArgument, {c.want}))
        << c.field;
  }
  Json missing = good;
  missing["calibration"].erase("overhead_ms");
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(missing.dump()).status(),
                      absl::StatusCode::kInvalidArgument, {"calibration.overhead_ms: missing"}));
  Json constant = good;
  constant["calibration"]["model"] = "constant";  // with a per-layer term
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(constant.dump()).status(),
                      absl::StatusCode::kInvalidArgument, {"per_layer_ms"}));
  Json not_object = good;
  not_object["calibration"] = 0.2;
  EXPECT_TRUE(IsError(LatencyTable::ParseJson(not_object.dump()).status(),
                      absl::StatusCode::kInvalidArgument, {"calibration: expected an object"}));
}

// Synthetic networks: measured = layer sum + overhead + per_layer * layers + noise.
std::vector<CalibrationSample> Synthetic(double overhead, double per_layer, double noise_ms,
                                         int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<CalibrationSample> out;
  for (int i = 0; i < n; ++i) {
    CalibrationSample s;
    s.layers = 5 + static_cast<int>(rng.Below(6));  // 5..10 layers
    s.layer_sum_ms = 0.08 * s.layers + 0.05 * rng.Uniform();
    s.measured_ms = s.layer_sum_ms + overhead + per_layer * s.layers + noise_ms * rng.Normal();
    out.push_back(s);
  }
  return out;
}

TEST(LatencyCalibrationTest, FittingRecoversAKnownConstantOverhead) {
  // Exact data: the constant is recovered exactly and the residual is 0.
  auto exact = FitCalibration(Synthetic(0.17, 0.0, 0.0, 12, 1));
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->model, "constant");
  EXPECT_NEAR(exact->overhead_ms, 0.17, 1e-12);
  EXPECT_EQ(exact->per_layer_ms, 0.0);
  EXPECT_NEAR(exact->rmse_ms, 0.0, 1e-12);
  EXPECT_NEAR(exact->raw_rmse_ms, 0.17, 1e-12);
  EXPECT_EQ(exact->networks, 12);
  EXPECT_GE(exact->min_layers, 5);
  EXPECT_LE(exact->max_layers, 10);
  // Timing noise of 0.01 ms: within a few standard errors (0.01 / sqrt(40) = 0.0016), and the
  // per-layer term is not worth its coefficient.
  for (uint64_t seed : {2, 3, 4, 5}) {
    auto noisy = FitCalibration(Synthetic(0.17, 0.0, 0.01, 40, seed));
    ASSERT_TRUE(noisy.ok()) << noisy.status();
    EXPECT_EQ(noisy->model, "constant") << seed;
    EXPECT_NEAR(noisy->overhead_ms, 0.17, 0.006) << seed;
    EXPECT_NEAR(noisy->rmse_ms, 0.01, 0.004) << seed;
    EXPECT_GT(noisy->loo_rmse_ms, noisy->rmse_ms) << seed;
    EXPECT_LT(noisy->max_error_pct, 10.0) << seed;
  }
  // One network: its residual.
  auto one = FitCalibration(Synthetic(0.2, 0.0, 0.0, 1, 6));
  ASSERT_TRUE(one.ok());
  EXPECT_NEAR(one->overhead_ms, 0.2, 1e-12);
  EXPECT_EQ(one->loo_rmse_ms, 0.0);
}

TEST(LatencyCalibrationTest, FittingRecoversAPerLayerTermWhenThereIsOne) {
  auto fit = FitCalibration(Synthetic(0.05, 0.03, 0.002, 30, 7));
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_EQ(fit->model, "linear");
  EXPECT_NEAR(fit->overhead_ms, 0.05, 0.01);
  EXPECT_NEAR(fit->per_layer_ms, 0.03, 0.0015);
  EXPECT_LT(fit->rmse_ms, 0.004);
  // All networks with the same layer count: the per-layer term is not identifiable.
  std::vector<CalibrationSample> same = Synthetic(0.05, 0.03, 0.002, 10, 8);
  for (CalibrationSample& s : same) {
    s.measured_ms += 0.03 * (7 - s.layers);
    s.layers = 7;
  }
  auto constant = FitCalibration(same);
  ASSERT_TRUE(constant.ok());
  EXPECT_EQ(constant->model, "constant");
  EXPECT_NEAR(constant->overhead_ms, 0.05 + 0.03 * 7, 0.003);
}

TEST(LatencyCalibrationTest, NetworksSlowedByOtherProcessesAreLeftOut) {
  // 5 of 20 networks measured while another process held a core: 1.6x to 3x slower.
  std::vector<CalibrationSample> samples = Synthetic(0.17, 0.0, 0.005, 20, 9);
  const double slow[] = {1.6, 2.0, 3.0, 1.7, 2.5};
  for (int i = 0; i < 5; ++i) samples[3 * i + 1].measured_ms *= slow[i];
  auto fit = FitCalibration(samples);
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_EQ(fit->rejected, 5);
  EXPECT_EQ(fit->networks, 15);
  EXPECT_EQ(fit->model, "constant");
  EXPECT_NEAR(fit->overhead_ms, 0.17, 0.005);
  EXPECT_LT(fit->max_error_pct, 5.0);
  // Without them the least-squares overhead would be far off.
  std::vector<CalibrationSample> clean;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (i % 3 != 1 || i > 13) clean.push_back(samples[i]);
  }
  EXPECT_EQ(FitCalibration(clean)->rejected, 0);
  EXPECT_NEAR(FitCalibration(clean)->overhead_ms, fit->overhead_ms, 1e-12);
}

TEST(LatencyCalibrationTest, ANegativePerLayerTermIsNotKept) {
  // Residuals falling with the layer count (the machine got slower while the small networks
  // were measured): a line fits them exactly, but it would predict negative latency for small
  // networks, so the constant model is kept.
  auto fit = FitCalibration(Synthetic(0.32, -0.067, 0.0, 20, 10));
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_EQ(fit->model, "constant");
  EXPECT_EQ(fit->per_layer_ms, 0.0);
}

TEST(LatencyCalibrationTest, ScatteredMeasurementsKeepTheMedianNetwork) {
  // An even count whose two middle ratios lie more than band^2 apart (a machine whose speed
  // changed mid-way): the fit keeps the median network instead of being left with none (this
  // crashed the profiler under a loaded `ctest -j 2`).
  auto two = FitCalibration({{0.5, 7, 0.5}, {0.5, 7, 1.0}});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->networks, 1);
  EXPECT_EQ(two->rejected, 1);
  EXPECT_NEAR(two->overhead_ms, 0.0, 1e-12);
  auto four = FitCalibration({{0.5, 7, 0.5}, {0.5, 6, 0.52}, {0.5, 5, 1.0}, {0.5, 7, 1.05}});
  ASSERT_TRUE(four.ok()) << four.status();
  EXPECT_EQ(four->networks, 2);
  EXPECT_EQ(four->rejected, 2);
  EXPECT_EQ(four->min_layers, 6);
  EXPECT_EQ(four->max_layers, 7);
}

TEST(LatencyCalibrationTest, FittingRejectsBadInput) {
  EXPECT_TRUE(IsError(FitCalibration({}).status(), absl::StatusCode::kInvalidArgument,
                      {"no networks"}));
  EXPECT_TRUE(IsError(FitCalibration({{0.5, 7, 0.6}, {0.5, 7, -1.0}}).status(),
                      absl::StatusCode::kInvalidArgument, {"network 1"}));
  EXPECT_TRUE(IsError(FitCalibration({{0.5, 0, 0.6}}).status(),
                      absl::StatusCode::kInvalidArgument, {"network 0"}));
}

TEST(LatencyCalibrationTest, LatencyModelAddsTheCalibration) {
  SearchSpace s = SearchSpace::Preset("fashion-mnist").value();
  LatencyTable t(LatencyTableInfo{"x86-test", "r", 1, 2, "", ""});
  double ms = 0.05;
  for (const std::string& k : s.AllLayerKeys()) {
    ASSERT_TRUE(t.Insert(k, {10, ms, 0}).ok());
    ms += 0.003;
  }
  LatencyModel plain = BuildLatencyModel(s, t).value();
  LatencyCalibration c;
  c.overhead_ms = 0.19;
  c.per_layer_ms = 0.004;
  c.model = "linear";
  c.networks = 12;
  t.mutable_info().calibration = c;
  LatencyModel calibrated = BuildLatencyModel(s, t).value();
  const int fixed_layers = static_cast<int>(s.FixedLayerKeys().size());
  EXPECT_NEAR(calibrated.fixed_ms(), plain.fixed_ms() + 0.19 + 0.004 * fixed_layers, 1e-12);
  Rng rng(3);
  ArchParams uniform(s.CandidatesPerEdge());
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<int> choices = uniform.SamplePath(rng);
    NetworkConfig net = s.Derive(choices).value();
    const std::vector<std::string> keys = net.LayerKeys();
    // The model's path latency is the table's network prediction: layer sum + correction.
    EXPECT_NEAR(calibrated.PathLatency(choices), t.PredictNetwork(keys).value(), 1e-12) << trial;
    EXPECT_NEAR(calibrated.PathLatency(choices) - plain.PathLatency(choices),
                0.19 + 0.004 * static_cast<double>(keys.size()), 1e-12)
        << trial;
  }
  // Zero stays free; every other candidate carries the per-layer term.
  for (size_t e = 0; e < s.edges().size(); ++e) {
    for (size_t i = 0; i < s.edges()[e].candidates.size(); ++i) {
      const double d = calibrated.edge_ms()[e][i] - plain.edge_ms()[e][i];
      EXPECT_NEAR(d, s.edges()[e].candidates[i].zero ? 0.0 : 0.004, 1e-12);
    }
  }
  // The expected latency shifts by the constant part for a constant calibration.
  c.per_layer_ms = 0;
  c.model = "constant";
  t.mutable_info().calibration = c;
  EXPECT_NEAR(BuildLatencyModel(s, t).value().Expected(uniform), plain.Expected(uniform) + 0.19,
              1e-12);
  // A calibration from a busy machine that predicts a non-positive latency is refused.
  c.overhead_ms = -50;
  t.mutable_info().calibration = c;
  EXPECT_TRUE(IsError(BuildLatencyModel(s, t).status(), absl::StatusCode::kFailedPrecondition,
                      {"x86-test", "calibration", "profile again"}));
}

}  // namespace
}  // namespace nas
