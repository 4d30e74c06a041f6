// The latency server as the ecosystem sees it (issue 23), on localhost:0: the standard health
// service says SERVING once Start returns (its tables loaded) and NOT_SERVING as soon as Shutdown
// starts draining (a Watch stream opened before is told); reflection lists its service.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "gtest/gtest.h"
#include "latency_service/latency_server.h"
#include "tests/grpc_probe.h"

namespace nas {
namespace {

TEST(LatencyHealthTest, ServingOnceStartedNotServingOnceShutdownDrainsAndReflectionLists) {
  LatencyServer::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.registry.builtin_tables = {
      {"pixel1-tflite", std::string(NAS_DATA_DIR) + "/proxylessnas/mobile_trim.yaml"}};
  absl::StatusOr<std::unique_ptr<LatencyServer>> server = LatencyServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = LoopbackChannel((*server)->port());
  EXPECT_EQ(HealthOf(channel), HealthStatus::SERVING);
  EXPECT_EQ(HealthOf(channel, "nas.LatencyService"), HealthStatus::SERVING);

  absl::StatusOr<std::vector<std::string>> names = ReflectedServices(channel);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_NE(std::find(names->begin(), names->end(), "nas.LatencyService"), names->end());

  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  auto watch = stub->Watch(&context, grpc::health::v1::HealthCheckRequest());
  HealthStatus got;
  ASSERT_TRUE(watch->Read(&got));
  EXPECT_EQ(got.status(), HealthStatus::SERVING);
  std::thread drain([&] { (*server)->Shutdown(); });
  ASSERT_TRUE(watch->Read(&got));
  EXPECT_EQ(got.status(), HealthStatus::NOT_SERVING);
  drain.join();
  context.TryCancel();
  watch->Finish();
}

}  // namespace
}  // namespace nas
