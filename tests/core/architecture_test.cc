#include "core/architecture.h"

#include <string>
#include <vector>

#include "core/json_fields.h"
#include "core/rng.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

const std::string kDir = std::string(NAS_DATA_DIR) + "/proxylessnas/";

SearchSpace Space(const std::string& name) {
  auto s = SearchSpace::Preset(name);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

std::string ReadConfig(const std::string& name) {
  auto text = ReadFile(kDir + "proxyless_" + name + ".config.json");
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

// proxyless_mobile.config.json with its second stage at the search space's 24 channels (the
// published model widened it to 32 after the search; see network_config_test.cc).
Json MobileAtSearchWidths() {
  Json j = Json::parse(ReadConfig("mobile"));
  j["blocks"][1]["mobile_inverted_conv"]["out_channels"] = 24;
  j["blocks"][2]["mobile_inverted_conv"]["in_channels"] = 24;
  j["blocks"][2]["mobile_inverted_conv"]["out_channels"] = 24;
  j["blocks"][5]["mobile_inverted_conv"]["in_channels"] = 24;
  return j;
}

TEST(ArchitectureTest, JsonRoundTrip) {
  for (const std::string& name : SearchSpace::PresetNames()) {
    SCOPED_TRACE(name);
    SearchSpace s = Space(name);
    Rng rng(static_cast<uint64_t>(name.size()));
    Architecture a;
    a.space = s.name();
    for (const EdgeSpec& e : s.edges()) {
      a.choices.push_back(static_cast<int>(rng.Below(e.candidates.size())));
    }
    std::string text = a.ToJson(s);
    auto back = Architecture::FromJson(text, s);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, a);
    EXPECT_EQ(back->ToJson(s), text);
  }
  SearchSpace fm = Space("fashion-mnist");
  Architecture a{"fashion-mnist", {0, 6, 5, 6, 2, 3, 1}};
  // Edges 1, 3, 5 are the shortcut edges of the fashion-mnist space: 6 is Zero there.
  EXPECT_EQ(a.ToString(fm),
            "3x3_MBConv3 | Zero | 7x7_MBConv6 | Zero | 5x5_MBConv3 | 5x5_MBConv6 | 3x3_MBConv6");
  Json j = Json::parse(a.ToJson(fm));
  EXPECT_EQ(j["space"], "fashion-mnist");
  EXPECT_EQ(j["choices"][1], "Zero");
  EXPECT_EQ(j["choices"][2], "7x7_MBConv6");
}

TEST(ArchitectureTest, FromJsonErrorsNameTheField) {
  SearchSpace fm = Space("fashion-mnist");
  auto load = [&](const std::string& text) { return Architecture::FromJson(text, fm).status(); };
  const std::string good_tail = R"("3x3_MBConv3", "Zero", "7x7_MBConv6", "Zero", "5x5_MBConv3",
      "5x5_MBConv6", "3x3_MBConv6"])";
  ASSERT_TRUE(load(R"({"space": "fashion-mnist", "choices": [)" + good_tail + "}").ok());
  EXPECT_TRUE(IsError(load(R"({"space": "cifar10", "choices": [)" + good_tail + "}"),
                      absl::StatusCode::kInvalidArgument, {"space", "cifar10", "fashion-mnist"}));
  EXPECT_TRUE(
      IsError(load(R"({"choices": []})"), absl::StatusCode::kInvalidArgument, {"space: missing"}));
  EXPECT_TRUE(IsError(load(R"({"space": "fashion-mnist", "choices": ["Zero"]})"),
                      absl::StatusCode::kInvalidArgument, {"choices", "1 entries for 7 edges"}));
  EXPECT_TRUE(IsError(load(R"({"space": "fashion-mnist", "choices": "Zero"})"),
                      absl::StatusCode::kInvalidArgument, {"choices: expected a list"}));
  EXPECT_TRUE(IsError(load(R"({"space": "fashion-mnist", "choices": [0, 1, 2, 3, 4, 5, 6]})"),
                      absl::StatusCode::kInvalidArgument, {"choices[0]", "candidate name"}));
  // Edge 0 (16 -> 24, stride 2) has no Zero.
  EXPECT_TRUE(IsError(load(R"({"space": "fashion-mnist", "choices": ["Zero", "Zero",
      "7x7_MBConv6", "Zero", "5x5_MBConv3", "5x5_MBConv6", "3x3_MBConv6"]})"),
                      absl::StatusCode::kInvalidArgument,
                      {"choices[0]", "\"Zero\" is not a candidate"}));
  // A well-formed name that the space does not offer.
  EXPECT_TRUE(IsError(load(R"({"space": "fashion-mnist", "choices": ["3x3_MBConv3", "Zero",
      "9x9_MBConv6", "Zero", "5x5_MBConv3", "5x5_MBConv6", "3x3_MBConv6"]})"),
                      absl::StatusCode::kInvalidArgument,
                      {"choices[2]", "9x9_MBConv6", "not a candidate"}));
  // A name outside the grammar.
  EXPECT_TRUE(IsError(load(R"({"space": "fashion-mnist", "choices": ["3x3_MBConv3", "Zero",
      "SepConv7", "Zero", "5x5_MBConv3", "5x5_MBConv6", "3x3_MBConv6"]})"),
                      absl::StatusCode::kInvalidArgument, {"choices[2]", "SepConv7"}));
  EXPECT_TRUE(IsError(load("not json"), absl::StatusCode::kInvalidArgument,
                      {"architecture", "not valid JSON"}));
}

