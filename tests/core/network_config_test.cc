#include "core/network_config.h"

#include <string>
#include <vector>

#include "core/json_fields.h"
#include "core/latency_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

using ::testing::UnorderedElementsAre;

const std::string kDir = std::string(NAS_DATA_DIR) + "/proxylessnas/";

std::string ReadConfig(const std::string& name) {
  auto text = ReadFile(kDir + "proxyless_" + name + ".config.json");
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

NetworkConfig LoadConfig(const std::string& name) {
  auto net = NetworkConfig::FromReferenceJson(ReadConfig(name));
  EXPECT_TRUE(net.ok()) << name << ": " << net.status();
  return net.ok() ? *net : NetworkConfig();
}

// proxyless_mobile.config.json with its second stage narrowed from 32 to 24 channels, i.e. the
// same choices inside the searched ImageNet space (whose widths mobile_trim.yaml was profiled
// at). The published mobile model widened that stage after the search.
std::string MobileAtSearchWidths() {
  Json j = Json::parse(ReadConfig("mobile"));
  j["blocks"][1]["mobile_inverted_conv"]["out_channels"] = 24;
  j["blocks"][2]["mobile_inverted_conv"]["in_channels"] = 24;
  j["blocks"][2]["mobile_inverted_conv"]["out_channels"] = 24;
  j["blocks"][2]["shortcut"]["in_channels"] = 24;
  j["blocks"][2]["shortcut"]["out_channels"] = 24;
  j["blocks"][5]["mobile_inverted_conv"]["in_channels"] = 24;
  return j.dump();
}

struct ReferenceFacts {
  std::string name;
  int stem, zeros, feature_mix, last_block_out;
  int64_t params, macs;
};

// Parameter and MAC counts computed once, independently of this code, by a short python3
// script over the JSON files with the reference construction: stem conv k*k*in*out + BN (2*out);
// per MBConv block: 1x1 expand in*mid + BN 2*mid (omitted at expand 1), depthwise mid*k*k + BN
// 2*mid, 1x1 project mid*out + BN 2*out, mid = round(in*expand), no conv biases, ZeroLayer 0;
// feature mix in*out + BN 2*out; linear in*out + out (bias). MACs: the same convs times their
// output size (expand conv at the input size), linear in*out. They match the paper's figures
// (mobile 4.1M params / 320M MACs, gpu 7.1M / 465M, cpu 4.4M, mobile_14 6.9M).
const std::vector<ReferenceFacts> kFacts = {
    {"mobile", 32, 2, 1280, 320, 4080512, 320427584},
    {"gpu", 40, 8, 1728, 432, 7119848, 465260160},
    {"cpu", 40, 2, 1432, 360, 4361648, 439243864},
    {"mobile_14", 48, 2, 1792, 448, 6857568, 580883408},
};

TEST(NetworkConfigTest, ReadsAllFourReferenceConfigs) {
  for (const ReferenceFacts& f : kFacts) {
    SCOPED_TRACE(f.name);
    NetworkConfig net = LoadConfig(f.name);
    EXPECT_EQ(net.blocks.size(), 22u);
    EXPECT_EQ(net.input_channels, 3);
    EXPECT_EQ(net.stem_channels, f.stem);
    EXPECT_EQ(net.stem_kernel, 3);
    EXPECT_EQ(net.stem_stride, 2);
    int zeros = 0, shortcuts = 0;
    for (const BlockConfig& b : net.blocks) {
      zeros += b.zero;
      shortcuts += b.shortcut;
    }
    EXPECT_EQ(zeros, f.zeros);
    EXPECT_EQ(shortcuts, 15);
    EXPECT_EQ(net.blocks[0].expand, 1);
    EXPECT_FALSE(net.blocks[0].shortcut);
    EXPECT_EQ(net.blocks.back().out_channels, f.last_block_out);
    EXPECT_EQ(net.feature_mix_channels, f.feature_mix);
    EXPECT_EQ(net.final_channels(), f.feature_mix);
    EXPECT_EQ(net.final_height(), 7);
    EXPECT_EQ(net.final_width(), 7);
    EXPECT_EQ(net.num_classes, 1000);
    EXPECT_EQ(net.bn_momentum, 0.1);
    EXPECT_EQ(net.bn_eps, 1e-3);
    EXPECT_TRUE(net.Validate().ok());
    EXPECT_EQ(net.ParameterCount(), f.params);
    EXPECT_EQ(net.Macs(), f.macs);
  }
}

TEST(NetworkConfigTest, MobileBlocksAsPublished) {
  NetworkConfig net = LoadConfig("mobile");
  // blocks[1]: 16->32 5x5 MBConv3 stride 2; blocks[3], [4]: Zero; blocks[21]: 192->320 7x7 MBConv6.
  EXPECT_EQ(net.blocks[1].in_channels, 16);
  EXPECT_EQ(net.blocks[1].out_channels, 32);
  EXPECT_EQ(net.blocks[1].kernel, 5);
  EXPECT_EQ(net.blocks[1].expand, 3);
  EXPECT_EQ(net.blocks[1].stride, 2);
  EXPECT_EQ(net.blocks[1].in_height, 112);
  EXPECT_EQ(net.blocks[1].out_height(), 56);
  EXPECT_TRUE(net.blocks[3].zero);
  EXPECT_TRUE(net.blocks[4].zero);
  EXPECT_TRUE(net.blocks[3].shortcut);
  EXPECT_EQ(net.blocks[3].in_channels, 32);
  EXPECT_EQ(net.blocks[21].in_channels, 192);
  EXPECT_EQ(net.blocks[21].out_channels, 320);
  EXPECT_EQ(net.blocks[21].kernel, 7);
  EXPECT_EQ(net.blocks[21].expand, 6);
  EXPECT_EQ(net.blocks[21].in_height, 7);
}

TEST(NetworkConfigTest, MobileLatencyUnderTheMobileTable) {
  auto table = LatencyTable::Load(kDir + "mobile_trim.yaml");
  ASSERT_TRUE(table.ok()) << table.status();

  // The published model: 23 layer keys (22 blocks minus 2 Zero, + stem, mix, logits). The table
  // was profiled at the search space's widths, so the three layers touching the published
  // model's widened 32-channel second stage are not in it.
  NetworkConfig published = LoadConfig("mobile");
  std::vector<std::string> keys = published.LayerKeys();
  EXPECT_EQ(keys.size(), 23u);
  std::vector<std::string> missing;
  for (const std::string& k : keys) {
    if (!table->Contains(k)) missing.push_back(k);
  }
  EXPECT_THAT(
      missing,
      UnorderedElementsAre(
          "expanded_conv-input:112x112x16-output:56x56x32-expand:3-kernel:5-stride:2-idskip:0",
          "expanded_conv-input:56x56x32-output:56x56x32-expand:3-kernel:3-stride:1-idskip:1",
          "expanded_conv-input:56x56x32-output:28x28x40-expand:3-kernel:7-stride:2-idskip:0"));
  EXPECT_EQ(table->SumMeans(keys).status().code(), absl::StatusCode::kNotFound);

  // At the search widths every key is in the table, and the latency is the sum of their means:
  // 82.52386035896993 ms, summed by python3 straight from mobile_trim.yaml.
  auto narrowed = NetworkConfig::FromReferenceJson(MobileAtSearchWidths());
  ASSERT_TRUE(narrowed.ok()) << narrowed.status();
  keys = narrowed->LayerKeys();
  ASSERT_EQ(keys.size(), 23u);
  EXPECT_EQ(keys.front(), "Conv-input:224x224x3-output:112x112x32");
  EXPECT_EQ(keys[1],
            "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0");
  EXPECT_EQ(keys[keys.size() - 2], "Conv_1-input:7x7x320-output:7x7x1280");
  EXPECT_EQ(keys.back(), "Logits-input:7x7x1280-output:1000");
  double sum = 0;
  for (const std::string& k : keys) {
    auto e = table->Lookup(k);
    ASSERT_TRUE(e.ok()) << e.status();
    sum += e->mean_ms;
  }
  auto total = table->SumMeans(keys);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_DOUBLE_EQ(*total, sum);
  EXPECT_NEAR(*total, 82.52386035896993, 1e-9);
}

TEST(NetworkConfigTest, ToReferenceJsonRoundTrips) {
  for (const ReferenceFacts& f : kFacts) {
    SCOPED_TRACE(f.name);
    const std::string original_text = ReadConfig(f.name);
    NetworkConfig net = LoadConfig(f.name);
    std::string text = net.ToReferenceJson();
    auto back = NetworkConfig::FromReferenceJson(text);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->ToReferenceJson(), text);
    EXPECT_EQ(back->LayerKeys(), net.LayerKeys());
    EXPECT_EQ(back->ParameterCount(), f.params);
    // The fields the reference reads back are the original ones.
    Json mine = Json::parse(text), orig = Json::parse(original_text);
    EXPECT_EQ(mine["name"], "ProxylessNASNets");
    EXPECT_EQ(mine["bn"], orig["bn"]);
    for (const char* k : {"name", "in_channels", "out_channels", "kernel_size", "stride"}) {
      EXPECT_EQ(mine["first_conv"][k], orig["first_conv"][k]) << k;
      EXPECT_EQ(mine["feature_mix_layer"][k], orig["feature_mix_layer"][k]) << k;
    }
    for (const char* k : {"name", "in_features", "out_features", "bias"}) {
      EXPECT_EQ(mine["classifier"][k], orig["classifier"][k]) << k;
    }
    ASSERT_EQ(mine["blocks"].size(), orig["blocks"].size());
    for (size_t i = 0; i < orig["blocks"].size(); ++i) {
      const Json& a = mine["blocks"][i];
      const Json& b = orig["blocks"][i];
      EXPECT_EQ(a["name"], b["name"]);
      EXPECT_EQ(a["shortcut"].is_null(), b["shortcut"].is_null()) << i;
      if (!b["shortcut"].is_null()) EXPECT_EQ(a["shortcut"]["name"], "IdentityLayer");
      for (auto it = b["mobile_inverted_conv"].begin(); it != b["mobile_inverted_conv"].end();
           ++it) {
        EXPECT_EQ(a["mobile_inverted_conv"][it.key()], it.value()) << i << " " << it.key();
      }
    }
  }
}

