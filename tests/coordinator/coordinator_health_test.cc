// The coordinator as the ecosystem sees it (issue 23), on the real server (gRPC on localhost:0,
// RocksDB in a temporary directory): the standard health service says SERVING on both ports once
// Start returns and NOT_SERVING as soon as Shutdown starts draining (a Watch stream opened before
// is told); server reflection lists and describes the services; and a lease a stopping worker
// hands back (ReleaseTask) is re-issued to another worker at once, with a lease of 10 minutes,
// so it cannot have been the deadline.
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>

#include "coordinator/sim_worker.h"
#include "gtest/gtest.h"
#include "nas/worker.grpc.pb.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/grpc_probe.h"
#include "tests/test_util.h"

namespace nas {
namespace {

bool Has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST_F(CoordinatorServerTest, HealthServingOnBothPortsThenNotServingOnceShutdownDrains) {
  server_.reset();
  worker_port_ = 0;  // the gateway on a port of its own
  Start();
  auto users = LoopbackChannel(server_->port());
  auto workers = LoopbackChannel(server_->worker_port());
  ASSERT_NE(server_->port(), server_->worker_port());
  EXPECT_EQ(HealthOf(users), HealthStatus::SERVING);
  EXPECT_EQ(HealthOf(users, "nas.SearchService"), HealthStatus::SERVING);
  EXPECT_EQ(HealthOf(workers), HealthStatus::SERVING);
  EXPECT_EQ(HealthOf(workers, "nas.WorkerGateway"), HealthStatus::SERVING);
  grpc::Status call;
  EXPECT_EQ(HealthOf(users, "nas.WorkerGateway", &call), HealthStatus::UNKNOWN);
  EXPECT_EQ(call.error_code(), grpc::StatusCode::NOT_FOUND);  // not served on the user port

  // Watch streams on both ports, then the drain.
  grpc::health::v1::HealthCheckRequest whole;
  auto user_stub = grpc::health::v1::Health::NewStub(users);
  auto worker_stub = grpc::health::v1::Health::NewStub(workers);
  grpc::ClientContext user_ctx, worker_ctx;
  auto user_watch = user_stub->Watch(&user_ctx, whole);
  auto worker_watch = worker_stub->Watch(&worker_ctx, whole);
  HealthStatus got;
  ASSERT_TRUE(user_watch->Read(&got));
  EXPECT_EQ(got.status(), HealthStatus::SERVING);
  ASSERT_TRUE(worker_watch->Read(&got));
  EXPECT_EQ(got.status(), HealthStatus::SERVING);
  std::thread drain([this] { server_->Shutdown(); });
  ASSERT_TRUE(user_watch->Read(&got));
  EXPECT_EQ(got.status(), HealthStatus::NOT_SERVING);
  ASSERT_TRUE(worker_watch->Read(&got));
  EXPECT_EQ(got.status(), HealthStatus::NOT_SERVING);
  drain.join();
  user_ctx.TryCancel();
  worker_ctx.TryCancel();
  user_watch->Finish();
  worker_watch->Finish();
}

TEST_F(CoordinatorServerTest, ReflectionListsAndDescribesTheServices) {
  auto channel = LoopbackChannel(server_->port());  // both services on one port
  absl::StatusOr<std::vector<std::string>> names = ReflectedServices(channel);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_TRUE(Has(*names, "nas.SearchService"));
  EXPECT_TRUE(Has(*names, "nas.WorkerGateway"));
  EXPECT_TRUE(Has(*names, "grpc.reflection.v1alpha.ServerReflection"));

  // What `grpcurl describe nas.SearchService` reads: the file that defines it.
  testing::ReflectionRequest ask;
  ask.set_file_containing_symbol("nas.SearchService");
  absl::StatusOr<testing::ReflectionResponse> r = AskReflection(channel, ask);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_file_descriptor_response()) << r->DebugString();
  bool found = false;
  for (const std::string& bytes : r->file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    for (const auto& service : file.service()) {
      if (file.package() == "nas" && service.name() == "SearchService") {
        found = service.method_size() > 0;
      }
    }
  }
  EXPECT_TRUE(found);

