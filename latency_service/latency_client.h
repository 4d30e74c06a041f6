// A client of the latency service (proto/nas/latency.proto) with domain types only: what `nas`,
// the benchmark and the tests use. gRPC errors come back as absl::Status with the server's code
// and message.
//
// Thread-safety: every method may be called concurrently (one HTTP/2 channel underneath).
//
//   NAS_ASSIGN_OR_RETURN(std::unique_ptr<LatencyClient> c, LatencyClient::Connect("host:50052"));
//   std::vector<LayerLatency> answers;
//   NAS_RETURN_IF_ERROR(c->Query("pixel1-tflite", keys, &answers));
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/latency_table.h"
#include "latency_service/types.h"

namespace nas {

struct LatencyClientOptions {
  // Deadline of each call. Default 30 s.
  absl::Duration timeout = absl::Seconds(30);
  // Largest request or reply, in bytes. Default 64 MiB.
  int max_message_bytes = 64 << 20;
  // PEM certificates to trust for a TLS connection; empty: plaintext. Default "".
  std::string tls_ca;
  // A writer's bearer token, sent as 'authorization: Bearer TOKEN' with every call; the service
  // checks it on PutTable only (latency_server.h). Empty: none. Default "".
  std::string token;
};

// The writer token for latency_ctl and `nas profile --upload`: the file `token_file` when given,
// else the environment's NAS_LATENCY_TOKEN, else the file NAS_LATENCY_TOKEN_FILE names, else ""
// (no token). The file's first line, whitespace stripped; errors name the file.
absl::StatusOr<std::string> LatencyWriterToken(const std::string& token_file);

class LatencyClient {
 public:
  // Does not wait for the server: the first call does. InvalidArgument for an empty target.
  static absl::StatusOr<std::unique_ptr<LatencyClient>> Connect(
      const std::string& target, const LatencyClientOptions& options = {});

  // answers[i] answers keys[i]; errors as latency_registry.h describes.
  absl::Status Query(const std::string& device, const std::vector<std::string>& keys,
                     std::vector<LayerLatency>* answers);
  absl::StatusOr<std::vector<DeviceSummary>> ListDevices();
  // The table in our JSON format (core/latency_table.h) with its "version".
  absl::StatusOr<std::string> GetTableJson(const std::string& device);
  // Uploads a table in our JSON format; merge pools it into the stored one; if_version != 0
  // applies it only at that stored version.
  absl::StatusOr<DeviceSummary> PutTableJson(const std::string& content, bool merge,
                                             uint64_t if_version = 0);

  const std::string& target() const;

  ~LatencyClient();

 private:
  struct Impl;
  explicit LatencyClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The table a job searches with, from one batch Query of `keys` (e.g. SearchSpace::AllLayerKeys):
// measured answers keep their count and variance; predicted ones become entries with count 1
// and variance 0, and the table's `method` says how many were predicted and at which table
// version. Provenance (runtime, batch size, threads, date) and the whole-network calibration
// come from ListDevices, so the search's latency model adds the same correction as the service's
// table. Errors are the service's (unknown device, a key it cannot answer).
absl::StatusOr<LatencyTable> FetchLatencyTable(LatencyClient& client, const std::string& device,
                                               const std::vector<std::string>& keys);

}  // namespace nas