TEST(ArchitectureTest, ReferenceMobileConfigAtSearchWidthsImports) {
  SearchSpace s = Space("proxyless-imagenet");
  Json config = MobileAtSearchWidths();
  auto a = Architecture::FromReferenceConfig(config.dump(), s);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->space, "proxyless-imagenet");
  // Read off proxyless_mobile.config.json blocks[1..21]; candidate order per edge is
  // 3x3_MBConv3, 3x3_MBConv6, 5x5_MBConv3, 5x5_MBConv6, 7x7_MBConv3, 7x7_MBConv6, Zero.
  const std::vector<std::string> want = {
      "5x5_MBConv3", "3x3_MBConv3", "Zero",        "Zero",        "7x7_MBConv3", "3x3_MBConv3",
      "5x5_MBConv3", "5x5_MBConv3", "7x7_MBConv6", "5x5_MBConv3", "5x5_MBConv3", "5x5_MBConv3",
      "5x5_MBConv6", "5x5_MBConv3", "5x5_MBConv3", "5x5_MBConv3", "7x7_MBConv6", "7x7_MBConv6",
      "7x7_MBConv3", "7x7_MBConv3", "7x7_MBConv6"};
  ASSERT_EQ(a->choices.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(s.edges()[i].candidates[a->choices[i]].Name(), want[i]) << "edge " << i;
  }
  EXPECT_EQ(a->choices[0], 2);
  EXPECT_EQ(a->choices[2], 6);
  EXPECT_EQ(a->choices[3], 6);

  // Deriving the imported architecture gives back the same network.
  auto derived = s.Derive(a->choices);
  ASSERT_TRUE(derived.ok()) << derived.status();
  auto direct = NetworkConfig::FromReferenceJson(config.dump());
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(derived->ToReferenceJson(), direct->ToReferenceJson());
  EXPECT_EQ(derived->LayerKeys(), direct->LayerKeys());
  EXPECT_EQ(derived->ParameterCount(), direct->ParameterCount());

  // And it survives the JSON round trip.
  auto back = Architecture::FromJson(a->ToJson(s), s);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, *a);
}

