#include "coordinator/token_auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "coordinator/job_spec.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

std::array<unsigned char, 32> Digest(absl::string_view token) {
  std::array<unsigned char, 32> d;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d.data());
  return d;
}

absl::Status Unauthenticated(absl::string_view why, absl::string_view hint) {
  return absl::UnauthenticatedError(absl::StrCat(
      "authorization: ", why, " (send the metadata 'authorization: Bearer TOKEN'; ", hint, ")"));
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kAdmin:
      return "admin";
    case Role::kWorker:
      return "worker";
    case Role::kWriter:
      return "writer";
  }
  return "?";
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text, const std::string& what) {
  if (text.size() > kMaxFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", text.size(), " bytes, over the limit of ", kMaxFileBytes));
  }
  TokenTable t;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": line ", line_no, ": ", why));
    };
    if (f.size() < 3 || f.size() > 4) return bad("expected TOKEN USER TENANT [ROLE]");
    if (f[0].size() < kMinTokenBytes || f[0].size() > kMaxTokenBytes) {
      return bad(absl::StrCat("the token is ", f[0].size(), " bytes; tokens are ", kMinTokenBytes,
                              "..", kMaxTokenBytes));
    }
    for (char c : f[0]) {
      if (c <= 0x20 || c >= 0x7f) return bad("the token has a character that is not printable");
    }
    Entry e;
    e.identity.user = std::string(f[1]);
    e.identity.tenant = std::string(f[2]);
    absl::Status s = ValidateName("user", e.identity.user, JobSpecLimits::kMaxNameBytes);
    if (s.ok()) s = ValidateName("tenant", e.identity.tenant, JobSpecLimits::kMaxNameBytes);
    if (!s.ok()) return bad(std::string(s.message()));
    if (f.size() == 4) {
      if (f[3] == "user") {
        e.identity.role = Role::kUser;
      } else if (f[3] == "admin") {
        e.identity.role = Role::kAdmin;
      } else if (f[3] == "worker") {
        e.identity.role = Role::kWorker;
      } else if (f[3] == "writer") {
        e.identity.role = Role::kWriter;
      } else {
        return bad(
            absl::StrCat("role '", f[3].substr(0, 32), "' is not user, admin, worker or writer"));
      }
    }
    e.digest = Digest(f[0]);
    for (const Entry& o : t.entries_) {
      if (o.digest == e.digest) return bad("the token is given twice");
    }
    if (t.entries_.size() >= kMaxEntries) {
      return bad(absl::StrCat("more than ", kMaxEntries, " tokens"));
    }
    t.entries_.push_back(std::move(e));
  }
  return t;
}

const Identity* TokenTable::Find(absl::string_view token) const {
  const std::array<unsigned char, 32> d = Digest(token);
  const Identity* found = nullptr;
  for (const Entry& e : entries_) {
    // Every entry is compared, whatever matched before.
    const bool same = CRYPTO_memcmp(e.digest.data(), d.data(), d.size()) == 0;
    found = same ? &e.identity : found;
  }
  return found;
}

absl::StatusOr<std::unique_ptr<TokenAuthenticator>> TokenAuthenticator::Open(
    TokenAuthenticatorOptions o) {
  if (o.path.empty()) return absl::InvalidArgumentError("tokens_file: a path is required");
  std::unique_ptr<TokenAuthenticator> a(new TokenAuthenticator(std::move(o)));
  absl::MutexLock lock(&a->mu_);
  NAS_RETURN_IF_ERROR(a->ReloadLocked());
  a->next_check_ = a->options_.clock() + a->options_.reload_interval;
  return a;
}

absl::Status TokenAuthenticator::Reload() {
  absl::MutexLock lock(&mu_);
  next_check_ = options_.clock() + options_.reload_interval;
  return ReloadLocked();
}

absl::Status TokenAuthenticator::ReloadLocked() {
  NAS_ASSIGN_OR_RETURN(FileStamp stamp, StampOf(options_.path, "tokens_file"));
  if (table_ != nullptr && stamp == stamp_) return absl::OkStatus();
  NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(options_.path, TokenTable::kMaxFileBytes));
  NAS_ASSIGN_OR_RETURN(TokenTable t, TokenTable::Parse(text, "tokens_file " + options_.path));
  table_ = std::make_shared<const TokenTable>(std::move(t));
  stamp_ = stamp;
  return absl::OkStatus();
}

absl::StatusOr<Identity> TokenAuthenticator::Authenticate(absl::string_view header) {
  std::shared_ptr<const TokenTable> table;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = options_.clock();
    if (now >= next_check_) {
      next_check_ = now + options_.reload_interval;
      absl::Status s = ReloadLocked();
      if (!s.ok()) {
        std::fprintf(stderr, "%s: keeping the tokens loaded before: %s\n",
                     options_.server_name.c_str(), std::string(s.message()).c_str());
      }
    }
    table = table_;
  }
  if (header.empty()) return Unauthenticated("no token", options_.client_hint);
  constexpr absl::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kScheme.size()), kScheme)) {
    return Unauthenticated("not a bearer token", options_.client_hint);
  }
  absl::string_view token = absl::StripAsciiWhitespace(header.substr(kScheme.size()));
  const Identity* who = table->Find(token);
  if (who == nullptr) return Unauthenticated("unknown token", options_.client_hint);
  return *who;
}

}  // namespace nas
