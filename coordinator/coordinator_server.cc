#include "coordinator/coordinator_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "coordinator/metrics.h"
#include "coordinator/search_service.h"
#include "coordinator/tenant_scope.h"
#include "coordinator/token_auth.h"
#include "coordinator/worker_gateway.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "latency_service/grpc_status.h"
#include "latency_service/grpc_tls.h"
#include "latency_service/latency_client.h"
#include "nas/search.grpc.pb.h"
#include "nas/worker.grpc.pb.h"

namespace nas {

namespace {

// Latencies from the latency service (one batch query per job, then kept in the job record).
class ServiceLatencyProvider : public LatencyProvider {
 public:
  explicit ServiceLatencyProvider(std::unique_ptr<LatencyClient> client)
      : client_(std::move(client)) {}
  absl::StatusOr<LatencyTable> Fetch(const std::string& device,
                                     const std::vector<std::string>& keys) override {
    return FetchLatencyTable(*client_, device, keys);
  }

 private:
  std::unique_ptr<LatencyClient> client_;
};

// Latencies from one local table file (its device name must match the job's).
class FileLatencyProvider : public LatencyProvider {
 public:
  explicit FileLatencyProvider(LatencyTable t) : table_(std::move(t)) {}
  absl::StatusOr<LatencyTable> Fetch(const std::string& device,
                                     const std::vector<std::string>& keys) override {
    if (device != table_.info().device) {
      return absl::NotFoundError(absl::StrCat("device: unknown device '", device,
                                              "' (this coordinator's table is for '",
                                              table_.info().device, "')"));
    }
    for (const std::string& k : keys) NAS_RETURN_IF_ERROR(table_.Lookup(k).status());
    return table_;
  }

