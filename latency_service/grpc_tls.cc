#include "latency_service/grpc_tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  auto text = ReadFile(path, 1 << 20);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat(flag, ": ", text.status().message()));
  if (!absl::StrContains(*text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is not a PEM file"));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() && key_file.empty()) return grpc::InsecureServerCredentials();
  if (cert_file.empty() || key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(cert_file.empty() ? "tls_cert" : "tls_key",
                                                   ": required with ",
                                                   cert_file.empty() ? "tls_key" : "tls_cert"));
  }
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  NAS_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem("tls_cert", cert_file));
  NAS_ASSIGN_OR_RETURN(pair.private_key, ReadPem("tls_key", key_file));
  grpc::SslServerCredentialsOptions o;
  o.pem_key_cert_pairs.push_back(std::move(pair));
  return grpc::SslServerCredentials(o);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const std::string& ca_file) {
  if (ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  NAS_ASSIGN_OR_RETURN(o.pem_root_certs, ReadPem("tls_ca", ca_file));
  return grpc::SslCredentials(o);
}

}  // namespace nas
