// Who may change a table: the real latency server on localhost:0 with --writer_tokens_file,
// driven through the real client and a raw stub. PutTable takes only a token of role `writer`
// (none, a bad one: UNAUTHENTICATED; another role: PERMISSION_DENIED) and a refused call changes
// nothing; Query, ListDevices and GetTable stay open to callers without a token.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "latency_service/latency_client.h"
#include "latency_service/latency_server.h"
#include "nas/latency.grpc.pb.h"
#include "tests/test_util.h"

namespace nas {
namespace {

const std::string kMobileTrim = std::string(NAS_DATA_DIR) + "/proxylessnas/mobile_trim.yaml";

constexpr char kWriter[] = "writer-token-0123456789";
constexpr char kUser[] = "user-token-0123456789ab";
constexpr char kAdmin[] = "admin-token-0123456789a";
constexpr char kWorker[] = "worker-token-012345678";

LatencyTable FashionTable(const std::string& device, double first_ms) {
  LatencyTable t(LatencyTableInfo{device, "libtorch-cpu 1.13.1, 2 threads", 1, 2,
                                  "2026-11-25T20:00:00Z", "test"});
  double ms = first_ms;
  for (const std::string& k : SearchSpace::Preset("fashion-mnist").value().AllLayerKeys()) {
    EXPECT_TRUE(t.Insert(k, LatencyEntry{30, ms, 1e-5}).ok());
    ms += 0.003;
  }
  return t;
}

class LatencyWriterAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/latency_writer_auth_test_", ::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    tokens_ = dir_ + "/tokens";
    std::ofstream(tokens_) << "# TOKEN USER TENANT [ROLE]\n"
                           << kWriter << " profiler lab writer\n"
                           << kUser << " alice vision\n"
                           << kAdmin << " ops lab admin\n"
                           << kWorker << " w-1 lab worker\n";
    LatencyServer::Options o;
    o.address = "127.0.0.1";
    o.registry.table_dir = dir_ + "/tables";
    o.registry.builtin_tables = {{"pixel1-tflite", kMobileTrim}};
    o.writer_tokens_file = tokens_;
    auto s = LatencyServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    // The first table of x86-2core, by the writer.
    auto put = As(kWriter)->PutTableJson(FashionTable("x86-2core", 0.05).ToJson(), false);
    ASSERT_TRUE(put.ok()) << put.status();
    ASSERT_EQ(put->version, 1u);
    before_ = Snapshot();
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Target() const { return absl::StrCat("127.0.0.1:", server_->port()); }
  // A client sending `token` ("" sends none).
  std::unique_ptr<LatencyClient> As(const std::string& token) {
    LatencyClientOptions o;
    o.token = token;
    return LatencyClient::Connect(Target(), o).value();
  }
  // Every device's stored table and version.
  std::vector<std::string> Snapshot() {
    std::unique_ptr<LatencyClient> c = As("");
    std::vector<std::string> out;
    const std::vector<DeviceSummary> devices = c->ListDevices().value();
    for (const DeviceSummary& d : devices) {
      out.push_back(absl::StrCat(d.name, " v", d.version, " ", c->GetTableJson(d.name).value()));
    }
    return out;
  }
  // A replacement, a merge and a new device's table as `token`: each refused with `code`, and
  // nothing stored changes.
  void ExpectPutRefused(const std::string& token, absl::StatusCode code,
                        const std::vector<std::string>& parts) {
    std::unique_ptr<LatencyClient> c = As(token);
    const std::string replacement = FashionTable("x86-2core", 9.0).ToJson();
    for (bool merge : {false, true}) {
      absl::Status s = c->PutTableJson(replacement, merge).status();
      EXPECT_TRUE(IsError(s, code, parts)) << "token '" << token << "' merge " << merge;
      if (!token.empty()) {
        EXPECT_EQ(std::string(s.message()).find(token), std::string::npos) << s;
      }
    }
    EXPECT_TRUE(IsError(c->PutTableJson(FashionTable("new-device", 1.0).ToJson(), false).status(),
                        code, parts));
    EXPECT_EQ(Snapshot(), before_);
  }