TEST(NetworkConfigTest, InputSizeIsAParameter) {
  auto net = NetworkConfig::FromReferenceJson(ReadConfig("mobile"), 160, 128);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(net->stem_height(), 80);
  EXPECT_EQ(net->stem_width(), 64);
  EXPECT_EQ(net->final_height(), 5);
  EXPECT_EQ(net->final_width(), 4);
  EXPECT_EQ(net->LayerKeys().front(), "Conv-input:160x128x3-output:80x64x32");
  EXPECT_EQ(net->ParameterCount(), 4080512);  // parameters do not depend on the input size
}

// ---------------------------------------------------------------- malformed configs

class MalformedConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { j_ = Json::parse(ReadConfig("mobile")); }
  absl::Status Load() { return NetworkConfig::FromReferenceJson(j_.dump()).status(); }
  Json j_;
};

TEST_F(MalformedConfigTest, WrongLayerName) {
  j_["blocks"][3]["mobile_inverted_conv"]["name"] = "SepConvLayer";
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument,
                      {"blocks[3].mobile_inverted_conv.name", "SepConvLayer"}));
}

TEST_F(MalformedConfigTest, WrongBlockAndFixedLayerNames) {
  Json j = j_;
  j_["blocks"][0]["name"] = "ResidualBlock";
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument,
                      {"blocks[0].name", "MobileInvertedResidualBlock", "ResidualBlock"}));
  j_ = j;
  j_["first_conv"]["name"] = "Conv";
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"first_conv.name"}));
  j_ = j;
  j_["classifier"]["name"] = "Dense";
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"classifier.name"}));
  j_ = j;
  j_["blocks"][2]["shortcut"]["name"] = "ZeroLayer";
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks[2].shortcut.name"}));
}

