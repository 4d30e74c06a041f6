#include "coordinator/coordinator_server.h"

#include <grpcpp/grpcpp.h>
#include <prometheus/exposer.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "coordinator/metrics.h"
#include "coordinator/token_auth.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "latency_service/grpc_status.h"
#include "latency_service/grpc_tls.h"
#include "latency_service/latency_client.h"
#include "nas/search.grpc.pb.h"
#include "nas/worker.grpc.pb.h"
#include "proto/tensor_codec.h"

namespace nas {

namespace {

constexpr size_t kChunkBytes = kDefaultChunkBytes;
// The tensor data of one CompleteTask stream (a supernet within SpaceLimits, with its momentum,
// is at most 3.2 GB).
constexpr int64_t kMaxResultStreamBytes = int64_t{4} << 30;
// A SubmitJob request: a spec with the largest space document and room for its other fields.
constexpr size_t kMaxSubmitBytes = SpaceLimits::kMaxJsonBytes + (64 << 10);

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

// Requests that name a job, a lease or a worker and little else.
constexpr size_t kMaxSmallRequestBytes = 4 << 10;

// RESOURCE_EXHAUSTED naming the method and the limit when `request` is larger than `limit`.
grpc::Status CheckSize(const char* method, const google::protobuf::Message& request, size_t limit) {
  if (size_t n = request.ByteSizeLong(); n > limit) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat(method, ": ", n, " bytes, over the limit of ", limit));
  }
  return grpc::Status::OK;
}

// Runs a handler's body so that no exception escapes it (gRPC would answer "Unexpected error in
// RPC handling" without saying what): memory is RESOURCE_EXHAUSTED, anything else INTERNAL,
// both naming the method. The request's size is checked first.
template <typename Body>
grpc::Status Handle(const char* method, const google::protobuf::Message* request, size_t limit,
                    Body&& body) {
  try {
    if (request != nullptr) {
      grpc::Status s = CheckSize(method, *request, limit);
      if (!s.ok()) return s;
    }
    return body();
  } catch (const std::bad_alloc&) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat(method, ": out of memory"));
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::INTERNAL, absl::StrCat(method, ": ", e.what()));
  }
}

// Who is calling: the bearer token of the call's `authorization` metadata, checked against the
// tokens file. Without a tokens file every caller is trusted (an anonymous admin, or worker).
class Callers {
 public:
  explicit Callers(TokenAuthenticator* auth) : auth_(auth) {}
  bool enabled() const { return auth_ != nullptr; }

  // A user or an admin; a worker's (or a latency table writer's) credential is
  // PERMISSION_DENIED here.
  absl::StatusOr<Identity> User(const grpc::ServerContext* ctx) const {
    if (auth_ == nullptr) return Identity{"", "", Role::kAdmin};
    NAS_ASSIGN_OR_RETURN(Identity who, auth_->Authenticate(Header(ctx)));
    if (who.role == Role::kWorker || who.role == Role::kWriter) {
      return absl::PermissionDeniedError(
          absl::StrCat("authorization: this token is a ", RoleName(who.role),
                       "'s credential; the user service takes user tokens"));
    }
    return who;
  }
  // A worker; a user's or an admin's token is PERMISSION_DENIED here.
  absl::Status Worker(const grpc::ServerContext* ctx) const {
    if (auth_ == nullptr) return absl::OkStatus();
    NAS_ASSIGN_OR_RETURN(Identity who, auth_->Authenticate(Header(ctx)));
    if (who.role != Role::kWorker) {
      return absl::PermissionDeniedError(
          "authorization: this token is a user's; the worker gateway takes worker credentials");
    }
    return absl::OkStatus();
  }

 private:
  static absl::string_view Header(const grpc::ServerContext* ctx) {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it == md.end()) return {};
    return absl::string_view(it->second.data(), it->second.size());
  }
  TokenAuthenticator* auth_;
};

