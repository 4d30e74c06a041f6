#include "worker/gateway_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "latency_service/grpc_tls.h"
#include "nas/worker.grpc.pb.h"

namespace nas {

namespace {

absl::Status ToAbsl(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

class GrpcGatewayClient : public GatewayClient {
 public:
  GrpcGatewayClient(GrpcGatewayClientOptions o, std::unique_ptr<WorkerGateway::Stub> stub)
      : o_(std::move(o)), stub_(std::move(stub)) {}

  absl::Status RegisterWorker(const RegisterWorkerRequest& request,
                              RegisterWorkerReply* reply) override {
    grpc::ClientContext context;
    Prepare(&context, o_.rpc_timeout);
    return ToAbsl(stub_->RegisterWorker(&context, request, reply));
  }

  absl::Status Heartbeat(const HeartbeatRequest& request, HeartbeatReply* reply) override {
    grpc::ClientContext context;
    Prepare(&context, o_.rpc_timeout);
    return ToAbsl(stub_->Heartbeat(&context, request, reply));
  }

  absl::Status AcquireTask(const AcquireTaskRequest& request, AcquireTaskReply* reply) override {
    grpc::ClientContext context;
    Prepare(&context, o_.rpc_timeout + absl::Milliseconds(request.wait_ms()));
    {
      absl::MutexLock l(&mu_);
      if (stopped_) return absl::CancelledError("stopped polling");
      poll_ = &context;
    }
    grpc::Status s = stub_->AcquireTask(&context, request, reply);
    absl::MutexLock l(&mu_);
    poll_ = nullptr;
    return ToAbsl(s);
  }

  void StopPolling() override {
    absl::MutexLock l(&mu_);
    stopped_ = true;
    if (poll_ != nullptr) poll_->TryCancel();
  }

  absl::Status ReleaseTask(const ReleaseTaskRequest& request, ReleaseTaskReply* reply) override {
    grpc::ClientContext context;
    Prepare(&context, std::min(o_.rpc_timeout, absl::Seconds(5)));
    return ToAbsl(stub_->ReleaseTask(&context, request, reply));
  }

  absl::Status FetchTensors(const FetchTensorsRequest& request,
                            const std::function<absl::Status(TensorBlob&&)>& on_blob) override {
    grpc::ClientContext context;
    Prepare(&context, o_.stream_timeout);
    std::unique_ptr<grpc::ClientReader<TensorBlob>> reader = stub_->FetchTensors(&context, request);
    absl::Status bad;
    TensorBlob blob;
    while (reader->Read(&blob)) {
      bad = on_blob(std::move(blob));
      blob.Clear();
      if (!bad.ok()) {
        context.TryCancel();
        break;
      }
    }
    grpc::Status s = reader->Finish();
    if (!bad.ok()) return bad;
    return ToAbsl(s);
  }

  absl::Status CompleteTask(const std::function<bool(const MessageWriter&)>& produce,
                            CompleteTaskReply* reply) override {
    grpc::ClientContext context;
    Prepare(&context, o_.stream_timeout);
    std::unique_ptr<grpc::ClientWriter<CompleteTaskRequest>> writer =
        stub_->CompleteTask(&context, reply);
    bool broken = false;
    bool complete = produce([&](const CompleteTaskRequest& m) {
      if (broken) return false;
      broken = !writer->Write(m);
      return !broken;
    });
    if (!complete) {
      context.TryCancel();  // a cancelled stream is never applied
    } else if (!broken) {
      writer->WritesDone();
    }
    return ToAbsl(writer->Finish());
  }

 private:
  void Prepare(grpc::ClientContext* context, absl::Duration timeout) const {
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
    if (!o_.token.empty()) context->AddMetadata("authorization", "Bearer " + o_.token);
  }

  const GrpcGatewayClientOptions o_;
  std::unique_ptr<WorkerGateway::Stub> stub_;
  absl::Mutex mu_;
  grpc::ClientContext* poll_ ABSL_GUARDED_BY(mu_) = nullptr;  // AcquireTask in flight
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayClient>> CreateGrpcGatewayClient(
    const GrpcGatewayClientOptions& o) {
  if (o.coordinator.empty()) {
    return absl::InvalidArgumentError("coordinator: required (host:port of the coordinator)");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(o.max_message_bytes);
  args.SetMaxSendMessageSize(o.max_message_bytes);
  NAS_ASSIGN_OR_RETURN(auto credentials, ChannelCredentialsFor(o.tls_ca));
  return std::unique_ptr<GatewayClient>(new GrpcGatewayClient(
      o, WorkerGateway::NewStub(grpc::CreateCustomChannel(o.coordinator, credentials, args))));
}

// --- the fake ---

void FakeGatewayClient::AddTask(Task task) {
  absl::MutexLock l(&mu_);
  tasks_.push_back(std::move(task));
}

void FakeGatewayClient::SetBlobs(const std::string& name, std::vector<TensorBlob> chunks) {
  absl::MutexLock l(&mu_);
  blobs_[name] = std::move(chunks);
}

void FakeGatewayClient::FailNext(const std::string& method, absl::Status status) {
  absl::MutexLock l(&mu_);
  failures_[method] = std::move(status);
}

void FakeGatewayClient::SetLeaseValid(bool valid) {
  absl::MutexLock l(&mu_);
  lease_valid_ = valid;
}

std::vector<FakeGatewayClient::Completion> FakeGatewayClient::completions() const {
  absl::MutexLock l(&mu_);
  return completions_;
}

std::vector<ReleaseTaskRequest> FakeGatewayClient::releases() const {
  absl::MutexLock l(&mu_);
  return releases_;
}

std::vector<FetchTensorsRequest> FakeGatewayClient::fetches() const {
  absl::MutexLock l(&mu_);
  return fetches_;
}

int FakeGatewayClient::registrations() const {
  absl::MutexLock l(&mu_);
  return registrations_;
}

absl::Status FakeGatewayClient::TakeFailure(const std::string& method) {
  auto it = failures_.find(method);
  if (it == failures_.end()) return absl::OkStatus();
  absl::Status s = it->second;
  failures_.erase(it);
  return s;
}

absl::Status FakeGatewayClient::RegisterWorker(const RegisterWorkerRequest& request,
                                               RegisterWorkerReply* reply) {
  absl::MutexLock l(&mu_);
  NAS_RETURN_IF_ERROR(TakeFailure("RegisterWorker"));
  ++registrations_;
  reply->set_worker_id(absl::StrCat("fake-worker-", registrations_));
  reply->set_heartbeat_ms(50);
  reply->set_lease_ms(500);
  return absl::OkStatus();
}

absl::Status FakeGatewayClient::Heartbeat(const HeartbeatRequest& request, HeartbeatReply* reply) {
  absl::MutexLock l(&mu_);
  NAS_RETURN_IF_ERROR(TakeFailure("Heartbeat"));
  reply->set_lease_valid(lease_valid_);
  return absl::OkStatus();
}

absl::Status FakeGatewayClient::AcquireTask(const AcquireTaskRequest& request,
                                            AcquireTaskReply* reply) {
  absl::MutexLock l(&mu_);
  if (stopped_) return absl::CancelledError("stopped polling");
  NAS_RETURN_IF_ERROR(TakeFailure("AcquireTask"));
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !tasks_.empty() || stopped_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(request.wait_ms()));
  if (stopped_) return absl::CancelledError("stopped polling");
  if (tasks_.empty()) {
    reply->set_idle(true);
    return absl::OkStatus();
  }
  *reply->mutable_task() = std::move(tasks_.front());
  tasks_.pop_front();
  return absl::OkStatus();
}

void FakeGatewayClient::StopPolling() {
  absl::MutexLock l(&mu_);
  stopped_ = true;
}

absl::Status FakeGatewayClient::ReleaseTask(const ReleaseTaskRequest& request,
                                            ReleaseTaskReply* reply) {
  absl::MutexLock l(&mu_);
  NAS_RETURN_IF_ERROR(TakeFailure("ReleaseTask"));
  releases_.push_back(request);
  return absl::OkStatus();
}

absl::Status FakeGatewayClient::FetchTensors(
    const FetchTensorsRequest& request, const std::function<absl::Status(TensorBlob&&)>& on_blob) {
  std::vector<TensorBlob> send;
  {
    absl::MutexLock l(&mu_);
    NAS_RETURN_IF_ERROR(TakeFailure("FetchTensors"));
    fetches_.push_back(request);
    for (const std::string& name : request.names()) {
      auto it = blobs_.find(name);
      if (it == blobs_.end()) {
        return absl::InvalidArgumentError(absl::StrCat("FetchTensors: no tensor ", name));
      }
      send.insert(send.end(), it->second.begin(), it->second.end());
    }
  }
  for (TensorBlob& b : send) NAS_RETURN_IF_ERROR(on_blob(std::move(b)));
  return absl::OkStatus();
}

absl::Status FakeGatewayClient::CompleteTask(
    const std::function<bool(const MessageWriter&)>& produce, CompleteTaskReply* reply) {
  {
    absl::MutexLock l(&mu_);
    NAS_RETURN_IF_ERROR(TakeFailure("CompleteTask"));
  }
  Completion c;
  bool first = true;
  bool complete = produce([&](const CompleteTaskRequest& m) {
    if (first) {
      c.outcome = m.outcome();
      first = false;
    } else {
      for (const TensorBlob& b : m.tensors().blobs()) c.blobs.push_back(b);
      if (m.has_tensor()) c.blobs.push_back(m.tensor());
    }
    return true;
  });
  if (!complete) return absl::CancelledError("CompleteTask: cancelled by the worker");
  absl::MutexLock l(&mu_);
  if (c.outcome.has_next()) {
    if (tasks_.empty()) {
      reply->mutable_next()->set_idle(true);
    } else {
      *reply->mutable_next()->mutable_task() = std::move(tasks_.front());
      tasks_.pop_front();
    }
  }
  completions_.push_back(std::move(c));
  return absl::OkStatus();
}

}  // namespace nas
