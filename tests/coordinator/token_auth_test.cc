// The tokens file and the authenticator (coordinator/token_auth.h), on a fake clock: parsing
// errors name the line, roles, the Bearer scheme, reloads when the file changes and a failed
// reload keeping the old tokens.
#include "coordinator/token_auth.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

constexpr char kTokens[] = R"(# TOKEN USER TENANT [ROLE]
alice-token-0123456789 alice vision
bob-token-0123456789ab bob    speech   user

admin-token-0123456789 ops lab admin
worker-token-012345678 w-1 lab worker
)";

TEST(TokenTableTest, ParsesUsersTenantsAndRoles) {
  auto t = TokenTable::Parse(kTokens, "tokens");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->size(), 4u);
  const Identity* a = t->Find("alice-token-0123456789");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->user, "alice");
  EXPECT_EQ(a->tenant, "vision");
  EXPECT_EQ(a->role, Role::kUser);
  EXPECT_EQ(t->Find("admin-token-0123456789")->role, Role::kAdmin);
  EXPECT_EQ(t->Find("worker-token-012345678")->role, Role::kWorker);
  auto w = TokenTable::Parse("writer-token-012345678 profiler lab writer\n", "tokens");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->Find("writer-token-012345678")->role, Role::kWriter);
  EXPECT_STREQ(RoleName(Role::kWriter), "writer");
  EXPECT_EQ(t->Find("alice-token-012345678"), nullptr);  // a prefix
  EXPECT_EQ(t->Find("alice-token-01234567890"), nullptr);
  EXPECT_EQ(t->Find(""), nullptr);
}

TEST(TokenTableTest, MalformedLinesAreNamed) {
  struct Case {
    std::string text;
    std::vector<std::string> want;
  };
  for (const Case& c : std::vector<Case>{
           {"short a t\n", {"line 1", "tokens are 16"}},
           {"# c\nalice-token-0123456789 alice\n", {"line 2", "TOKEN USER TENANT"}},
           {"alice-token-0123456789 al/ice t\n", {"line 1", "user"}},
           {"alice-token-0123456789 alice t root\n", {"line 1", "role"}},
           {"alice-token-0123456789 a t\nalice-token-0123456789 b t\n", {"line 2", "twice"}},
           {"alice-token-0123456789 a t x y\n", {"line 1"}},
       }) {
    EXPECT_TRUE(IsError(TokenTable::Parse(c.text, "f").status(), absl::StatusCode::kInvalidArgument,
                        c.want))
        << c.text;
  }
  // A token never appears in an error.
  auto s = TokenTable::Parse("alice-token-0123456789 al/ice t\n", "f").status();
  EXPECT_EQ(std::string(s.message()).find("alice-token"), std::string::npos) << s;
}

class TokenAuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/tokens_" + std::to_string(::getpid());
    Write(kTokens);
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void Write(const std::string& text) {
    std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);  // as a Secret is rotated: a new file
  }
  std::unique_ptr<TokenAuthenticator> Open() {
    TokenAuthenticatorOptions o;
    o.path = path_;
    o.clock = [this] { return now_; };
    auto a = TokenAuthenticator::Open(o);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? std::move(*a) : nullptr;
  }
  std::string path_;
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(TokenAuthenticatorTest, BearerTokensOnly) {
  auto a = Open();
  auto who = a->Authenticate("Bearer alice-token-0123456789");
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->tenant, "vision");
  EXPECT_TRUE(a->Authenticate("bearer  alice-token-0123456789 ").ok());
  for (const char* h : {"", "Bearer", "Bearer ", "Basic YWxpY2U6eA==", "alice-token-0123456789",
                        "Bearer alice-token-0123456788"}) {
    auto s = a->Authenticate(h).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << h;
    EXPECT_EQ(std::string(s.message()).find("token-01234"), std::string::npos) << s;
  }
}

TEST_F(TokenAuthenticatorTest, ReloadsWhenTheFileChangesAndKeepsTokensWhenItBreaks) {
  auto a = Open();
  ASSERT_TRUE(a->Authenticate("Bearer bob-token-0123456789ab").ok());
  Write("carol-token-012345678 carol vision\n");
  // Not looked at again before the interval has passed.
  EXPECT_TRUE(a->Authenticate("Bearer bob-token-0123456789ab").ok());
  now_ += absl::Seconds(2);
  EXPECT_EQ(a->Authenticate("Bearer bob-token-0123456789ab").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(a->Authenticate("Bearer carol-token-012345678").ok());
  // A broken file: the tokens loaded before stay.
  Write("carol-token-012345678 carol\n");
  now_ += absl::Seconds(2);
  EXPECT_TRUE(a->Authenticate("Bearer carol-token-012345678").ok());
  EXPECT_TRUE(IsError(a->Reload(), absl::StatusCode::kInvalidArgument, {"line 1"}));
  std::filesystem::remove(path_);
  EXPECT_TRUE(IsError(a->Reload(), absl::StatusCode::kNotFound, {path_}));
  EXPECT_TRUE(a->Authenticate("Bearer carol-token-012345678").ok());
}

TEST_F(TokenAuthenticatorTest, OpenNeedsAGoodFile) {
  Write("x y z\n");
  TokenAuthenticatorOptions o;
  o.path = path_;
  EXPECT_TRUE(IsError(TokenAuthenticator::Open(o).status(), absl::StatusCode::kInvalidArgument,
                      {path_, "line 1"}));
  o.path = path_ + ".missing";
  EXPECT_EQ(TokenAuthenticator::Open(o).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace nas
