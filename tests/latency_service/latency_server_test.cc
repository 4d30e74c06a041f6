// The real latency server on localhost:0, driven through the real client (a gRPC stub): batch
// queries, errors, uploads, restarts on the same table directory, and the /metrics endpoint
// scraped over HTTP.
#include "latency_service/latency_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/search_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latency_service/latency_client.h"
#include "nlohmann/json.hpp"

namespace nas {
namespace {

using ::testing::HasSubstr;

const std::string kMobileTrim = std::string(NAS_DATA_DIR) + "/proxylessnas/mobile_trim.yaml";

std::unique_ptr<LatencyServer> StartServer(const std::string& table_dir, int metrics_port = -1) {
  LatencyServer::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.metrics_port = metrics_port;
  o.registry.table_dir = table_dir;
  o.registry.builtin_tables = {{"pixel1-tflite", kMobileTrim}};
  absl::StatusOr<std::unique_ptr<LatencyServer>> s = LatencyServer::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

std::unique_ptr<LatencyClient> ClientOf(const LatencyServer& s) {
  return LatencyClient::Connect(absl::StrCat("127.0.0.1:", s.port())).value();
}

std::vector<std::string> MobileKeys() {
  LatencyTable t = LatencyTable::Load(kMobileTrim).value();
  std::vector<std::string> keys;
  for (const auto& [k, e] : t.entries()) keys.push_back(k);
  return keys;
}

// A plain HTTP/1.0 GET on loopback; returns the body.
std::string HttpGet(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "";
  }
  std::string req = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  (void)!::write(fd, req.data(), req.size());
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

// The value of the sample line that starts with `series` (name plus labels), or -1.
double Sample(const std::string& exposition, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double v = -1;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
    }
  }
  return -1;
}

TEST(LatencyServerTest, BatchOfThousandsOfKeysIsOneCall) {
  std::unique_ptr<LatencyServer> server = StartServer("");
  std::unique_ptr<LatencyClient> client = ClientOf(*server);
  std::vector<std::string> table_keys = MobileKeys();
  std::vector<std::string> keys;
  for (int i = 0; i < 5000; ++i) keys.push_back(table_keys[i % table_keys.size()]);
  // And a few the table lacks, which the predictor answers.
  keys.push_back(
      "expanded_conv-input:28x28x48-output:28x28x48-expand:4-kernel:5-stride:1-idskip:1");
  std::vector<LayerLatency> answers;
  absl::Status s = client->Query("pixel1-tflite", keys, &answers);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(answers.size(), keys.size());
  LatencyTable table = LatencyTable::Load(kMobileTrim).value();
  for (size_t i = 0; i < 5000; ++i) {
    ASSERT_EQ(answers[i].source, LatencySource::kMeasured);
    ASSERT_DOUBLE_EQ(answers[i].mean_ms, table.Lookup(keys[i]).value().mean_ms);
  }
  EXPECT_EQ(answers.back().source, LatencySource::kPredicted);
  EXPECT_GT(answers.back().mean_ms, 0);
}

TEST(LatencyServerTest, ErrorsTravelAsStatusCodesNamingTheField) {
  std::unique_ptr<LatencyServer> server = StartServer("");
  std::unique_ptr<LatencyClient> client = ClientOf(*server);
  std::vector<LayerLatency> answers;
  absl::Status s = client->Query("pixel9", MobileKeys(), &answers);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("pixel9"));

  std::vector<std::string> keys = MobileKeys();
  keys.insert(keys.begin() + 10, "expanded_conv-input:56x56x24-output:56x56x24-kernel:3");
  s = client->Query("pixel1-tflite", keys, &answers);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("layer_keys[10]"));
  EXPECT_THAT(s.message(), HasSubstr("expanded_conv-input:56x56x24-output:56x56x24-kernel:3"));

  s = client->Query("pixel1-tflite", {"Logits-input:7x7x1280"}, &answers);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<DeviceSummary> put = client->PutTableJson("{\"format\": 3}", false);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(put.status().message(), HasSubstr("table.content"));

  absl::StatusOr<std::string> get = client->GetTableJson("pixel9");
  EXPECT_EQ(get.status().code(), absl::StatusCode::kNotFound);
}