TEST_F(MalformedConfigTest, ChannelMismatch) {
  Json j = j_;
  j_["blocks"][5]["mobile_inverted_conv"]["in_channels"] = 33;
  EXPECT_TRUE(
      IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks[5].in_channels", "33", "32"}));
  j_ = j;
  j_["feature_mix_layer"]["in_channels"] = 321;
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument,
                      {"feature_mix_layer.in_channels", "321"}));
  j_ = j;
  j_["classifier"]["in_features"] = 1000;
  EXPECT_TRUE(
      IsError(Load(), absl::StatusCode::kInvalidArgument, {"classifier.in_features", "1280"}));
  j_ = j;
  // A shortcut around a block that changes width.
  j_["blocks"][1]["shortcut"] = j_["blocks"][2]["shortcut"];
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks[1].shortcut"}));
  j_ = j;
  // A Zero block without its shortcut would drop the feature map.
  j_["blocks"][3]["shortcut"] = nullptr;
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks[3]", "Zero"}));
}

TEST_F(MalformedConfigTest, WrongTypesAndMissingFields) {
  Json j = j_;
  j_["blocks"][6]["mobile_inverted_conv"]["kernel_size"] = "5";
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument,
                      {"blocks[6].mobile_inverted_conv.kernel_size", "expected an integer"}));
  j_ = j;
  j_["blocks"][6]["mobile_inverted_conv"]["kernel_size"] = 4;
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks[6].kernel_size"}));
  j_ = j;
  j_["blocks"][6]["mobile_inverted_conv"].erase("expand_ratio");
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument,
                      {"blocks[6].mobile_inverted_conv.expand_ratio: missing"}));
  j_ = j;
  j_["blocks"][6].erase("shortcut");
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks[6].shortcut: missing"}));
  j_ = j;
  j_.erase("first_conv");
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"first_conv: missing"}));
  j_ = j;
  j_["blocks"] = 5;
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks"}));
  j_ = j;
  j_["blocks"][7]["mobile_inverted_conv"]["stride"] = 3;
  EXPECT_TRUE(IsError(Load(), absl::StatusCode::kInvalidArgument, {"blocks[7]"}));
}

