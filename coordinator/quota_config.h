// The lab's queue settings: each tenant's weight in the fair share and its quotas, the usage
// half-life, the quota window and the aging rate. Read from a JSON file (a Kubernetes
// ConfigMap) and reloaded when it changes; a reload that fails keeps the settings loaded
// before and says why.
//
//   {
//     "half_life_hours": 24,       // decay of the usage the fair share compares (> 0)
//     "window_hours": 168,         // the worker-hours budget's window (> 0)
//     "aging_hours": 1,            // a waiting job gains one priority level per this (> 0)
//     "default": {"weight": 1},    // tenants not listed
//     "tenants": {
//       "vision": {"weight": 3, "max_running_jobs": 4, "max_workers": 32,
//                  "worker_hours_per_window": 2000},
//       "speech": {"weight": 1}
//     }
//   }
//
// Every member is optional; 0 for a limit is "no limit". Unknown members are refused (a typo
// must not silently leave a tenant unlimited). Bounds (LIMITS.md): file 1 MiB, nesting 4,
// 10,000 tenants, names as JobSpec.tenant, weights in (0, 1e6], limits in [0, 1e6] (hours in
// [0, 1e9]).
//
//   NAS_ASSIGN_OR_RETURN(QuotaConfig q, QuotaConfig::Parse(text, "quotas_file q.json"));
//   const TenantQuotaSpec& vision = q.For("vision");
//
// Thread-safety: QuotaConfig is a value; QuotaFile may be used from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/file_stamp.h"

namespace nas {

struct TenantQuotaSpec {
  double weight = 1;
  int max_running_jobs = 0;            // admitted jobs at once; 0 = no limit
  int max_workers = 0;                 // tasks leased at once; 0 = no limit
  double worker_hours_per_window = 0;  // 0 = no limit
};

struct QuotaConfig {
  static constexpr size_t kMaxFileBytes = 1 << 20;
  static constexpr int kMaxTenants = 10000;
  static constexpr double kMaxWeight = 1e6;
  static constexpr int kMaxLimit = 1000000;
  static constexpr double kMaxHours = 1e9;

  absl::Duration half_life = absl::Hours(24);
  absl::Duration window = absl::Hours(168);
  absl::Duration aging = absl::Hours(1);
  TenantQuotaSpec default_quota;
  std::map<std::string, TenantQuotaSpec> tenants;

  // InvalidArgument naming `what` and the member ("tenants.vision.weight: must be in (0,
  // 1000000], got -1").
  static absl::StatusOr<QuotaConfig> Parse(const std::string& text, const std::string& what);
  const TenantQuotaSpec& For(const std::string& tenant) const {
    auto it = tenants.find(tenant);
    return it == tenants.end() ? default_quota : it->second;
  }
};

// A quotas file, looked at again at most once per `reload_interval`.
class QuotaFile {
 public:
  // The file must exist and parse (NotFound / InvalidArgument naming it).
  static absl::StatusOr<std::unique_ptr<QuotaFile>> Open(
      std::string path, absl::Duration reload_interval = absl::Seconds(5));
  // The current settings, reloaded first when the interval passed and the file changed.
  std::shared_ptr<const QuotaConfig> Get();
  // Looks at the file now; OK when unchanged or reloaded, else why (the old settings stay).
  absl::Status Reload();

 private:
  QuotaFile(std::string path, absl::Duration interval)
      : path_(std::move(path)), interval_(interval) {}
  absl::Status ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  std::shared_ptr<const QuotaConfig> config_ ABSL_GUARDED_BY(mu_);
  FileStamp stamp_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace nas