LatencyTable FashionTable(const std::string& device) {
  LatencyTable t(LatencyTableInfo{device, "libtorch-cpu 1.13.1, 2 threads", 1, 2,
                                  "2026-11-25T20:00:00Z", "test"});
  double ms = 0.05;
  for (const std::string& k : SearchSpace::Preset("fashion-mnist").value().AllLayerKeys()) {
    EXPECT_TRUE(t.Insert(k, LatencyEntry{30, ms, 1e-5}).ok());
    ms += 0.003;
  }
  return t;
}

TEST(LatencyServerTest, PutTableThenQueryAndRestartKeepsIt) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/latency_server_test_restart");
  std::filesystem::remove_all(dir);
  LatencyTable t = FashionTable("x86-2core-test");
  std::vector<std::string> keys;
  for (const auto& [k, e] : t.entries()) keys.push_back(k);
  {
    std::unique_ptr<LatencyServer> server = StartServer(dir);
    std::unique_ptr<LatencyClient> client = ClientOf(*server);
    absl::StatusOr<DeviceSummary> put = client->PutTableJson(t.ToJson(), /*merge=*/false);
    ASSERT_TRUE(put.ok()) << put.status();
    EXPECT_EQ(put->name, "x86-2core-test");
    EXPECT_EQ(put->version, 1u);
    EXPECT_EQ(put->entries, static_cast<int64_t>(t.size()));
    EXPECT_EQ(put->threads, 2);
    std::vector<LayerLatency> answers;
    ASSERT_TRUE(client->Query("x86-2core-test", keys, &answers).ok());
    for (size_t i = 0; i < keys.size(); ++i) {
      EXPECT_DOUBLE_EQ(answers[i].mean_ms, t.Lookup(keys[i]).value().mean_ms);
      EXPECT_EQ(answers[i].count, 30);
    }
  }
  std::unique_ptr<LatencyServer> server = StartServer(dir);
  std::unique_ptr<LatencyClient> client = ClientOf(*server);
  std::vector<DeviceSummary> devices = client->ListDevices().value();
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].name, "pixel1-tflite");
  EXPECT_EQ(devices[1].name, "x86-2core-test");
  EXPECT_EQ(devices[1].version, 1u);
  std::vector<LayerLatency> answers;
  ASSERT_TRUE(client->Query("x86-2core-test", keys, &answers).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_DOUBLE_EQ(answers[i].mean_ms, t.Lookup(keys[i]).value().mean_ms);
  }
  // GetTable returns the stored table in our format.
  LatencyTable back =
      LatencyTable::ParseJson(client->GetTableJson("x86-2core-test").value()).value();
  EXPECT_EQ(back.size(), t.size());
  EXPECT_EQ(back.info().runtime, t.info().runtime);
}

TEST(LatencyServerTest, CalibrationTravelsThroughPutListGetRestartAndFetch) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/latency_server_test_calibration");
  std::filesystem::remove_all(dir);
  LatencyTable t = FashionTable("x86-2core-cal");
  LatencyCalibration c;
  c.overhead_ms = 0.1875;
  c.per_layer_ms = 0.0025;
  c.model = "linear";
  c.networks = 20;
  c.rejected = 1;
  c.min_layers = 5;
  c.max_layers = 10;
  c.raw_rmse_ms = 0.2;
  c.rmse_ms = 0.015;
  c.loo_rmse_ms = 0.018;
  c.max_error_pct = 3.5;
  t.mutable_info().calibration = c;
  auto expect_calibration = [&](const std::optional<LatencyCalibration>& got) {
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->overhead_ms, c.overhead_ms);
    EXPECT_EQ(got->per_layer_ms, c.per_layer_ms);
    EXPECT_EQ(got->model, c.model);
    EXPECT_EQ(got->networks, c.networks);
    EXPECT_EQ(got->rejected, c.rejected);
    EXPECT_EQ(got->min_layers, c.min_layers);
    EXPECT_EQ(got->max_layers, c.max_layers);
    EXPECT_EQ(got->raw_rmse_ms, c.raw_rmse_ms);
    EXPECT_EQ(got->rmse_ms, c.rmse_ms);
    EXPECT_EQ(got->loo_rmse_ms, c.loo_rmse_ms);
    EXPECT_EQ(got->max_error_pct, c.max_error_pct);
  };
  {
    std::unique_ptr<LatencyServer> server = StartServer(dir);
    std::unique_ptr<LatencyClient> client = ClientOf(*server);
    absl::StatusOr<DeviceSummary> put = client->PutTableJson(t.ToJson(), /*merge=*/false);
    ASSERT_TRUE(put.ok()) << put.status();
    expect_calibration(put->calibration);
  }
  std::unique_ptr<LatencyServer> server = StartServer(dir);
  std::unique_ptr<LatencyClient> client = ClientOf(*server);
  std::vector<DeviceSummary> devices = client->ListDevices().value();
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_FALSE(devices[0].calibration.has_value());  // pixel1-tflite: the YAML import
  expect_calibration(devices[1].calibration);
  LatencyTable back =
      LatencyTable::ParseJson(client->GetTableJson("x86-2core-cal").value()).value();
  expect_calibration(back.info().calibration);
  // The table a search fetches carries it, so its latency model adds the same correction.
  SearchSpace fashion = SearchSpace::Preset("fashion-mnist").value();
  LatencyTable job = FetchLatencyTable(*client, "x86-2core-cal", fashion.AllLayerKeys()).value();
  expect_calibration(job.info().calibration);
  std::vector<std::string> keys = fashion.Derive(fashion.LargestChoices()).value().LayerKeys();
  EXPECT_NEAR(job.PredictNetwork(keys).value(),
              t.SumMeans(keys).value() + 0.1875 + 0.0025 * static_cast<double>(keys.size()),
              1e-12);
  SearchSpace cifar = SearchSpace::Preset("cifar10").value();
  EXPECT_FALSE(FetchLatencyTable(*client, "pixel1-tflite", cifar.AllLayerKeys())
                   .value()
                   .info()
                   .calibration.has_value());
}