  // With the gateway on its own port, each port lists only its own service.
  server_.reset();
  worker_port_ = 0;
  Start();
  names = ReflectedServices(LoopbackChannel(server_->port()));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_TRUE(Has(*names, "nas.SearchService"));
  EXPECT_FALSE(Has(*names, "nas.WorkerGateway"));
  names = ReflectedServices(LoopbackChannel(server_->worker_port()));
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_TRUE(Has(*names, "nas.WorkerGateway"));
  EXPECT_FALSE(Has(*names, "nas.SearchService"));
}

TEST_F(CoordinatorServerTest, AHandedBackLeaseIsReissuedAtOnceNotAtItsDeadline) {
  server_.reset();
  Start(absl::Minutes(10));  // no lease expires during the test
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok()) << id.status();
  SimWorker a(Channel()), b(Channel());
  ASSERT_TRUE(a.Register("a").ok());
  ASSERT_TRUE(b.Register("b").ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(a));  // the init task: the round's only one
  const Task taken = a.last_task();
  auto late = a.MakeResult();
  ASSERT_TRUE(late.ok()) << late.status();
  auto idle = b.Acquire(absl::Milliseconds(200));
  ASSERT_TRUE(idle.ok()) << idle.status();
  EXPECT_FALSE(*idle);  // nothing else to hand out while a holds it

  auto gateway = WorkerGateway::NewStub(Channel());
  auto release = [&](const std::string& worker, const std::string& lease,
                     const std::string& reason = "SIGTERM") {
    ReleaseTaskRequest request;
    request.set_worker_id(worker);
    request.set_lease_id(lease);
    request.set_reason(reason);
    ReleaseTaskReply reply;
    grpc::ClientContext context;
    grpc::Status s = gateway->ReleaseTask(&context, request, &reply);
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  };
  // Hostile requests: a reason over 1 KiB, a request over the 4 KiB bound; the lease stays a's.
  EXPECT_TRUE(IsError(release(a.worker_id(), taken.lease_id(), std::string(1025, 'r')),
                      absl::StatusCode::kInvalidArgument, {"reason", "1024"}));
  EXPECT_TRUE(IsError(release(a.worker_id(), std::string(5000, 'L')),
                      absl::StatusCode::kResourceExhausted, {"ReleaseTask"}));
  // Only the worker the lease was granted to may hand it back.
  EXPECT_TRUE(IsError(release(b.worker_id(), taken.lease_id()),
                      absl::StatusCode::kFailedPrecondition, {"not a current lease"}));
  EXPECT_TRUE(IsError(release(a.worker_id(), "L1-1-nosuchid"),
                      absl::StatusCode::kFailedPrecondition, {"not a current lease"}));
  ASSERT_TRUE(release(a.worker_id(), taken.lease_id()).ok());

  // b gets the same task now, under a new lease; a's lease is gone for good.
  auto got = b.Acquire(absl::Seconds(5));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(*got);
  EXPECT_EQ(b.last_task().job_id(), taken.job_id());
  EXPECT_EQ(b.last_task().round(), taken.round());
  EXPECT_EQ(b.last_task().kind_case(), taken.kind_case());
  EXPECT_NE(b.last_task().lease_id(), taken.lease_id());
  EXPECT_TRUE(IsError(release(a.worker_id(), taken.lease_id()),
                      absl::StatusCode::kFailedPrecondition, {"not a current lease"}));
  EXPECT_TRUE(IsError(a.Complete(late->first, late->second), absl::StatusCode::kFailedPrecondition,
                      {"not current"}));
  auto fresh = b.MakeResult();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  ASSERT_TRUE(b.Complete(fresh->first, fresh->second).ok());
  EXPECT_EQ(client_->Get(*id)->state(), "RUNNING");
}

}  // namespace
}  // namespace nas