 private:
  LatencyTable table_;
};

}  // namespace

struct CoordinatorServer::Impl {
  std::unique_ptr<CoordinatorMetrics> metrics;
  std::unique_ptr<CheckpointStore> store;
  std::unique_ptr<LatencyProvider> latency;
  std::unique_ptr<QuotaFile> quotas;  // before jobs, which asks it on every tick
  std::unique_ptr<JobManager> jobs;
  std::unique_ptr<TokenAuthenticator> auth;  // null: no authentication
  std::unique_ptr<adapter::Callers> callers;
  std::unique_ptr<TenantScope> scope;  // the users' operations with the tenant rules
  std::unique_ptr<SearchServiceAdapter> search;
  std::unique_ptr<WorkerGateway::Service> gateway;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpc::Server> worker_server;  // the gateway's own port, when it has one
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = 0;
  int worker_port = 0;
  int metrics_port = -1;
  absl::Duration shutdown_grace;
  bool shut_down = false;
};

CoordinatorServer::CoordinatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(Options o) {
  if (o.db_dir.empty()) return absl::InvalidArgumentError("db: a RocksDB directory is required");
  if (o.port < 0 || o.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port: ", o.port, " is not 0..65535"));
  }
  // Options that can be checked without side effects first.
  NAS_ASSIGN_OR_RETURN(auto credentials, ServerCredentialsFor(o.tls_cert, o.tls_key));
  auto impl = std::make_unique<Impl>();
  impl->shutdown_grace = o.shutdown_grace;
  impl->metrics = std::make_unique<CoordinatorMetrics>();
  CheckpointStoreOptions so;
  so.sync = o.sync;
  NAS_ASSIGN_OR_RETURN(impl->store, CheckpointStore::Open(o.db_dir, so));
  if (!o.latency_table.empty()) {
    NAS_ASSIGN_OR_RETURN(LatencyTable t, LatencyTable::Load(o.latency_table));
    impl->latency = std::make_unique<FileLatencyProvider>(std::move(t));
  } else if (!o.latency_service.empty()) {
    LatencyClientOptions lo;
    lo.timeout = absl::Seconds(10);
    lo.tls_ca = o.latency_tls_ca;
    NAS_ASSIGN_OR_RETURN(std::unique_ptr<LatencyClient> c,
                         LatencyClient::Connect(o.latency_service, lo));
    impl->latency = std::make_unique<ServiceLatencyProvider>(std::move(c));
  }
  o.jobs.metrics = impl->metrics.get();
  if (!o.quotas_file.empty()) {
    NAS_ASSIGN_OR_RETURN(impl->quotas, QuotaFile::Open(o.quotas_file));
    o.jobs.quotas = [q = impl->quotas.get()] { return q->Get(); };
  }
  NAS_ASSIGN_OR_RETURN(impl->jobs,
                       JobManager::Create(impl->store.get(), impl->latency.get(), o.jobs));
  if (!o.tokens_file.empty()) {
    TokenAuthenticatorOptions ao;
    ao.path = o.tokens_file;
    NAS_ASSIGN_OR_RETURN(impl->auth, TokenAuthenticator::Open(ao));
  }
  impl->callers = std::make_unique<adapter::Callers>(impl->auth.get());
  impl->scope = std::make_unique<TenantScope>(impl->jobs.get(), impl->auth != nullptr);
  impl->search = std::make_unique<SearchServiceAdapter>(impl->scope.get(), impl->callers.get());
  impl->gateway = NewWorkerGatewayAdapter(impl->jobs.get(), impl->callers.get());
  // Every server built from here has the standard health service (grpc.health.v1) and server
  // reflection (what grpcurl and Kubernetes' gRPC probes use).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  auto build =
      [&](int port, int* bound,
          std::vector<grpc::Service*> services) -> absl::StatusOr<std::unique_ptr<grpc::Server>> {
    grpc::ServerBuilder builder;
    const std::string address = absl::StrCat(o.address, ":", port);
    builder.AddListeningPort(address, credentials, bound);
    builder.SetMaxReceiveMessageSize(o.max_message_bytes);
    // Clients may keep idle connections alive (nasctl watch, long polls) with pings as often as
    // every 10 s, also between calls; gRPC's default answers pings more frequent than 5 min
    // with GOAWAY "too_many_pings".
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    builder.SetMaxSendMessageSize(64 << 20);  // results and inline tensors; receivers bound theirs
    // Keep polling threads alive between calls: the sync server otherwise creates and destroys a
    // thread per burst of calls, which dominated the coordinator's CPU per task.
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 4);
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 64);
    for (grpc::Service* service : services) builder.RegisterService(service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (server == nullptr || *bound == 0) {
      return absl::UnavailableError(absl::StrCat("port: cannot listen on ", address));
    }
    // NOT_SERVING until Start has finished (SetServing below).
    server->GetHealthCheckService()->SetServingStatus(false);
    return server;
  };
  if (o.worker_port < 0) {
    NAS_ASSIGN_OR_RETURN(impl->server,
                         build(o.port, &impl->port, {impl->search.get(), impl->gateway.get()}));
    impl->worker_port = impl->port;
  } else {
    NAS_ASSIGN_OR_RETURN(impl->server, build(o.port, &impl->port, {impl->search.get()}));
    NAS_ASSIGN_OR_RETURN(impl->worker_server,
                         build(o.worker_port, &impl->worker_port, {impl->gateway.get()}));
  }
  if (impl->auth == nullptr) {
    std::fprintf(stderr,
                 "coordinator: no --tokens_file: every caller is trusted as an admin and every "
                 "worker is accepted; give one before exposing the ports beyond this machine\n");
  }
  if (o.metrics_port >= 0) {
    NAS_ASSIGN_OR_RETURN(impl->exposer,
                         impl->metrics->Expose(absl::StrCat(o.address, ":", o.metrics_port)));
    std::vector<int> ports = impl->exposer->GetListeningPorts();
    impl->metrics_port = ports.empty() ? -1 : ports[0];
  }
  // Recovered, both ports and the exposer up: serving. Each service by name too ("" is the
  // server as a whole, what a Kubernetes probe asks).
  auto serving = [](grpc::Server* server, std::vector<std::string> services) {
    grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
    for (const std::string& name : services) health->SetServingStatus(name, true);
    health->SetServingStatus(true);
  };
  if (impl->worker_server == nullptr) {
    serving(impl->server.get(), {SearchService::service_full_name(),
                                 WorkerGateway::service_full_name()});
  } else {
    serving(impl->server.get(), {SearchService::service_full_name()});
    serving(impl->worker_server.get(), {WorkerGateway::service_full_name()});
  }
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(impl)));
}

int CoordinatorServer::port() const { return impl_->port; }
int CoordinatorServer::worker_port() const { return impl_->worker_port; }
int CoordinatorServer::metrics_port() const { return impl_->metrics_port; }
JobManager& CoordinatorServer::jobs() { return *impl_->jobs; }

void CoordinatorServer::Shutdown() {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  // In order: the health service says NOT_SERVING on both ports (for good: later updates are
  // ignored), so that probes and health-checking balancers stop sending calls; open watch streams and long polls end with UNAVAILABLE (and new ones are refused
  // the same way); the server stops accepting and waits for the handlers in flight (cancelling
  // what is left after the grace period); only then are the domain objects destroyed, since
  // until Wait() returns a handler may still be using them.
  impl_->server->GetHealthCheckService()->Shutdown();
  if (impl_->worker_server != nullptr) impl_->worker_server->GetHealthCheckService()->Shutdown();
  impl_->jobs->Stop();
  const auto deadline =
      std::chrono::system_clock::now() + absl::ToChronoMilliseconds(impl_->shutdown_grace);
  impl_->server->Shutdown(deadline);
  if (impl_->worker_server != nullptr) impl_->worker_server->Shutdown(deadline);
  impl_->server->Wait();
  if (impl_->worker_server != nullptr) impl_->worker_server->Wait();
  impl_->exposer.reset();
  impl_->search.reset();
  impl_->gateway.reset();
  impl_->jobs.reset();
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

}  // namespace nas