TEST(LatencyServerTest, MetricsEndpointCountsQueriesBySource) {
  std::unique_ptr<LatencyServer> server = StartServer("", /*metrics_port=*/0);
  ASSERT_GT(server->metrics_port(), 0);
  std::unique_ptr<LatencyClient> client = ClientOf(*server);
  std::vector<std::string> keys = MobileKeys();  // 72 measured
  const std::string predicted =
      "expanded_conv-input:28x28x48-output:28x28x48-expand:4-kernel:5-stride:1-idskip:1";
  keys.push_back(predicted);
  std::vector<LayerLatency> answers;
  ASSERT_TRUE(client->Query("pixel1-tflite", keys, &answers).ok());
  ASSERT_TRUE(client->Query("pixel1-tflite", {predicted}, &answers).ok());
  EXPECT_FALSE(client->Query("pixel9", {predicted}, &answers).ok());

  std::string text = HttpGet(server->metrics_port(), "/metrics");
  ASSERT_THAT(text, HasSubstr("# TYPE nas_latency_queries_total counter"));
  EXPECT_EQ(Sample(text, "nas_latency_queries_total{device=\"pixel1-tflite\",source=\"measured\"}"),
            72);
  EXPECT_EQ(
      Sample(text, "nas_latency_queries_total{device=\"pixel1-tflite\",source=\"predicted\"}"), 2);
  EXPECT_EQ(Sample(text, "nas_latency_cache_hits_total{device=\"pixel1-tflite\"}"), 1);
  EXPECT_EQ(Sample(text, "nas_latency_cache_misses_total{device=\"pixel1-tflite\"}"), 1);
  EXPECT_EQ(Sample(text, "nas_latency_query_keys_count"), 2);
  EXPECT_EQ(Sample(text, "nas_latency_query_keys_sum"), 74);
  EXPECT_EQ(Sample(text, "nas_latency_query_keys_bucket{le=\"1\"}"), 1);
  EXPECT_EQ(Sample(text, "nas_latency_query_seconds_count"), 2);
  EXPECT_EQ(Sample(text, "nas_latency_query_errors_total{code=\"NOT_FOUND\"}"), 1);
  EXPECT_EQ(Sample(text, "nas_latency_devices"), 1);
  EXPECT_THAT(text, ::testing::Not(HasSubstr("pixel9")));
}

