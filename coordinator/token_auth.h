// Who is calling: bearer tokens mapped to a user, a tenant and a role, from a tokens file in the
// format of the Kubernetes Secret (deploy/k8s/base/user-tokens-secret.yaml):
//
//   # TOKEN USER TENANT [ROLE]
//   3b1f0c9e6a7d4e21b5a8 alice vision          (role "user" when absent)
//   9c2d7e4f1a0b3c5d6e7f ops   lab    admin     (sees and cancels every tenant's jobs)
//   5e6f7a8b9c0d1e2f3a4b w-1   lab    worker    (a worker's credential: the worker gateway only)
//   7a8b9c0d1e2f3a4b5c6d prof  lab    writer    (uploads latency tables: PutTable of a
//                                                latency_server --writer_tokens_file only)
//
// Tokens are at least 16 printable characters without spaces; users and tenants follow the job
// spec's name rules (job_spec.h). A token is compared in constant time: each presented token and
// each stored token is hashed with SHA-256 and the digests are compared with CRYPTO_memcmp
// against every entry, without stopping at a match, so the time taken says nothing about which
// (or how much of a) token matched.
//
// The file is reloaded when it changes (its modification time, size or inode, looked at most
// once per `reload_interval`): a Secret rotated in place takes effect without a restart. A
// reload that fails (unreadable, malformed) keeps the tokens already loaded and says why on
// stderr; Open fails instead.
//
//   NAS_ASSIGN_OR_RETURN(auto auth, TokenAuthenticator::Open({.path = "/etc/nas/tokens/tokens"}));
//   absl::StatusOr<Identity> who = auth->Authenticate("Bearer 3b1f0c9e6a7d4e21b5a8");
//   // UNAUTHENTICATED without a token or with an unknown one.
//
// Thread-safety: every method may be called concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/file_stamp.h"

namespace nas {

enum class Role { kUser, kAdmin, kWorker, kWriter };

// "user", "admin", "worker", "writer".
const char* RoleName(Role role);

struct Identity {
  std::string user;
  std::string tenant;
  Role role = Role::kUser;
};

// The parsed tokens file.
class TokenTable {
 public:
  // Lines "TOKEN USER TENANT [ROLE]"; blank lines and lines starting with '#' are skipped.
  // InvalidArgument naming `what`, the line and the field: a short token, a bad name, an unknown
  // role, a token given twice, more than kMaxEntries entries.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text, const std::string& what);

  // The identity of `token`, compared in constant time against every entry; nullptr if none.
  const Identity* Find(absl::string_view token) const;

  size_t size() const { return entries_.size(); }

  static constexpr size_t kMinTokenBytes = 16;
  static constexpr size_t kMaxTokenBytes = 256;
  static constexpr size_t kMaxEntries = 10000;
  static constexpr size_t kMaxFileBytes = 1 << 20;

 private:
  struct Entry {
    std::array<unsigned char, 32> digest;
    Identity identity;
  };
  std::vector<Entry> entries_;
};

struct TokenAuthenticatorOptions {
  // The tokens file. Required.
  std::string path;
  // How often, at most, the file is looked at for a change. Default 1 s.
  absl::Duration reload_interval = absl::Seconds(1);
  // The clock (tests inject one). Default absl::Now.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Who says "keeping the tokens loaded before" on stderr when a reload fails. Default
  // "coordinator".
  std::string server_name = "coordinator";
  // How a refused caller sends a token, ending an UNAUTHENTICATED message. Default
  // "NAS_TOKEN or --token_file for nasctl".
  std::string client_hint = "NAS_TOKEN or --token_file for nasctl";
};

class TokenAuthenticator {
 public:
  // Loads the file; its errors name the path.
  static absl::StatusOr<std::unique_ptr<TokenAuthenticator>> Open(TokenAuthenticatorOptions o);

  // The caller of a request whose `authorization` metadata is `header` ("Bearer TOKEN"; the
  // scheme is case-insensitive). Unauthenticated, saying what was wrong but never echoing the
  // token: no header, another scheme, an unknown token.
  absl::StatusOr<Identity> Authenticate(absl::string_view header);

  // Looks at the file now (as Authenticate does once reload_interval has passed); OK when it is
  // unchanged or reloaded, else why the reload failed (the old tokens stay).
  absl::Status Reload();

 private:
  explicit TokenAuthenticator(TokenAuthenticatorOptions o) : options_(std::move(o)) {}
  absl::Status ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TokenAuthenticatorOptions options_;
  absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  FileStamp stamp_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace nas