TEST(NetworkConfigTest, BadJsonIsAnError) {
  EXPECT_TRUE(IsError(NetworkConfig::FromReferenceJson("{\"blocks\": [").status(),
                      absl::StatusCode::kInvalidArgument, {"network config", "not valid JSON"}));
  EXPECT_TRUE(IsError(NetworkConfig::FromReferenceJson("[1, 2]").status(),
                      absl::StatusCode::kInvalidArgument, {"expected an object"}));
}

// ---------------------------------------------------------------- per-block numbers and keys

TEST(NetworkConfigTest, BlockCountsByHand) {
  BlockConfig b;  // edge 0 of the ImageNet space as 7x7 MBConv6: 112x112x16 -> 56x56x24
  b.in_channels = 16;
  b.out_channels = 24;
  b.kernel = 7;
  b.expand = 6;
  b.stride = 2;
  b.in_height = b.in_width = 112;
  EXPECT_EQ(b.mid_channels(), 96);
  // 16*96 + 2*96 + 96*49 + 2*96 + 96*24 + 2*24
  EXPECT_EQ(BlockParameterCount(b), 8976);
  // 16*96*112^2 + 96*49*56^2 + 96*24*56^2
  EXPECT_EQ(BlockMacs(b), 41244672);
  EXPECT_EQ(BlockKey(b),
            "expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:7-stride:2-idskip:0");

  BlockConfig first;  // the fixed MBConv1 3x3 32 -> 16: no expand conv
  first.in_channels = 32;
  first.out_channels = 16;
  first.kernel = 3;
  first.expand = 1;
  first.in_height = first.in_width = 112;
  EXPECT_EQ(BlockParameterCount(first), 32 * 9 + 2 * 32 + 32 * 16 + 2 * 16);
  EXPECT_EQ(BlockMacs(first), (32 * 9 + 32 * 16) * 112 * 112);

  BlockConfig zero = b;
  zero.zero = true;
  EXPECT_EQ(BlockParameterCount(zero), 0);
  EXPECT_EQ(BlockMacs(zero), 0);

  EXPECT_EQ(ConvOutSize(224, 2), 112);
  EXPECT_EQ(ConvOutSize(7, 2), 4);
  EXPECT_EQ(ConvOutSize(1, 2), 1);
  EXPECT_EQ(ConvOutSize(28, 1), 28);
  EXPECT_EQ(StemKey(224, 224, 3, 112, 112, 32), "Conv-input:224x224x3-output:112x112x32");
  EXPECT_EQ(FeatureMixKey(7, 7, 320, 1280), "Conv_1-input:7x7x320-output:7x7x1280");
  EXPECT_EQ(LogitsKey(7, 7, 1280, 1000), "Logits-input:7x7x1280-output:1000");
}