TEST(LatencyServerTest, FetchLatencyTableGivesASearchItsTable) {
  std::unique_ptr<LatencyServer> server = StartServer("");
  std::unique_ptr<LatencyClient> client = ClientOf(*server);
  // The paper's space: every key is in the pixel1 table.
  SearchSpace imagenet = SearchSpace::Preset("proxyless-imagenet").value();
  absl::StatusOr<LatencyTable> t =
      FetchLatencyTable(*client, "pixel1-tflite", imagenet.AllLayerKeys());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->size(), imagenet.AllLayerKeys().size());
  LatencyTable file = LatencyTable::Load(kMobileTrim).value();
  for (const auto& [k, e] : t->entries()) {
    EXPECT_DOUBLE_EQ(e.mean_ms, file.Lookup(k).value().mean_ms);
    EXPECT_EQ(e.count, file.Lookup(k).value().count);
  }
  EXPECT_THAT(t->info().method, HasSubstr(" 0 predicted"));
  // CIFAR-10 sizes are not in the phone's table: every key is predicted, and says so, and the
  // keys outside the range of the phone's entries say that too.
  SearchSpace cifar = SearchSpace::Preset("cifar10").value();
  t = FetchLatencyTable(*client, "pixel1-tflite", cifar.AllLayerKeys());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->info().method,
              HasSubstr(absl::StrCat(" 0 measured, ", cifar.AllLayerKeys().size(), " predicted")));
  EXPECT_THAT(t->info().method, HasSubstr("extrapolated beyond the fitted range"));
  for (const auto& [k, e] : t->entries()) EXPECT_GT(e.var, 0) << k;  // a spread, not 0
  // Fashion-MNIST's 28x28x1 stem is 384x smaller than the phone's only stem entry: refused
  // rather than guessed.
  SearchSpace fashion = SearchSpace::Preset("fashion-mnist").value();
  absl::Status refused =
      FetchLatencyTable(*client, "pixel1-tflite", fashion.AllLayerKeys()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("Conv-input:28x28x1-output:14x14x16"));
  EXPECT_THAT(refused.message(), HasSubstr("the limit is 100x"));
  EXPECT_EQ(FetchLatencyTable(*client, "pixel9", fashion.AllLayerKeys()).status().code(),
            absl::StatusCode::kNotFound);
}

// Hostile requests: each class is refused with a clear status naming the field and the limit,
// the server stays up (a normal query still works), and no device's table changes.
class HostileRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/latency_server_hostile");
    std::filesystem::remove_all(dir_);
    LatencyServer::Options o;
    o.address = "127.0.0.1";
    o.registry.table_dir = dir_;
    o.registry.builtin_tables = {{"pixel1-tflite", kMobileTrim}};
    o.registry.max_keys_per_query = 1000;
    server_ = LatencyServer::Start(o).value();
    client_ = ClientOf(*server_);
    ASSERT_TRUE(client_->PutTableJson(FashionTable("x86-2core").ToJson(), false).ok());
    before_ = Snapshot();
  }
  std::vector<std::string> Snapshot() {
    return {client_->GetTableJson("pixel1-tflite").value(),
            client_->GetTableJson("x86-2core").value()};
  }
  // The server still answers, and nothing changed.
  void ExpectUnharmed() {
    std::vector<LayerLatency> answers;
    absl::Status s = client_->Query("pixel1-tflite", MobileKeys(), &answers);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_EQ(answers.size(), 72u);
    EXPECT_EQ(Snapshot(), before_);
    EXPECT_EQ(client_->ListDevices().value().size(), 2u);
  }
  void ExpectQueryError(const std::string& device, const std::vector<std::string>& keys,
                        absl::StatusCode code, const std::vector<std::string>& parts) {
    std::vector<LayerLatency> answers;
    absl::Status s = client_->Query(device, keys, &answers);
    EXPECT_EQ(s.code(), code) << s;
    for (const std::string& p : parts) EXPECT_THAT(s.message(), HasSubstr(p));
    ExpectUnharmed();
  }
  void ExpectPutError(const std::string& content, absl::StatusCode code,
                      const std::vector<std::string>& parts) {
    absl::Status s = client_->PutTableJson(content, /*merge=*/false).status();
    EXPECT_EQ(s.code(), code) << s;
    for (const std::string& p : parts) EXPECT_THAT(s.message(), HasSubstr(p));
    s = client_->PutTableJson(content, /*merge=*/true).status();
    EXPECT_EQ(s.code(), code) << s;
    ExpectUnharmed();
  }
  std::string dir_;
  std::unique_ptr<LatencyServer> server_;
  std::unique_ptr<LatencyClient> client_;
  std::vector<std::string> before_;
};

