#include "coordinator/quota_config.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/job_spec.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {

absl::Status Bad(const std::string& what, const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", field, ": ", why));
}

// Refuses members other than `known` (a misspelt limit must not leave a tenant unlimited).
absl::Status OnlyKnown(const Json& obj, const std::string& what, const std::string& path,
                       std::initializer_list<const char*> known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok) {
      std::string list;
      for (const char* k : known) absl::StrAppend(&list, list.empty() ? "" : ", ", k);
      return Bad(what, FieldPath(path, it.key()),
                 absl::StrCat("unknown member (expected one of: ", list, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Number(const Json& obj, const std::string& what, const std::string& path,
                              const std::string& key, double fallback, double lo, double hi,
                              bool lo_open) {
  auto v = GetDoubleOr(obj, path, key, fallback);
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", v.status().message()));
  if (!std::isfinite(*v) || (lo_open ? *v <= lo : *v < lo) || *v > hi) {
    return Bad(what, FieldPath(path, key),
               absl::StrCat("must be in ", lo_open ? "(" : "[", lo, ", ", hi, "], got ", *v));
  }
  return *v;
}

absl::StatusOr<int> Limit(const Json& obj, const std::string& what, const std::string& path,
                          const std::string& key, int fallback) {
  auto v = GetIntOr(obj, path, key, fallback);
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", v.status().message()));
  if (*v < 0 || *v > QuotaConfig::kMaxLimit) {
    return Bad(what, FieldPath(path, key),
               absl::StrCat("must be in [0, ", QuotaConfig::kMaxLimit, "], got ", *v));
  }
  return *v;
}

absl::StatusOr<TenantQuotaSpec> ParseTenant(const Json& obj, const std::string& what,
                                            const std::string& path,
                                            const TenantQuotaSpec& fallback) {
  if (!obj.is_object()) return Bad(what, path, "expected an object");
  NAS_RETURN_IF_ERROR(OnlyKnown(
      obj, what, path, {"weight", "max_running_jobs", "max_workers", "worker_hours_per_window"}));
  TenantQuotaSpec q;
  NAS_ASSIGN_OR_RETURN(q.weight, Number(obj, what, path, "weight", fallback.weight, 0,
                                        QuotaConfig::kMaxWeight, /*lo_open=*/true));
  NAS_ASSIGN_OR_RETURN(q.max_running_jobs,
                       Limit(obj, what, path, "max_running_jobs", fallback.max_running_jobs));
  NAS_ASSIGN_OR_RETURN(q.max_workers, Limit(obj, what, path, "max_workers", fallback.max_workers));
  NAS_ASSIGN_OR_RETURN(q.worker_hours_per_window,
                       Number(obj, what, path, "worker_hours_per_window",
                              fallback.worker_hours_per_window, 0, QuotaConfig::kMaxHours,
                              /*lo_open=*/false));
  return q;
}

absl::StatusOr<absl::Duration> Hours(const Json& obj, const std::string& what,
                                     const std::string& key, absl::Duration fallback) {
  NAS_ASSIGN_OR_RETURN(double h, Number(obj, what, "", key, absl::ToDoubleHours(fallback), 0,
                                        QuotaConfig::kMaxHours, /*lo_open=*/true));
  if (h * 3600 < 1) {
    return Bad(what, key, absl::StrCat("must be at least one second (", 1.0 / 3600,
                                       " hours), got ", h));
  }
  return absl::Seconds(h * 3600);
}

}  // namespace

absl::StatusOr<QuotaConfig> QuotaConfig::Parse(const std::string& text, const std::string& what) {
  JsonLimits limits;
  limits.max_bytes = kMaxFileBytes;
  limits.max_depth = 4;
  NAS_ASSIGN_OR_RETURN(Json doc, ParseJson(text, what, limits));
  if (!doc.is_object()) return Bad(what, "(document)", "expected a JSON object");
  NAS_RETURN_IF_ERROR(OnlyKnown(doc, what, "",
                                {"half_life_hours", "window_hours", "aging_hours", "default",
                                 "tenants"}));
  QuotaConfig c;
  NAS_ASSIGN_OR_RETURN(c.half_life, Hours(doc, what, "half_life_hours", c.half_life));
  NAS_ASSIGN_OR_RETURN(c.window, Hours(doc, what, "window_hours", c.window));
  NAS_ASSIGN_OR_RETURN(c.aging, Hours(doc, what, "aging_hours", c.aging));
  if (doc.contains("default")) {
    NAS_ASSIGN_OR_RETURN(c.default_quota, ParseTenant(doc["default"], what, "default", {}));
  }
  if (doc.contains("tenants")) {
    const Json& t = doc["tenants"];
    if (!t.is_object()) return Bad(what, "tenants", "expected an object of tenant -> quota");
    if (t.size() > static_cast<size_t>(kMaxTenants)) {
      return Bad(what, "tenants",
                 absl::StrCat(t.size(), " tenants, more than the limit of ", kMaxTenants));
    }
    for (auto it = t.begin(); it != t.end(); ++it) {
      std::string path = FieldPath("tenants", it.key());
      if (it.key().empty()) return Bad(what, path, "a tenant name is required");
      absl::Status name = ValidateName(path, it.key(), JobSpecLimits::kMaxNameBytes);
      if (!name.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", name.message()));
      NAS_ASSIGN_OR_RETURN(c.tenants[it.key()],
                           ParseTenant(it.value(), what, path, c.default_quota));
    }
  }
  return c;
}

absl::StatusOr<std::unique_ptr<QuotaFile>> QuotaFile::Open(std::string path,
                                                           absl::Duration reload_interval) {
  if (path.empty()) return absl::InvalidArgumentError("quotas_file: a path is required");
  std::unique_ptr<QuotaFile> f(new QuotaFile(std::move(path), reload_interval));
  absl::MutexLock lock(&f->mu_);
  NAS_RETURN_IF_ERROR(f->ReloadLocked());
  f->next_check_ = absl::Now() + f->interval_;
  return f;
}

absl::Status QuotaFile::Reload() {
  absl::MutexLock lock(&mu_);
  next_check_ = absl::Now() + interval_;
  return ReloadLocked();
}

absl::Status QuotaFile::ReloadLocked() {
  NAS_ASSIGN_OR_RETURN(FileStamp stamp, StampOf(path_, "quotas_file"));
  if (config_ != nullptr && stamp == stamp_) return absl::OkStatus();
  NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(path_, QuotaConfig::kMaxFileBytes));
  NAS_ASSIGN_OR_RETURN(QuotaConfig c, QuotaConfig::Parse(text, "quotas_file " + path_));
  config_ = std::make_shared<const QuotaConfig>(std::move(c));
  stamp_ = stamp;
  return absl::OkStatus();
}

std::shared_ptr<const QuotaConfig> QuotaFile::Get() {
  absl::MutexLock lock(&mu_);
  absl::Time now = absl::Now();
  if (now >= next_check_) {
    next_check_ = now + interval_;
    absl::Status s = ReloadLocked();
    if (!s.ok()) {
      std::fprintf(stderr, "coordinator: keeping the quotas loaded before: %s\n",
                   std::string(s.message()).c_str());
    }
  }
  return config_;
}

}  // namespace nas
