// Identity and isolation (issue 20) against the real coordinator: a tokens file, users and
// workers on separate ports. Every user call needs a valid token; a job's tenant and owner are
// the caller's; another tenant's job is NOT_FOUND exactly as an unknown one; an admin sees and
// cancels everything; a user's token is refused by the worker gateway and a worker's credential
// by the user service; nothing of a tenant's job changes through another's calls.
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nas/search.grpc.pb.h"
#include "nas/worker.grpc.pb.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/test_util.h"

namespace nas {
namespace {

constexpr char kAlice[] = "alice-token-0123456789";
constexpr char kBob[] = "bob-token-0123456789ab";
constexpr char kAdmin[] = "admin-token-0123456789";
constexpr char kWorker[] = "worker-token-012345678";
constexpr char kWriter[] = "writer-token-012345678";

class IsolationTest : public CoordinatorServerTest {
 protected:
  void SetUp() override {
    tokens_file_ = ::testing::TempDir() + "/isolation_tokens_" + std::to_string(::getpid());
    std::ofstream(tokens_file_) << kAlice << " alice vision\n"
                                << kBob << " bob speech\n"
                                << kAdmin << " ops lab admin\n"
                                << kWorker << " w-1 lab worker\n"
                                << kWriter << " profiler lab writer\n";
    worker_port_ = 0;
    token_ = kAlice;
    CoordinatorServerTest::SetUp();
  }
  void TearDown() override {
    CoordinatorServerTest::TearDown();
    std::remove(tokens_file_.c_str());
  }
  std::unique_ptr<SearchClient> As(const std::string& token) {
    SearchClientOptions o;
    o.token = token;
    auto c = SearchClient::Connect(target_, o);
    EXPECT_TRUE(c.ok());
    return std::move(*c);
  }
  std::unique_ptr<SimWorker> Worker(const std::string& token) {
    auto w = std::make_unique<SimWorker>(Channel());
    w->set_token(token);
    return w;
  }
};

TEST_F(IsolationTest, EveryUserCallNeedsAToken) {
  auto alice = As(kAlice);
  auto job = alice->Submit(SmallSpec());
  ASSERT_TRUE(job.ok()) << job.status();
  for (const std::string& token : {std::string(), std::string("not-a-known-token-0000")}) {
    auto anon = As(token);
    const auto code = absl::StatusCode::kUnauthenticated;
    EXPECT_TRUE(IsError(anon->Submit(SmallSpec()).status(), code, {"authorization"}));
    EXPECT_TRUE(IsError(anon->Get(*job).status(), code, {"authorization"}));
    EXPECT_TRUE(IsError(anon->List("").status(), code, {"authorization"}));
    EXPECT_TRUE(IsError(anon->Cancel(*job), code, {"authorization"}));
    EXPECT_TRUE(IsError(anon->Delete(*job), code, {"authorization"}));
    EXPECT_TRUE(IsError(anon->Result(*job).status(), code, {"authorization"}));
    EXPECT_TRUE(IsError(anon->Artifact(*job, "derived.pt").status(), code, {"authorization"}));
    EXPECT_TRUE(
        IsError(anon->Watch(*job, [](const JobStatus&) { return true; }), code, {"authorization"}));
  }
  // A worker's credential is not a user's.
  EXPECT_TRUE(
      IsError(As(kWorker)->Get(*job).status(), absl::StatusCode::kPermissionDenied, {"worker"}));
  // Nor is a latency table writer's (latency_server --writer_tokens_file).
  EXPECT_TRUE(
      IsError(As(kWriter)->List("").status(), absl::StatusCode::kPermissionDenied, {"writer"}));
  EXPECT_EQ(alice->Get(*job)->state() != "CANCELLED", true);
}

TEST_F(IsolationTest, AJobIsItsTenantsAndInvisibleToOthers) {
  auto alice = As(kAlice), bob = As(kBob), admin = As(kAdmin);
  JobSpec spec = SmallSpec();
  spec.set_tenant("speech");  // a request's tenant and owner are ignored
  spec.set_owner("bob");
  auto a = alice->Submit(spec);
  ASSERT_TRUE(a.ok());
  auto b = bob->Submit(SmallSpec());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(alice->Get(*a)->tenant(), "vision");
  EXPECT_EQ(alice->Get(*a)->owner(), "alice");
  // Ids cannot be guessed from one another.
  EXPECT_TRUE(absl::StartsWith(*a, "j000001-")) << *a;
  EXPECT_EQ(a->size(), 18u) << *a;
  EXPECT_NE(a->substr(8), b->substr(8));
  auto r = admin->Get(*a);
  ASSERT_TRUE(r.ok());
  // Once its latencies are in, a job without workers stays as it is.
  for (int i = 0; i < 500 && alice->Get(*a)->state() != "RUNNING"; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(alice->Get(*a)->state(), "RUNNING");
  const JobStatus before = *alice->Get(*a);

  // Bob sees nothing of alice's job, exactly as if it did not exist.
  const std::string unknown = "j999999";
  auto msg = [&](const absl::Status& s) { return std::string(s.message()); };
  auto not_found = [&](const absl::Status& s, const std::string& id) {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
    EXPECT_EQ(msg(s), "job_id: no job '" + id + "'") << s;
  };
  not_found(bob->Get(*a).status(), *a);
  not_found(bob->Get(unknown).status(), unknown);
  not_found(bob->Cancel(*a), *a);
  not_found(bob->Delete(*a), *a);
  not_found(bob->Result(*a).status(), *a);
  not_found(bob->Artifact(*a, "derived.pt").status(), *a);
  not_found(bob->Watch(*a, [](const JobStatus&) { return true; }), *a);
  auto bobs = bob->List("");
  ASSERT_TRUE(bobs.ok());
  ASSERT_EQ(bobs->size(), 1u);
  EXPECT_EQ((*bobs)[0].job_id(), *b);
  EXPECT_TRUE(bob->List("vision")->empty());
  EXPECT_EQ(alice->Get(*a)->SerializeAsString(), before.SerializeAsString());

  // An admin sees and cancels every tenant's jobs.
  EXPECT_EQ(admin->List("")->size(), 2u);
  EXPECT_EQ(admin->List("speech")->size(), 1u);
  EXPECT_TRUE(admin->Cancel(*b).ok());
  EXPECT_EQ(bob->Get(*b)->state(), "CANCELLED");
  EXPECT_EQ(alice->Get(*a)->state(), before.state());
}

TEST_F(IsolationTest, OnlyItsTenantOrAnAdminDeletesAJob) {
  auto alice = As(kAlice), bob = As(kBob), admin = As(kAdmin);
  auto a = alice->Submit(SmallSpec());
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = bob->Submit(SmallSpec());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(IsError(alice->Delete(*a), absl::StatusCode::kFailedPrecondition,
                      {*a, "cancel it first"}));
  ASSERT_TRUE(alice->Cancel(*a).ok());
  const JobStatus before = *alice->Get(*a);

  // Bob cannot delete alice's ended job, nor learn that it exists; nothing of it changes.
  absl::Status s = bob->Delete(*a);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_EQ(std::string(s.message()), "job_id: no job '" + *a + "'");
  EXPECT_EQ(alice->Get(*a)->SerializeAsString(), before.SerializeAsString());
  EXPECT_EQ(alice->List("")->size(), 1u);

  // Alice deletes her own; an admin deletes any tenant's.
  ASSERT_TRUE(alice->Delete(*a).ok());
  EXPECT_EQ(alice->Get(*a).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(alice->List("")->empty());
  EXPECT_EQ(alice->Delete(*a).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(admin->Cancel(*b).ok());
  ASSERT_TRUE(admin->Delete(*b).ok());
  EXPECT_EQ(bob->Get(*b).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(admin->List("")->empty());
}

TEST_F(IsolationTest, TheGatewayTakesWorkerCredentialsOnItsOwnPort) {
  ASSERT_NE(server_->worker_port(), server_->port());
  auto alice = As(kAlice);
  auto a = alice->Submit(SmallSpec());
  ASSERT_TRUE(a.ok());
  // No token, a user's, an admin's: refused, and nothing of the job changes.
  EXPECT_TRUE(
      IsError(Worker("")->Register("w"), absl::StatusCode::kUnauthenticated, {"authorization"}));
  EXPECT_TRUE(
      IsError(Worker(kAlice)->Register("w"), absl::StatusCode::kPermissionDenied, {"user"}));
  EXPECT_TRUE(
      IsError(Worker(kAdmin)->Register("w"), absl::StatusCode::kPermissionDenied, {"user"}));
  // The user port does not serve the gateway at all.
  {
    auto stub =
        WorkerGateway::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWorker);
    RegisterWorkerRequest req;
    RegisterWorkerReply reply;
    EXPECT_EQ(stub->RegisterWorker(&ctx, req, &reply).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  // A forged lease id is refused.
  auto w = Worker(kWorker);
  ASSERT_TRUE(w->Register("w-1").ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(*w));
  auto r = w->MakeResult();
  ASSERT_TRUE(r.ok());
  TaskOutcome forged = r->first;
  forged.set_lease_id(forged.lease_id() + "0");
  EXPECT_EQ(w->Complete(forged, r->second).code(), absl::StatusCode::kFailedPrecondition);
  // With its credential a worker runs the job to the end.
  ASSERT_TRUE(w->Complete(r->first, r->second).ok());
  auto runner = Worker(kWorker);
  ASSERT_TRUE(runner->Register("w-2").ok());
  JobStatus st;
  for (int i = 0; i < 1000; ++i) {
    st = *alice->Get(*a);
    if (st.state() == "DONE" || st.state() == "FAILED") break;
    auto ran = runner->RunSome(absl::Milliseconds(200));
    ASSERT_TRUE(ran.ok()) << ran.status();
  }
  EXPECT_EQ(st.state(), "DONE") << st.message();
  EXPECT_TRUE(alice->Result(*a).ok());
  EXPECT_EQ(alice->Get(*a)->tenant(), "vision");
}

// TLS on both ports: clients that trust the certificate get through; plaintext clients and
// clients that trust another certificate do not.
TEST_F(IsolationTest, TlsOnEveryPortWhenCertificatesAreGiven) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "openssl (Debian's openssl) is needed to make a certificate";
  }
  const std::string d = dir_.string();
  for (const char* name : {"server", "other"}) {
    std::string cmd = absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext "
        "subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
        d, "/", name, "-key.pem -out ", d, "/", name, "-cert.pem >/dev/null 2>&1");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  server_.reset();
  CoordinatorServer::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.worker_port = 0;
  o.db_dir = (dir_ / "db").string();
  o.latency_table = table_;
  o.tokens_file = tokens_file_;
  o.tls_cert = d + "/server-cert.pem";
  o.tls_key = d + "/server-key.pem";
  auto s = CoordinatorServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  server_ = std::move(*s);
  const std::string target = "localhost:" + std::to_string(server_->port());
  SearchClientOptions co;
  co.token = kAlice;
  co.timeout = absl::Seconds(5);
  co.tls_ca = d + "/server-cert.pem";
  auto trusted = SearchClient::Connect(target, co);
  ASSERT_TRUE(trusted.ok());
  auto job = (*trusted)->Submit(SmallSpec());
  ASSERT_TRUE(job.ok()) << job.status();
  co.tls_ca = d + "/other-cert.pem";
  EXPECT_EQ((*SearchClient::Connect(target, co))->Get(*job).status().code(),
            absl::StatusCode::kUnavailable);
  co.tls_ca = "";
  EXPECT_EQ((*SearchClient::Connect(target, co))->Get(*job).status().code(),
            absl::StatusCode::kUnavailable);
  // Only one of certificate and key is an error naming the other.
  o.tls_key = "";
  EXPECT_TRUE(IsError(CoordinatorServer::Start(o).status(), absl::StatusCode::kInvalidArgument,
                      {"tls_key", "tls_cert"}));
}

}  // namespace
}  // namespace nas
