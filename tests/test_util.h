// Small helpers shared by the test suites.
//
//   EXPECT_TRUE(IsError(status, absl::StatusCode::kInvalidArgument, {"stages[1].stride"}));
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace nas {

// Success when `s` has `code` and its message contains every one of `parts`.
inline ::testing::AssertionResult IsError(const absl::Status& s, absl::StatusCode code,
                                          const std::vector<std::string>& parts) {
  if (s.code() != code) {
    return ::testing::AssertionFailure()
           << "code " << absl::StatusCodeToString(s.code()) << ", want "
           << absl::StatusCodeToString(code) << " (" << s.message() << ")";
  }
  for (const std::string& p : parts) {
    if (std::string(s.message()).find(p) == std::string::npos) {
      return ::testing::AssertionFailure() << "message '" << s.message() << "' lacks '" << p << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

// The whole file as text ("" when unreadable).
inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace nas
