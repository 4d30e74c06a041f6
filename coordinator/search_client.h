// A client of the coordinator's SearchService (proto/nas/search.proto): what nasctl, `nas search
// --coordinator` and the tests use. gRPC errors come back as absl::Status with the server's code
// and message.
//
//   NAS_ASSIGN_OR_RETURN(auto c, SearchClient::Connect("localhost:50051"));
//   NAS_ASSIGN_OR_RETURN(std::string id, c->Submit(spec));
//   c->Watch(id, [](const JobStatus& s) { ...; return true; });   // until DONE/FAILED/CANCELLED
//   NAS_ASSIGN_OR_RETURN(JobResult r, c->Result(id));
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nas/search.pb.h"

namespace nas {

struct SearchClientOptions {
  // Deadline of each unary call. Default 30 s.
  absl::Duration timeout = absl::Seconds(30);
  // The caller's bearer token, sent as 'authorization: Bearer TOKEN' with every call; empty for
  // a coordinator without authentication. Default "".
  std::string token;
  // PEM certificates to trust for a TLS connection; empty: plaintext. Default "".
  std::string tls_ca;
  // gRPC keepalive: while the connection is idle or a stream waits (a watch), a ping every
  // keepalive_time; a connection whose ping is not answered within keepalive_timeout is dropped
  // (the open stream ends UNAVAILABLE), so a dead coordinator or network is noticed. Zero: no
  // pings. Default 0 (none).
  absl::Duration keepalive_time = absl::ZeroDuration();
  // See keepalive_time. Default 10 s.
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Longest wait between the channel's attempts to reconnect after the coordinator went away;
  // zero: gRPC's own (up to 120 s). Default 0.
  absl::Duration max_reconnect_backoff = absl::ZeroDuration();
};

// The caller's token for nasctl and nas: the file `token_file` when given, else the environment's
// NAS_TOKEN, else the file NAS_TOKEN_FILE names, else "" (no token). The file's first line,
// whitespace stripped; errors name the file.
absl::StatusOr<std::string> ClientToken(const std::string& token_file);

class SearchClient {
 public:
  // Does not wait for the server.
  static absl::StatusOr<std::unique_ptr<SearchClient>> Connect(const std::string& target,
                                                               SearchClientOptions options);
  static absl::StatusOr<std::unique_ptr<SearchClient>> Connect(
      const std::string& target, absl::Duration timeout = absl::Seconds(30));
  ~SearchClient();

  absl::StatusOr<std::string> Submit(const JobSpec& spec);
  absl::StatusOr<JobStatus> Get(const std::string& job_id);
  absl::StatusOr<std::vector<JobStatus>> List(const std::string& tenant);
  absl::Status Cancel(const std::string& job_id);
  // The queue of `tenant` (empty: the caller's; an admin's: every tenant with active jobs).
  absl::StatusOr<GetQueueReply> Queue(const std::string& tenant);
  // Deletes a job that ended, and everything the coordinator keeps of it.
  absl::Status Delete(const std::string& job_id);
  absl::StatusOr<JobResult> Result(const std::string& job_id);
  absl::StatusOr<std::string> Artifact(const std::string& job_id, const std::string& name);
  // Streams status changes to `on_status` until the job ends, on_status returns false, or the
  // stream breaks (the error is returned; callers may Watch again).
  absl::Status Watch(const std::string& job_id,
                     const std::function<bool(const JobStatus&)>& on_status);
  // Waits until the server answers or `timeout`.
  absl::Status WaitForReady(absl::Duration timeout);

 private:
  struct Impl;
  explicit SearchClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes a finished job's result directory, as `nas search` does: architecture.json,
// network.json, alpha_history.jsonl, latency_table.json, search_space.json, job_spec.json,
// report.json, report.md and the trained weights (derived.pt, baseline.pt). Returns report.md.
absl::StatusOr<std::string> WriteResultDirectory(SearchClient& client, const JobResult& result,
                                                 const std::string& out_dir);

}  // namespace nas