TEST(ArchitectureTest, ConfigsFromOtherSpacesAreRejectedNamingTheLayer) {
  SearchSpace s = Space("proxyless-imagenet");
  // The published mobile model widened stage 2 to 32 channels: edge 0 (blocks[1]) does not fit.
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(ReadConfig("mobile"), s).status(),
                      absl::StatusCode::kInvalidArgument,
                      {"blocks[1]", "16->32", "edge 0", "16->24"}));
  // The GPU model's widths differ from the first layer on (stem 40, not 32).
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(ReadConfig("gpu"), s).status(),
                      absl::StatusCode::kInvalidArgument, {"first_conv.out_channels", "40", "32"}));
  EXPECT_FALSE(Architecture::FromReferenceConfig(ReadConfig("cpu"), s).ok());
  // mobile_14 against the 1.4x space: the stem (48) and first block (24) fit, stage 2 does not
  // (published 40, space make_divisible(24 * 1.4) = 32).
  Json j = Json::parse(s.ToJson());
  j["width_mult"] = 1.4;
  auto wide = SearchSpace::FromJson(j.dump());
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(ReadConfig("mobile_14"), *wide).status(),
                      absl::StatusCode::kInvalidArgument, {"blocks[1]", "24->40", "24->32"}));
  // A config for another data set's space.
  EXPECT_TRUE(IsError(
      Architecture::FromReferenceConfig(MobileAtSearchWidths().dump(), Space("cifar10")).status(),
      absl::StatusCode::kInvalidArgument, {"blocks: 22 blocks", "cifar10", "16 edges"}));
}

TEST(ArchitectureTest, ReferenceConfigWithUnknownCandidatesIsRejected) {
  SearchSpace s = Space("proxyless-imagenet");
  Json j = MobileAtSearchWidths();
  j["blocks"][6]["mobile_inverted_conv"]["kernel_size"] = 9;
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(j.dump(), s).status(),
                      absl::StatusCode::kInvalidArgument,
                      {"blocks[6]", "9x9_MBConv3", "not a candidate of edge 5"}));
  j = MobileAtSearchWidths();
  j["blocks"][13]["mobile_inverted_conv"]["expand_ratio"] = 4;
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(j.dump(), s).status(),
                      absl::StatusCode::kInvalidArgument, {"blocks[13]", "5x5_MBConv4"}));
  // Zero where the space offers none.
  Json no_zero = Json::parse(s.ToJson());
  no_zero["candidates"]["zero"] = false;
  auto plain = SearchSpace::FromJson(no_zero.dump());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(
      IsError(Architecture::FromReferenceConfig(MobileAtSearchWidths().dump(), *plain).status(),
              absl::StatusCode::kInvalidArgument, {"blocks[3]", "Zero", "edge 2"}));
}

TEST(ArchitectureTest, ReferenceConfigMustMatchTheFixedLayers) {
  SearchSpace s = Space("proxyless-imagenet");
  Json j = MobileAtSearchWidths();
  j["blocks"][0]["mobile_inverted_conv"]["kernel_size"] = 5;  // the space's first block is 3x3
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(j.dump(), s).status(),
                      absl::StatusCode::kInvalidArgument, {"blocks[0]", "fixed block"}));
  j = MobileAtSearchWidths();
  j["first_conv"]["kernel_size"] = 5;
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(j.dump(), s).status(),
                      absl::StatusCode::kInvalidArgument,
                      {"first_conv", "kernel 5", "the space has 3, 3, 2"}));
  j = MobileAtSearchWidths();
  j["feature_mix_layer"]["out_channels"] = 1536;
  j["classifier"]["in_features"] = 1536;
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(j.dump(), s).status(),
                      absl::StatusCode::kInvalidArgument,
                      {"feature_mix_layer.out_channels", "1536", "1280"}));
  j = MobileAtSearchWidths();
  j["classifier"]["out_features"] = 10;
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(j.dump(), s).status(),
                      absl::StatusCode::kInvalidArgument, {"classifier.out_features", "10"}));
  j = MobileAtSearchWidths();
  j["blocks"].erase(3);  // drop a Zero block: 21 blocks for 1 fixed + 21 edges
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig(j.dump(), s).status(),
                      absl::StatusCode::kInvalidArgument, {"blocks: 21 blocks", "21 edges"}));
  EXPECT_TRUE(IsError(Architecture::FromReferenceConfig("{", s).status(),
                      absl::StatusCode::kInvalidArgument, {"not valid JSON"}));
}

}  // namespace
}  // namespace nas
