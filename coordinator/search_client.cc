#include "coordinator/search_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/json_fields.h"
#include "core/report_html.h"
#include "core/status_macros.h"
#include "latency_service/grpc_status.h"
#include "latency_service/grpc_tls.h"
#include "nas/search.grpc.pb.h"

namespace nas {

struct SearchClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<SearchService::Stub> stub;
  absl::Duration timeout;
  std::string authorization;  // "Bearer TOKEN", or empty

  // The call's deadline and credential.
  void Deadline(grpc::ClientContext* ctx) const {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
    Authorize(ctx);
  }
  void Authorize(grpc::ClientContext* ctx) const {
    if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
  }
};

absl::StatusOr<std::string> ClientToken(const std::string& token_file) {
  std::string path = token_file;
  if (path.empty()) {
    if (const char* t = std::getenv("NAS_TOKEN"); t != nullptr && *t != '\0') {
      return std::string(absl::StripAsciiWhitespace(t));
    }
    if (const char* f = std::getenv("NAS_TOKEN_FILE"); f != nullptr) path = f;
  }
  if (path.empty()) return std::string();
  NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 64 << 10));
  std::string first = text.substr(0, text.find('\n'));
  return std::string(absl::StripAsciiWhitespace(first));
}

SearchClient::SearchClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SearchClient::~SearchClient() = default;

absl::StatusOr<std::unique_ptr<SearchClient>> SearchClient::Connect(const std::string& target,
                                                                    absl::Duration timeout) {
  SearchClientOptions o;
  o.timeout = timeout;
  return Connect(target, o);
}

absl::StatusOr<std::unique_ptr<SearchClient>> SearchClient::Connect(const std::string& target,
                                                                    SearchClientOptions options) {
  if (target.empty()) return absl::InvalidArgumentError("coordinator: empty address");
  const absl::Duration timeout = options.timeout;
  auto impl = std::make_unique<Impl>();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  if (options.keepalive_time > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  if (options.max_reconnect_backoff > absl::ZeroDuration()) {
    const int max_ms = static_cast<int>(absl::ToInt64Milliseconds(options.max_reconnect_backoff));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_ms);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(max_ms, 1000));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(max_ms, 1000));
  }
  NAS_ASSIGN_OR_RETURN(auto credentials, ChannelCredentialsFor(options.tls_ca));
  impl->channel = grpc::CreateCustomChannel(target, credentials, args);
  impl->stub = SearchService::NewStub(impl->channel);
  impl->timeout = timeout;
  if (!options.token.empty()) impl->authorization = "Bearer " + options.token;
  return std::unique_ptr<SearchClient>(new SearchClient(std::move(impl)));
}

absl::Status SearchClient::WaitForReady(absl::Duration timeout) {
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout));
  if (!impl_->channel->WaitForConnected(deadline)) {
    return absl::UnavailableError("coordinator: not reachable");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SearchClient::Submit(const JobSpec& spec) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  SubmitJobRequest req;
  *req.mutable_spec() = spec;
  SubmitJobReply reply;
  NAS_RETURN_IF_ERROR(FromGrpcStatus(impl_->stub->SubmitJob(&ctx, req, &reply)));
  return reply.job_id();
}

absl::StatusOr<JobStatus> SearchClient::Get(const std::string& job_id) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  GetJobRequest req;
  req.set_job_id(job_id);
  JobStatus reply;
  NAS_RETURN_IF_ERROR(FromGrpcStatus(impl_->stub->GetJob(&ctx, req, &reply)));
  return reply;
}

absl::StatusOr<std::vector<JobStatus>> SearchClient::List(const std::string& tenant) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  ListJobsRequest req;
  req.set_tenant(tenant);
  ListJobsReply reply;
  NAS_RETURN_IF_ERROR(FromGrpcStatus(impl_->stub->ListJobs(&ctx, req, &reply)));
  return std::vector<JobStatus>(reply.jobs().begin(), reply.jobs().end());
}

absl::Status SearchClient::Cancel(const std::string& job_id) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  CancelJobRequest req;
  req.set_job_id(job_id);
  CancelJobReply reply;
  return FromGrpcStatus(impl_->stub->CancelJob(&ctx, req, &reply));
}

absl::StatusOr<GetQueueReply> SearchClient::Queue(const std::string& tenant) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  GetQueueRequest req;
  req.set_tenant(tenant);
  GetQueueReply reply;
  NAS_RETURN_IF_ERROR(FromGrpcStatus(impl_->stub->GetQueue(&ctx, req, &reply)));
  return reply;
}

absl::Status SearchClient::Delete(const std::string& job_id) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  DeleteJobRequest req;
  req.set_job_id(job_id);
  DeleteJobReply reply;
  return FromGrpcStatus(impl_->stub->DeleteJob(&ctx, req, &reply));
}

