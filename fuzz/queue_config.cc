// The queue's two documents from outside the process: the quotas file (QuotaConfig::Parse,
// coordinator/quota_config.h; the ConfigMap) and the tenants' usage as read back from the store
// (TenantLedger::Restore, coordinator/tenant_ledger.h). The first byte picks which.
#include <cmath>

#include "absl/time/time.h"
#include "coordinator/quota_config.h"
#include "coordinator/tenant_ledger.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text = nas::fuzz::Text(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    absl::StatusOr<nas::QuotaConfig> c = nas::QuotaConfig::Parse(text, "quotas");
    if (!c.ok()) return 0;
    // What parsed is within its bounds.
    if (c->half_life <= absl::ZeroDuration() || c->window <= absl::ZeroDuration() ||
        c->aging <= absl::ZeroDuration()) {
      __builtin_trap();
    }
    for (const auto& [name, q] : c->tenants) {
      if (!(q.weight > 0) || q.weight > nas::QuotaConfig::kMaxWeight || q.max_workers < 0 ||
          q.max_running_jobs < 0 || !(q.worker_hours_per_window >= 0)) {
        __builtin_trap();
      }
    }
    return 0;
  }
  nas::TenantLedger ledger(absl::Hours(24), absl::Hours(168));
  if (!ledger.Restore(text, "usage").ok()) return 0;
  // A restored ledger answers finite, non-negative usage for every tenant.
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  for (int t = 0; t < ledger.size(); ++t) {
    double d = ledger.DecayedSeconds(t, now), w = ledger.WindowSeconds(t, now);
    if (!(d >= 0) || !(w >= 0) || std::isnan(d) || std::isnan(w)) __builtin_trap();
  }
  (void)ledger.Serialize(now);
  return 0;
}