TEST(NetworkConfigTest, NoFeatureMixLayer) {
  NetworkConfig net;
  net.input_height = net.input_width = 32;
  net.stem_channels = 16;
  net.stem_stride = 1;
  net.feature_mix_channels = 0;
  net.num_classes = 10;
  BlockConfig b;
  b.in_channels = 16;
  b.out_channels = 24;
  b.kernel = 3;
  b.expand = 3;
  b.stride = 2;
  b.in_height = b.in_width = 32;
  net.blocks.push_back(b);
  ASSERT_TRUE(net.Validate().ok());
  EXPECT_EQ(net.final_channels(), 24);
  EXPECT_EQ(net.LayerKeys().back(), "Logits-input:16x16x24-output:10");
  EXPECT_EQ(net.LayerKeys().size(), 3u);
  // stem 3*16*9 + 32; block 16*48+96 + 48*9+96 + 48*24+48; linear 24*10+10
  EXPECT_EQ(net.ParameterCount(),
            (3 * 16 * 9 + 32) + (16 * 48 + 96 + 48 * 9 + 96 + 48 * 24 + 48) + (24 * 10 + 10));
  auto back = NetworkConfig::FromReferenceJson(net.ToReferenceJson(), 32, 32);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->feature_mix_channels, 0);
  EXPECT_EQ(back->ParameterCount(), net.ParameterCount());

  net.blocks[0].in_height = 31;
  EXPECT_TRUE(IsError(net.Validate(), absl::StatusCode::kInvalidArgument, {"blocks[0]", "31x32"}));
}

// Found by the network_config fuzz target: a stride of 0 divided by zero computing the next
// block's size before Validate ran. Every number is now bounded as it is read.
TEST(NetworkConfigTest, HostileNumbersAreRefusedNamingTheField) {
  Json mobile = Json::parse(ReadConfig("mobile"));
  struct Case {
    std::string pointer;
    Json value;
    std::string message;
  };
  std::vector<Case> cases = {
      {"/blocks/1/mobile_inverted_conv/stride", 0,
       "blocks[1].mobile_inverted_conv.stride: 0 is outside [1, 2]"},
      {"/first_conv/stride", 0, "first_conv.stride: 0 is outside [1, 4]"},
      {"/first_conv/out_channels", 2147483647, "first_conv.out_channels: 2147483647 is outside"},
      {"/blocks/2/mobile_inverted_conv/expand_ratio", 1000000,
       "blocks[2].mobile_inverted_conv.expand_ratio: 1000000 is outside [1, 16]"},
      {"/blocks/2/mobile_inverted_conv/kernel_size", -3,
       "blocks[2].mobile_inverted_conv.kernel_size: -3 is outside [1, 15]"},
      {"/first_conv/in_channels", 65, "first_conv.in_channels: 65 is outside [1, 64]"},
      {"/classifier/out_features", 0, "classifier.out_features: 0 is outside"},
  };
  for (const Case& c : cases) {
    Json j = mobile;
    j[Json::json_pointer(c.pointer)] = c.value;
    auto net = NetworkConfig::FromReferenceJson(j.dump());
    ASSERT_FALSE(net.ok()) << c.pointer;
    EXPECT_EQ(net.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(net.status().message().find(c.message), std::string::npos) << net.status();
  }
  EXPECT_FALSE(NetworkConfig::FromReferenceJson(mobile.dump(), 0, 224).ok());
  EXPECT_FALSE(NetworkConfig::FromReferenceJson(mobile.dump(), 224, 1 << 20).ok());
  EXPECT_TRUE(NetworkConfig::FromReferenceJson(mobile.dump()).ok());
}

}  // namespace
}  // namespace nas