class SearchServiceImpl final : public SearchService::Service {
 public:
  SearchServiceImpl(JobManager* jobs, const Callers* callers) : jobs_(jobs), callers_(callers) {}

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const SubmitJobRequest* req,
                         SubmitJobReply* reply) override {
    return Handle("SubmitJob", req, kMaxSubmitBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      JobSpec spec = req->spec();
      if (callers_->enabled()) {  // the job is the caller's, whatever the request says
        spec.set_tenant(who->tenant);
        spec.set_owner(who->user);
      }
      auto id = jobs_->Submit(spec);
      if (!id.ok()) return ToGrpcStatus(id.status());
      reply->set_job_id(*id);
      return grpc::Status::OK;
    });
  }
  grpc::Status GetJob(grpc::ServerContext* ctx, const GetJobRequest* req,
                      JobStatus* reply) override {
    return Handle("GetJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      auto s = jobs_->Get(req->job_id());
      if (s.ok() && who->role != Role::kAdmin && s->tenant() != who->tenant) {
        return ToGrpcStatus(Visible(*who, req->job_id()));
      }
      if (!s.ok()) return ToGrpcStatus(s.status());
      *reply = *s;
      return grpc::Status::OK;
    });
  }
  grpc::Status ListJobs(grpc::ServerContext* ctx, const ListJobsRequest* req,
                        ListJobsReply* reply) override {
    return Handle("ListJobs", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      std::string tenant = req->tenant();
      if (who->role != Role::kAdmin) {
        if (!tenant.empty() && tenant != who->tenant) return grpc::Status::OK;  // none visible
        tenant = who->tenant;
      }
      for (JobStatus& s : jobs_->List(tenant)) *reply->add_jobs() = std::move(s);
      return grpc::Status::OK;
    });
  }
  grpc::Status WatchJob(grpc::ServerContext* ctx, const GetJobRequest* req,
                        grpc::ServerWriter<JobStatus>* writer) override {
    return Handle("WatchJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      if (absl::Status v = Visible(*who, req->job_id()); !v.ok()) return ToGrpcStatus(v);
      auto s = jobs_->Get(req->job_id());
      if (!s.ok()) return ToGrpcStatus(s.status());
      JobStatus last = *s;
      if (!writer->Write(last)) return grpc::Status::OK;
      while (!ctx->IsCancelled()) {
        if (last.state() == "DONE" || last.state() == "FAILED" || last.state() == "CANCELLED")
          break;
        auto next = jobs_->WaitForChange(req->job_id(), last, absl::Seconds(1));
        if (!next.ok()) return ToGrpcStatus(next.status());
        if (next->SerializeAsString() == last.SerializeAsString()) continue;
        last = *next;
        if (!writer->Write(last)) break;
      }
      return grpc::Status::OK;
    });
  }
  grpc::Status CancelJob(grpc::ServerContext* ctx, const CancelJobRequest* req,
                         CancelJobReply*) override {
    return Handle("CancelJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      if (absl::Status v = Visible(*who, req->job_id()); !v.ok()) return ToGrpcStatus(v);
      return ToGrpcStatus(jobs_->Cancel(req->job_id()));
    });
  }
  grpc::Status DeleteJob(grpc::ServerContext* ctx, const DeleteJobRequest* req,
                         DeleteJobReply*) override {
    return Handle("DeleteJob", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      if (absl::Status v = Visible(*who, req->job_id()); !v.ok()) return ToGrpcStatus(v);
      return ToGrpcStatus(jobs_->Delete(req->job_id()));
    });
  }
  grpc::Status GetQueue(grpc::ServerContext* ctx, const GetQueueRequest* req,
                        GetQueueReply* reply) override {
    return Handle("GetQueue", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      std::string tenant = req->tenant();
      if (who->role != Role::kAdmin) {
        // A user sees its own tenant's queue (another's is as empty as an unknown one).
        if (!tenant.empty() && tenant != who->tenant) {
          *reply = jobs_->Queue(who->tenant);
          reply->clear_tenants();
          return grpc::Status::OK;
        }
        tenant = who->tenant;
      }
      *reply = jobs_->Queue(tenant);
      return grpc::Status::OK;
    });
  }
  grpc::Status GetResult(grpc::ServerContext* ctx, const GetJobRequest* req,
                         JobResult* reply) override {
    return Handle("GetResult", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      if (absl::Status v = Visible(*who, req->job_id()); !v.ok()) return ToGrpcStatus(v);
      auto r = jobs_->Result(req->job_id());
      if (!r.ok()) return ToGrpcStatus(r.status());
      *reply = std::move(*r);
      return grpc::Status::OK;
    });
  }
  grpc::Status GetArtifact(grpc::ServerContext* ctx, const GetArtifactRequest* req,
                           grpc::ServerWriter<ArtifactChunk>* writer) override {
    return Handle("GetArtifact", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      auto who = callers_->User(ctx);
      if (!who.ok()) return ToGrpcStatus(who.status());
      if (absl::Status v = Visible(*who, req->job_id()); !v.ok()) return ToGrpcStatus(v);
      auto a = jobs_->Artifact(req->job_id(), req->name());
      if (!a.ok()) return ToGrpcStatus(a.status());
      for (size_t off = 0; off < a->size() || off == 0; off += kChunkBytes) {
        ArtifactChunk c;
        c.set_data(a->substr(off, kChunkBytes));
        if (!writer->Write(c)) break;
        if (a->empty()) break;
      }
      return grpc::Status::OK;
    });
  }

 private:
  // OK when the caller may see the job: an admin any job, a user its tenant's. Another tenant's
  // job is NOT_FOUND with the message an unknown job gets, so its existence does not leak.
  absl::Status Visible(const Identity& who, const std::string& job_id) const {
    if (who.role == Role::kAdmin) return absl::OkStatus();
    auto st = jobs_->Get(job_id);
    if (!st.ok()) return st.status();
    if (st->tenant() != who.tenant) {
      return absl::NotFoundError(absl::StrCat("job_id: no job '", job_id, "'"));
    }
    return absl::OkStatus();
  }

  JobManager* jobs_;
  const Callers* callers_;
};

