// The one JSON reading discipline (core/json_fields.h): size and nesting bounded before parsing,
// every parser failure a status naming the document, integers checked against int's range.
#include "core/json_fields.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

TEST(JsonFieldsTest, DeepNestingIsRefusedBeforeParsing) {
  // Two million brackets: the parser (or the value's destructor) would recurse that deep.
  const std::string deep = std::string(1 << 20, '[') + std::string(1 << 20, ']');
  EXPECT_TRUE(IsError(ParseJson(deep, "doc").status(), absl::StatusCode::kInvalidArgument,
                      {"doc", "nested deeper", "64"}));
  const std::string objects = [] {
    std::string s;
    for (int i = 0; i < 100; ++i) s += "{\"a\":";
    s += "1";
    for (int i = 0; i < 100; ++i) s += "}";
    return s;
  }();
  EXPECT_TRUE(IsError(ParseJson(objects, "doc").status(), absl::StatusCode::kInvalidArgument,
                      {"nested deeper"}));
  JsonLimits loose;
  loose.max_depth = 200;
  EXPECT_TRUE(ParseJson(objects, "doc", loose).ok());
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJson("{\"k\": \"" + std::string(1000, '[') + "\\\"]\"}", "doc").ok());
  EXPECT_EQ(JsonNestingDepth("[[1], {\"a\": [2]}]", 100), 3);
}

TEST(JsonFieldsTest, SizeIsBounded) {
  JsonLimits small;
  small.max_bytes = 10;
  EXPECT_TRUE(IsError(ParseJson("[1,2,3,4,5,6]", "spec", small).status(),
                      absl::StatusCode::kInvalidArgument, {"spec", "13 bytes", "limit of 10"}));
}

TEST(JsonFieldsTest, EveryParserFailureIsAStatus) {
  EXPECT_TRUE(IsError(ParseJson("[1e999]", "t").status(), absl::StatusCode::kInvalidArgument,
                      {"t", "out of range"}));
  EXPECT_TRUE(IsError(ParseJson("{\"a\": -1e400}", "t").status(),
                      absl::StatusCode::kInvalidArgument, {"out of range"}));
  EXPECT_TRUE(IsError(ParseJson("{\"a\": NaN}", "t").status(), absl::StatusCode::kInvalidArgument,
                      {"not valid JSON"}));
  EXPECT_TRUE(IsError(ParseJson("\"\xff\xfe\"", "t").status(), absl::StatusCode::kInvalidArgument,
                      {"not valid JSON"}));
  EXPECT_TRUE(ParseJson("", "t").status().code() == absl::StatusCode::kInvalidArgument);
  // Integers beyond 64 bits parse as doubles, not as an error.
  EXPECT_TRUE(ParseJson("[123456789012345678901234567890]", "t").ok());
}

TEST(JsonFieldsTest, IntegersMustFitAnInt) {
  auto j = ParseJson(
      R"({"big": 99999999999, "neg": -99999999999, "u": 18446744073709551615, "f": 3.5,
          "e": 1e10, "ok": 7, "okf": 8.0, "list": [1, 2, 3000000000]})",
      "t");
  ASSERT_TRUE(j.ok());
  for (const char* k : {"big", "neg", "u", "f", "e"}) {
    EXPECT_TRUE(IsError(GetInt(*j, "x", k).status(), absl::StatusCode::kInvalidArgument,
                        {std::string("x.") + k, "integer"}))
        << k;
  }
  EXPECT_EQ(*GetInt(*j, "", "ok"), 7);
  EXPECT_EQ(*GetInt(*j, "", "okf"), 8);
  EXPECT_TRUE(IsError(GetIntList(*j, "", "list").status(), absl::StatusCode::kInvalidArgument,
                      {"list[2]"}));
}

TEST(JsonFieldsTest, ErrorMessagesQuoteAShortSnippet) {
  auto j = ParseJson("{\"name\": [\"" + std::string(100000, 'x') + "\"]}", "t");
  ASSERT_TRUE(j.ok());
  absl::Status s = GetString(*j, "", "name").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(s.message().size(), 200u) << s.message().substr(0, 300);
}

TEST(JsonFieldsTest, ReadFileIsBounded) {
  const std::string path = ::testing::TempDir() + "/json_fields_big.txt";
  { std::ofstream(path) << std::string(5000, 'a'); }
  EXPECT_TRUE(ReadFile(path, 5000).ok());
  EXPECT_TRUE(IsError(ReadFile(path, 4999).status(), absl::StatusCode::kInvalidArgument,
                      {path, "limit of 4999"}));
  std::filesystem::remove(path);
  EXPECT_EQ(ReadFile(path).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace nas