  std::string dir_;
  std::string tokens_;
  std::unique_ptr<LatencyServer> server_;
  std::vector<std::string> before_;
};

TEST_F(LatencyWriterAuthTest, PutTableWithoutATokenIsUnauthenticated) {
  ExpectPutRefused("", absl::StatusCode::kUnauthenticated,
                   {"no token", "Bearer", "NAS_LATENCY_TOKEN"});
}

TEST_F(LatencyWriterAuthTest, PutTableWithAnUnknownTokenIsUnauthenticated) {
  ExpectPutRefused("not-a-token-0123456789", absl::StatusCode::kUnauthenticated, {"unknown token"});
  ExpectPutRefused("writer-token-012345678", absl::StatusCode::kUnauthenticated,  // a prefix
                   {"unknown token"});
}

TEST_F(LatencyWriterAuthTest, PutTableWithAnotherSchemeIsUnauthenticated) {
  auto stub =
      LatencyService::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  PutTableRequest request;
  request.mutable_table()->set_content(FashionTable("x86-2core", 9.0).ToJson());
  PutTableReply reply;
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Basic ", kWriter));
  grpc::Status s = stub->PutTable(&context, request, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_NE(s.error_message().find("not a bearer token"), std::string::npos) << s.error_message();
  EXPECT_EQ(Snapshot(), before_);
}

TEST_F(LatencyWriterAuthTest, PutTableWithATokenOfAnotherRoleIsPermissionDenied) {
  ExpectPutRefused(kUser, absl::StatusCode::kPermissionDenied, {"alice", "role user", "writer"});
  ExpectPutRefused(kAdmin, absl::StatusCode::kPermissionDenied, {"role admin", "writer"});
  ExpectPutRefused(kWorker, absl::StatusCode::kPermissionDenied, {"role worker", "writer"});
}

TEST_F(LatencyWriterAuthTest, PutTableWithTheWriterTokenIsAccepted) {
  std::unique_ptr<LatencyClient> writer = As(kWriter);
  auto put = writer->PutTableJson(FashionTable("x86-2core", 9.0).ToJson(), /*merge=*/false);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->version, 2u);
  put = writer->PutTableJson(FashionTable("new-device", 1.0).ToJson(), /*merge=*/false);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->version, 1u);
  EXPECT_EQ(As("")->ListDevices().value().size(), 3u);
  std::vector<LayerLatency> answers;
  const std::string key = SearchSpace::Preset("fashion-mnist").value().AllLayerKeys()[0];
  ASSERT_TRUE(As("")->Query("x86-2core", {key}, &answers).ok());
  EXPECT_DOUBLE_EQ(answers[0].mean_ms, 9.0);
}

TEST_F(LatencyWriterAuthTest, ReadsStayOpenWithoutOrWithAnyToken) {
  for (const std::string& token : {std::string(), std::string("not-a-token-0123456789"),
                                   std::string(kUser), std::string(kWorker)}) {
    std::unique_ptr<LatencyClient> c = As(token);
    std::vector<LayerLatency> answers;
    const std::string key = SearchSpace::Preset("fashion-mnist").value().AllLayerKeys()[0];
    absl::Status s = c->Query("x86-2core", {key}, &answers);
    ASSERT_TRUE(s.ok()) << "token '" << token << "': " << s;
    EXPECT_DOUBLE_EQ(answers[0].mean_ms, 0.05);
    auto devices = c->ListDevices();
    ASSERT_TRUE(devices.ok()) << devices.status();
    EXPECT_EQ(devices->size(), 2u);
    auto json = c->GetTableJson("x86-2core");
    EXPECT_TRUE(json.ok()) << json.status();
    auto table = FetchLatencyTable(*c, "x86-2core", {key});
    EXPECT_TRUE(table.ok()) << table.status();
  }
}

TEST(LatencyWriterAuthStartTest, AMissingOrMalformedTokensFileIsAnErrorAtStart) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/latency_writer_auth_start_", ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  LatencyServer::Options o;
  o.address = "127.0.0.1";
  o.writer_tokens_file = dir + "/missing";
  absl::Status s = LatencyServer::Start(o).status();
  EXPECT_TRUE(IsError(s, absl::StatusCode::kNotFound, {dir + "/missing"})) << s;
  std::ofstream(dir + "/bad") << "# tokens\n" << kWriter << " profiler lab scribe\n";
  o.writer_tokens_file = dir + "/bad";
  s = LatencyServer::Start(o).status();
  EXPECT_TRUE(IsError(s, absl::StatusCode::kInvalidArgument, {"line 2", "role", "writer"})) << s;
  std::filesystem::remove_all(dir);
}

TEST(LatencyWriterAuthStartTest, WithoutATokensFileAnyCallerMayPutTable) {
  LatencyServer::Options o;
  o.address = "127.0.0.1";
  auto server = LatencyServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = LatencyClient::Connect(absl::StrCat("127.0.0.1:", (*server)->port())).value();
  auto put = c->PutTableJson(FashionTable("x86-2core", 0.05).ToJson(), /*merge=*/false);
  EXPECT_TRUE(put.ok()) << put.status();
}

}  // namespace
}  // namespace nas