class WorkerGatewayImpl final : public WorkerGateway::Service {
 public:
  WorkerGatewayImpl(JobManager* jobs, const Callers* callers) : jobs_(jobs), callers_(callers) {}

  grpc::Status RegisterWorker(grpc::ServerContext* ctx, const RegisterWorkerRequest* req,
                              RegisterWorkerReply* reply) override {
    return Handle("RegisterWorker", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      auto r = jobs_->RegisterWorker(*req);
      if (!r.ok()) return ToGrpcStatus(r.status());
      *reply = *r;
      return grpc::Status::OK;
    });
  }
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const HeartbeatRequest* req,
                         HeartbeatReply* reply) override {
    return Handle("Heartbeat", req, kMaxSmallRequestBytes, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      auto r = jobs_->Heartbeat(*req);
      if (!r.ok()) return ToGrpcStatus(r.status());
      *reply = *r;
      return grpc::Status::OK;
    });
  }
  grpc::Status AcquireTask(grpc::ServerContext* ctx, const AcquireTaskRequest* req,
                           AcquireTaskReply* reply) override {
    return Handle("AcquireTask", nullptr, 0, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      return ToGrpcStatus(Acquire(*req, reply));
    });
  }
  grpc::Status FetchTensors(grpc::ServerContext* ctx, const FetchTensorsRequest* req,
                            grpc::ServerWriter<TensorBlob>* writer) override {
    return Handle("FetchTensors", nullptr, 0, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      std::vector<std::string> names(req->names().begin(), req->names().end());
      auto blobs = jobs_->Fetch(req->lease_id(), names);
      if (!blobs.ok()) return ToGrpcStatus(blobs.status());
      int64_t sent = 0;
      for (const auto& b : *blobs) {
        if (!SplitIntoChunks(*b, kChunkBytes, [&](TensorBlob&& c) { return writer->Write(c); })) {
          break;
        }
        sent += static_cast<int64_t>(b->data().size());
      }
      jobs_->CountSentBytes(sent);
      return grpc::Status::OK;
    });
  }
  grpc::Status CompleteTask(grpc::ServerContext* ctx,
                            grpc::ServerReader<CompleteTaskRequest>* reader,
                            CompleteTaskReply* reply) override {
    return Handle("CompleteTask", nullptr, 0, [&]() -> grpc::Status {
      if (absl::Status w = callers_->Worker(ctx); !w.ok()) return ToGrpcStatus(w);
      // One or more results: each outcome followed by its tensors' chunks, reassembled by the
      // codec (chunks in order, sizes declared by the first chunk and bounded; a name sent twice
      // within a result is refused by the job manager).
      std::vector<CompletedTask> results;
      ChunkAssemblerOptions limits;
      limits.max_total_bytes = kMaxResultStreamBytes;
      ChunkAssembler chunks(limits);
      auto invalid = [](const absl::Status& s) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
      };
      auto add = [&](TensorBlob&& c) -> grpc::Status {
        if (results.empty()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "outcome: must be the first message of CompleteTask");
        }
        absl::StatusOr<std::optional<TensorBlob>> whole = chunks.Add(std::move(c));
        if (!whole.ok()) return invalid(whole.status());
        if (whole->has_value()) results.back().tensors.push_back(std::move(**whole));
        return grpc::Status::OK;
      };
      CompleteTaskRequest msg;
      while (reader->Read(&msg)) {
        switch (msg.part_case()) {
          case CompleteTaskRequest::kOutcome:
            if (absl::Status s = chunks.Finish(); !s.ok()) return invalid(s);
            results.emplace_back();
            results.back().outcome = std::move(*msg.mutable_outcome());
            break;
          case CompleteTaskRequest::kTensor: {
            grpc::Status s = add(std::move(*msg.mutable_tensor()));
            if (!s.ok()) return s;
            break;
          }
          case CompleteTaskRequest::kTensors:
            for (TensorBlob& c : *msg.mutable_tensors()->mutable_blobs()) {
              grpc::Status s = add(std::move(c));
              if (!s.ok()) return s;
            }
            break;
          default:
            return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "CompleteTaskRequest: empty message (no outcome or tensor)");
        }
      }
      if (results.empty())
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "outcome: missing");
      if (absl::Status s = chunks.Finish(); !s.ok()) return invalid(s);
      // The request for the next task, moved out (it lists every tensor the worker caches).
      std::optional<AcquireTaskRequest> next;
      if (TaskOutcome& o = results.back().outcome; o.has_next()) {
        next.emplace();
        next->Swap(o.mutable_next());
        o.clear_next();
      }
      absl::Status last;
      for (CompletedTask& r : results) {
        last = jobs_->Complete(std::move(r));
        if (results.size() > 1) {
          reply->add_codes(static_cast<int32_t>(last.code()));
          reply->add_messages(std::string(last.message()));
        }
      }
      // One result: its status is the call's. Several: each in `codes`, the call succeeds.
      if (results.size() == 1 && !last.ok()) return ToGrpcStatus(last);
      if (!next.has_value()) return grpc::Status::OK;
      return ToGrpcStatus(Acquire(*next, reply->mutable_next()));
    });
  }

 private:
  // Up to max_tasks tasks (or idle), each with the tensors the worker lacks inline when they
  // fit its limit. A tensor inlined in an earlier task of the same reply is not repeated: a
  // worker absorbs a task's inline tensors before it runs the task, and runs a reply's tasks in
  // order (one that lacks a tensor all the same fetches it).
  absl::Status Acquire(const AcquireTaskRequest& req, AcquireTaskReply* reply) {
    int wait = std::clamp(req.wait_ms(), 0, 30000);
    int max_tasks = std::clamp(req.max_tasks(), 1, 256);
    Held held;
    for (int i = 0; i < max_tasks; ++i) {
      auto t =
          jobs_->Acquire(req.worker_id(), i == 0 ? absl::Milliseconds(wait) : absl::ZeroDuration());
      if (!t.ok()) {
        if (i == 0) return t.status();
        break;
      }
      if (!t->has_value()) {
        if (i == 0) reply->set_idle(true);
        break;
      }
      if (i == 0) {
        held.job = (*t)->job_id();
        held.versions.reserve(req.cached_size());
        for (const TensorRef& r : req.cached()) held.versions[r.name()] = r.version();
      }
      if ((*t)->job_id() == held.job) {
        Inline(req, held, **t);
      } else {  // names are per job: another job's task gets all it needs inline
        Held none;
        Inline(req, none, **t);
      }
      *(i == 0 ? reply->mutable_task() : reply->add_more()) = std::move(**t);
    }
    return absl::OkStatus();
  }

  // What the worker will hold when it runs the next task of a reply: its cache as it listed it,
  // plus what earlier tasks of the reply carried (the blobs kept alive for the names' views).
  struct Held {
    std::string job;  // the job of the reply's first task, which the cache list is taken for
    absl::flat_hash_map<absl::string_view, uint64_t> versions;
    std::vector<std::shared_ptr<const TensorBlob>> sent;
  };

  void Inline(const AcquireTaskRequest& req, Held& held, Task& task) {
    int64_t limit = std::min<int64_t>(req.inline_limit_bytes(), kChunkBytes * 4);
    if (limit <= 0 || task.tensors_size() == 0) return;
    std::vector<std::string> missing;
    for (const TensorRef& r : task.tensors()) {
      auto it = held.versions.find(r.name());
      if (it == held.versions.end() || it->second != r.version()) missing.push_back(r.name());
    }
    if (missing.empty()) return;
    auto blobs = jobs_->Fetch(task.lease_id(), missing);
    if (!blobs.ok()) return;
    int64_t total = 0;
    for (const auto& b : *blobs) total += static_cast<int64_t>(b->data().size());
    if (total > limit) return;
    task.mutable_inline_tensors()->Reserve(static_cast<int>(blobs->size()));
    for (const auto& b : *blobs) {
      *task.add_inline_tensors() = *b;
      held.versions[b->name()] = b->version();
      held.sent.push_back(b);
    }
    jobs_->CountSentBytes(total);
  }

  JobManager* jobs_;
  const Callers* callers_;
};

}  // namespace