TEST_F(HostileRequestTest, InconsistentKeysAreRefusedNotPredicted) {
  std::vector<std::string> keys = MobileKeys();
  keys.push_back(
      "expanded_conv-input:999x999x16-output:9x9x16-expand:3-kernel:3-stride:1-idskip:0");
  ExpectQueryError("pixel1-tflite", keys, absl::StatusCode::kInvalidArgument,
                   {"layer_keys[72]", "999x999x16", "output 9x9 is not input 999x999 at stride 1"});
  ExpectQueryError(
      "pixel1-tflite",
      {"expanded_conv-input:56x56x24-output:28x28x24-expand:3-kernel:3-stride:2-idskip:1"},
      absl::StatusCode::kInvalidArgument, {"layer_keys[0]", "idskip 1 needs stride 1"});
  ExpectQueryError("pixel1-tflite", {"Conv_1-input:7x7x320-output:1x1x1280"},
                   absl::StatusCode::kInvalidArgument, {"layer_keys[0]", "differs from input 7x7"});
}

TEST_F(HostileRequestTest, PredictedAnswersCarryTheirSpreadAndFlag) {
  std::vector<LayerLatency> answers;
  // Inside the phone's range, and beyond it (a 32x32 stem: 12x less work than its 224x224 one).
  ASSERT_TRUE(client_
                  ->Query("pixel1-tflite",
                          {"expanded_conv-input:28x28x48-output:28x28x48-expand:4-kernel:5-stride:"
                           "1-idskip:1",
                           "Conv-input:32x32x3-output:32x32x32"},
                          &answers)
                  .ok());
  EXPECT_EQ(answers[0].source, LatencySource::kPredicted);
  EXPECT_GT(answers[0].std_ms, 0.01 * answers[0].mean_ms);  // the held-out error, not 0
  EXPECT_LT(answers[0].std_ms, answers[0].mean_ms);
  EXPECT_FALSE(answers[0].extrapolated);
  EXPECT_TRUE(answers[1].extrapolated);
  EXPECT_DOUBLE_EQ(answers[1].std_ms, answers[1].mean_ms);  // one stem entry: no estimate
  // Far out: refused, naming the limit.
  ExpectQueryError("pixel1-tflite",
                   {"expanded_conv-input:4096x4096x960-output:4096x4096x960-expand:6-kernel:7-"
                    "stride:1-idskip:1"},
                   absl::StatusCode::kFailedPrecondition,
                   {"layer_keys[0]", "above the largest", "limit is 100x"});
}

