// Transport credentials for every server and client of the service, in one place: TLS when
// certificate files are given, plaintext (loopback, tests) when not. Internal header: only the
// servers' and clients' .cc files include it.
//
//   NAS_ASSIGN_OR_RETURN(auto creds, ServerCredentialsFor(o.tls_cert, o.tls_key));
//   builder.AddListeningPort(address, creds, &port);
//   NAS_ASSIGN_OR_RETURN(auto channel_creds, ChannelCredentialsFor(o.tls_ca));
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace nas {

// TLS with the PEM certificate chain and private key in `cert_file` and `key_file` when both
// are given; plaintext when neither is. InvalidArgument when only one is given (naming which),
// NotFound naming a file that cannot be read, InvalidArgument when a file is not PEM.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const std::string& cert_file, const std::string& key_file);

// TLS trusting the PEM certificates in `ca_file` when it is given; plaintext when not.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const std::string& ca_file);

}  // namespace nas