struct CoordinatorServer::Impl {
  std::unique_ptr<CoordinatorMetrics> metrics;
  std::unique_ptr<CheckpointStore> store;
  std::unique_ptr<LatencyProvider> latency;
  std::unique_ptr<QuotaFile> quotas;  // before jobs, which asks it on every tick
  std::unique_ptr<JobManager> jobs;
  std::unique_ptr<TokenAuthenticator> auth;  // null: no authentication
  std::unique_ptr<Callers> callers;
  std::unique_ptr<SearchServiceImpl> search;
  std::unique_ptr<WorkerGatewayImpl> gateway;
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
  impl->callers = std::make_unique<Callers>(impl->auth.get());
  impl->search = std::make_unique<SearchServiceImpl>(impl->jobs.get(), impl->callers.get());
  impl->gateway = std::make_unique<WorkerGatewayImpl>(impl->jobs.get(), impl->callers.get());
  auto build =
      [&](int port, int* bound,
          std::vector<grpc::Service*> services) -> absl::StatusOr<std::unique_ptr<grpc::Server>> {
    grpc::ServerBuilder builder;
    const std::string address = absl::StrCat(o.address, ":", port);
    builder.AddListeningPort(address, credentials, bound);
    builder.SetMaxReceiveMessageSize(o.max_message_bytes);
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
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(impl)));
}

int CoordinatorServer::port() const { return impl_->port; }
int CoordinatorServer::worker_port() const { return impl_->worker_port; }
int CoordinatorServer::metrics_port() const { return impl_->metrics_port; }
JobManager& CoordinatorServer::jobs() { return *impl_->jobs; }

void CoordinatorServer::Shutdown() {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  // In order: open watch streams and long polls end with UNAVAILABLE (and new ones are refused
  // the same way); the server stops accepting and waits for the handlers in flight (cancelling
  // what is left after the grace period); only then are the domain objects destroyed, since
  // until Wait() returns a handler may still be using them.
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