absl::StatusOr<JobResult> SearchClient::Result(const std::string& job_id) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  GetJobRequest req;
  req.set_job_id(job_id);
  JobResult reply;
  NAS_RETURN_IF_ERROR(FromGrpcStatus(impl_->stub->GetResult(&ctx, req, &reply)));
  return reply;
}

absl::StatusOr<std::string> SearchClient::Artifact(const std::string& job_id,
                                                   const std::string& name) {
  grpc::ClientContext ctx;
  impl_->Deadline(&ctx);
  GetArtifactRequest req;
  req.set_job_id(job_id);
  req.set_name(name);
  std::unique_ptr<grpc::ClientReader<ArtifactChunk>> reader = impl_->stub->GetArtifact(&ctx, req);
  std::string out;
  ArtifactChunk c;
  while (reader->Read(&c)) out += c.data();
  NAS_RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  return out;
}

absl::Status SearchClient::Watch(const std::string& job_id,
                                 const std::function<bool(const JobStatus&)>& on_status) {
  grpc::ClientContext ctx;
  impl_->Authorize(&ctx);
  GetJobRequest req;
  req.set_job_id(job_id);
  std::unique_ptr<grpc::ClientReader<JobStatus>> reader = impl_->stub->WatchJob(&ctx, req);
  JobStatus s;
  while (reader->Read(&s)) {
    if (!on_status(s)) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::CANCELLED) return absl::OkStatus();
  return FromGrpcStatus(st);
}

namespace {

absl::Status Write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> WriteResultDirectory(SearchClient& client, const JobResult& r,
                                                 const std::string& out) {
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(out, ": cannot create: ", ec.message()));
  NAS_RETURN_IF_ERROR(Write(out + "/architecture.json", r.architecture_json()));
  NAS_RETURN_IF_ERROR(Write(out + "/network.json", r.network_json()));
  NAS_RETURN_IF_ERROR(Write(out + "/search_space.json", r.space_json()));
  NAS_RETURN_IF_ERROR(Write(out + "/latency_table.json", r.latency_table_json()));
  NAS_RETURN_IF_ERROR(Write(out + "/job_spec.json", r.spec_json()));
  NAS_RETURN_IF_ERROR(Write(out + "/report.json", r.report_json()));
  std::string history;
  for (const std::string& h : r.history()) absl::StrAppend(&history, h, "\n");
  NAS_RETURN_IF_ERROR(Write(out + "/alpha_history.jsonl", history));
  for (const std::string& a : r.artifacts()) {
    NAS_ASSIGN_OR_RETURN(std::string bytes, client.Artifact(r.job_id(), a));
    NAS_RETURN_IF_ERROR(Write(out + "/" + a, bytes));
  }
  NAS_ASSIGN_OR_RETURN(Json rep, ParseJson(r.report_json(), "report.json"));
  std::string md = absl::StrFormat(
      "# Search report (job %s)\n\nspace `%s`, data `%s`, device `%s` (%s), loss %s, target "
      "%.3f ms, seed %d, %d rounds\n\n| network | test acc | predicted ms | measured ms | params "
      "|\n|---|---|---|---|---|\n",
      r.job_id(), rep.value("space", ""), rep.value("dataset", ""), rep.value("device", ""),
      rep.value("runtime", ""), rep.value("loss", ""), rep.value("target_latency_ms", 0.0),
      rep.value("seed", 0), rep.value("rounds", 0));
  for (const char* label : {"derived", "baseline"}) {
    if (!rep.contains(label)) continue;
    const Json& n = rep[label];
    absl::StrAppendFormat(&md, "| %s | %.2f%% | %.3f | %.3f +/- %.3f | %d |\n", label,
                          100 * n.value("test_accuracy", 0.0), n.value("predicted_latency_ms", 0.0),
                          n.value("measured_latency_ms", 0.0),
                          n.value("measured_latency_std_ms", 0.0), n.value("parameters", 0));
  }
  if (rep.contains("derived")) {
    absl::StrAppend(&md, "\nderived: ", rep["derived"].value("architecture", ""), "\n");
  }
  NAS_RETURN_IF_ERROR(Write(out + "/report.md", md));
  // The page is for looking at: a result whose page cannot be drawn is still written whole, and
  // the reason is said (on stderr and in report.md).
  // The coordinator's page when it drew one (jobs finished before it did: drawn here).
  absl::Status html = r.report_html().empty() ? WriteReportHtml(out, "job " + r.job_id())
                                              : Write(out + "/report.html", r.report_html());
  if (!html.ok()) {
    std::fprintf(stderr, "report.html not written: %s\n", std::string(html.message()).c_str());
    absl::StrAppend(&md, "\nreport.html not written: ", html.message(), "\n");
    NAS_RETURN_IF_ERROR(Write(out + "/report.md", md));
  }
  return md;
}

}  // namespace nas