TEST_F(HostileRequestTest, QueryBoundsAreEnforcedAtTheEdge) {
  // Keys per query.
  std::vector<std::string> many(1001, MobileKeys()[0]);
  ExpectQueryError("pixel1-tflite", many, absl::StatusCode::kResourceExhausted,
                   {"layer_keys: 1001 keys exceed the limit of 1000 per query"});
  // Key length: the message quotes only the start of the key.
  ExpectQueryError("pixel1-tflite", {"Conv-input:" + std::string(100000, '1')},
                   absl::StatusCode::kInvalidArgument,
                   {"layer_keys[0]", "100011 bytes, over the limit of 256"});
  // Device names: bounded and of a safe alphabet.
  ExpectQueryError(std::string(200, 'd'), MobileKeys(), absl::StatusCode::kInvalidArgument,
                   {"device: device name must have 1 to 128 characters, got 200"});
  ExpectQueryError("etc/passwd", MobileKeys(), absl::StatusCode::kInvalidArgument,
                   {"device: device name", "only use letters, digits"});
  ExpectQueryError("", MobileKeys(), absl::StatusCode::kInvalidArgument, {"device"});
  // A message beyond a server's max_message_bytes (1 MiB here): gRPC refuses it before any
  // handler runs, and the server goes on serving.
  LatencyServer::Options o;
  o.address = "127.0.0.1";
  o.registry.builtin_tables = {{"pixel1-tflite", kMobileTrim}};
  o.max_message_bytes = 1 << 20;
  std::unique_ptr<LatencyServer> small = LatencyServer::Start(o).value();
  std::unique_ptr<LatencyClient> small_client = ClientOf(*small);
  std::vector<std::string> big(100, std::string(30000, 'k'));
  std::vector<LayerLatency> answers;
  absl::Status s = small_client->Query("pixel1-tflite", big, &answers);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  s = small_client->PutTableJson(std::string(2 << 20, ' '), false).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(small_client->Query("pixel1-tflite", MobileKeys(), &answers).ok());
  ExpectUnharmed();
  EXPECT_EQ(client_->GetTableJson("bad/name").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HostileRequestTest, PutTableBoundsAreEnforcedAtTheEdge) {
  const std::string head = R"({"format": "nas-latency-table/1", "device": "x86-2core", )";
  const std::string stem = "\"Conv-input:28x28x1-output:14x14x16\"";
  // Content bytes (under the 64 MiB message limit, so the handler's own check answers).
  ExpectPutError(
      head + R"("entries": {}, "method": ")" + std::string(kMaxLatencyTableBytes, 'm') + "\"}",
      absl::StatusCode::kResourceExhausted,
      {"table.content", "exceed the limit of 16777216 bytes"});
  // 2 MiB of nested JSON (this overflowed the server's stack).
  ExpectPutError(std::string(1 << 20, '[') + std::string(1 << 20, ']'),
                 absl::StatusCode::kInvalidArgument, {"nested deeper"});
  // Numbers out of range, non-finite, negative; absurd counts.
  ExpectPutError(head + R"("entries": {)" + stem + R"(: {"count": 5, "mean": 1e999, "var": 0}}})",
                 absl::StatusCode::kInvalidArgument, {"table.content"});
  ExpectPutError(head + R"("entries": {)" + stem + R"(: {"count": 5, "mean": 1e300, "var": 0}}})",
                 absl::StatusCode::kInvalidArgument,
                 {"table.content", "Conv-input:28x28x1-output:14x14x16", ".mean"});
  ExpectPutError(head + R"("entries": {)" + stem + R"(: {"count": 5, "mean": 0.1, "var": -2}}})",
                 absl::StatusCode::kInvalidArgument, {"table.content", ".var"});
  ExpectPutError(head + R"("entries": {)" + stem + R"(: {"count": -5, "mean": 0.1, "var": 0}}})",
                 absl::StatusCode::kInvalidArgument, {"table.content", ".count"});
  ExpectPutError(
      head + R"("entries": {)" + stem + R"(: {"count": 9999999999999, "mean": 0.1, "var": 0}}})",
      absl::StatusCode::kInvalidArgument, {"table.content", "count"});
  // An inconsistent key in a table.
  ExpectPutError(head + R"("entries": {"Conv-input:28x28x1-output:3x3x16": )" +
                     R"({"count": 5, "mean": 0.1, "var": 0}}})",
                 absl::StatusCode::kInvalidArgument, {"table.content", "output 3x3"});
  // A device name that is not a file name.
  ExpectPutError(R"({"format": "nas-latency-table/1", "device": "../x", "entries": {)" + stem +
                     R"(: {"count": 5, "mean": 0.1, "var": 0}}})",
                 absl::StatusCode::kInvalidArgument, {"table.device"});
  // Too many entries.
  LatencyTable many(LatencyTableInfo{"x86-2core", "libtorch-cpu", 1, 2, "", ""});
  for (size_t i = 1; i <= kMaxLatencyTableEntries; ++i) {
    ASSERT_TRUE(many.Insert(absl::StrCat("Logits-input:1x1x1-output:", i), {1, 1.0, 0}).ok());
  }
  nlohmann::json j = nlohmann::json::parse(many.ToJson());
  j["entries"]["Logits-input:1x1x2-output:1"] = {{"count", 1}, {"mean", 1.0}, {"var", 0.0}};
  ExpectPutError(j.dump(), absl::StatusCode::kResourceExhausted,
                 {"table.content", "65537 entries exceed the limit of 65536"});
  // A merge that would grow the stored table past the limit is refused the same way.
  LatencyTable half(LatencyTableInfo{"x86-2core", "libtorch-cpu 1.13.1, 2 threads", 1, 2, "", ""});
  for (size_t i = 1; i <= kMaxLatencyTableEntries - 10; ++i) {
    ASSERT_TRUE(half.Insert(absl::StrCat("Logits-input:1x1x1-output:", i), {1, 1.0, 0}).ok());
  }
  absl::Status s = client_->PutTableJson(half.ToJson(), /*merge=*/true).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("limit of 65536 entries"));
  ExpectUnharmed();
}

}  // namespace
}  // namespace nas
