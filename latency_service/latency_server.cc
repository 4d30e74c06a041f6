#include "latency_service/latency_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <cstdio>
#include <exception>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "latency_service/grpc_tls.h"
#include "latency_service/latency_grpc_service.h"
#include "latency_service/metrics.h"
#include "prometheus/exposer.h"

namespace nas {

struct LatencyServer::Impl {
  std::unique_ptr<LatencyMetrics> metrics;
  std::unique_ptr<LatencyRegistry> registry;
  std::unique_ptr<TokenAuthenticator> writers;  // nullptr: PutTable open to every caller
  std::unique_ptr<LatencyGrpcService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = 0;
  int metrics_port = -1;
  bool shut_down = false;
};

LatencyServer::LatencyServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<LatencyServer>> LatencyServer::Start(Options options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port: ", options.port, " is not 0..65535"));
  }
  if (options.metrics_port < -1 || options.metrics_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_port: ", options.metrics_port, " is not -1..65535"));
  }
  if (options.max_message_bytes < 1024 || options.max_message_bytes > (1 << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes: ", options.max_message_bytes,
                                                   " is not in 1024..", 1 << 30));
  }
  auto impl = std::make_unique<Impl>();
  impl->metrics = std::make_unique<LatencyMetrics>();
  options.registry.metrics = impl->metrics.get();
  NAS_ASSIGN_OR_RETURN(impl->registry, LatencyRegistry::Open(options.registry));
  if (!options.writer_tokens_file.empty()) {
    TokenAuthenticatorOptions ao;
    ao.path = options.writer_tokens_file;
    ao.server_name = "latency_server";
    ao.client_hint = "a writer token: latency_ctl --token_file or NAS_LATENCY_TOKEN";
    NAS_ASSIGN_OR_RETURN(impl->writers, TokenAuthenticator::Open(std::move(ao)));
  }
  impl->service = std::make_unique<LatencyGrpcService>(impl->registry.get(), impl->writers.get());

  // The standard health service (grpc.health.v1) and server reflection on the port.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.address, ":", options.port);
  NAS_ASSIGN_OR_RETURN(auto credentials, ServerCredentialsFor(options.tls_cert, options.tls_key));
  builder.AddListeningPort(address, credentials, &impl->port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("address: cannot listen on ", address));
  }
  grpc::HealthCheckServiceInterface* health = impl->server->GetHealthCheckService();
  health->SetServingStatus(false);  // until the exposer is up too
  if (options.metrics_port >= 0) {
    const std::string metrics_address = absl::StrCat(options.address, ":", options.metrics_port);
    try {
      impl->exposer = std::make_unique<prometheus::Exposer>(metrics_address);
    } catch (const std::exception& e) {
      impl->server->Shutdown();
      return absl::UnavailableError(
          absl::StrCat("metrics_port: cannot listen on ", metrics_address, ": ", e.what()));
    }
    impl->exposer->RegisterCollectable(impl->metrics->registry());
    std::vector<int> ports = impl->exposer->GetListeningPorts();
    impl->metrics_port = ports.empty() ? -1 : ports[0];
  }
  if (impl->writers == nullptr) {
    std::fprintf(stderr,
                 "latency_server: no --writer_tokens_file: any caller may replace any device's "
                 "table (PutTable); give one before exposing the port beyond this machine\n");
  }
  // The registry was loaded before the server was built: serving from here.
  health->SetServingStatus(LatencyService::service_full_name(), true);
  health->SetServingStatus(true);
  return std::unique_ptr<LatencyServer>(new LatencyServer(std::move(impl)));
}

int LatencyServer::port() const { return impl_->port; }
int LatencyServer::metrics_port() const { return impl_->metrics_port; }
LatencyRegistry& LatencyServer::registry() { return *impl_->registry; }

void LatencyServer::Shutdown() {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  // Health says NOT_SERVING first (for good). Calls in flight get a grace period, then are
  // cancelled: the server stops within a bound.
  impl_->server->GetHealthCheckService()->Shutdown();
  // The domain objects outlive the server (they are destroyed with Impl, after Wait()).
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  impl_->server->Wait();
  impl_->exposer.reset();
}

LatencyServer::~LatencyServer() { Shutdown(); }

}  // namespace nas
