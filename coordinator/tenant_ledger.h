// What each tenant has used of the workers: worker-seconds decayed with a half-life (what the
// fair share compares), worker-seconds in the current quota window (what the budget limits),
// and the workers it holds now. A lease is charged from its grant to its end (result, expiry,
// cancellation); the leases held now count in both sums as they run, so a tenant holding many
// workers falls behind at once, not when its tasks end.
//
// Tenants get a dense index on first sight (never reused), so that the scheduler's per-job
// records point at their tenant without a lookup.
//
//   TenantLedger ledger(absl::Hours(24), absl::Hours(168));
//   int t = ledger.Index("vision");
//   ledger.Grant(t, now);
//   ...
//   ledger.Release(t, granted, later);
//   double used = ledger.DecayedSeconds(t, later);
//
// Persistence: Serialize/Restore carry the sums (as of a time) across a restart; a restored
// decayed sum keeps decaying through the time the coordinator was down. Leases held are not
// carried (a restart ends every lease).
//
// Thread-safety: none (the JobManager's lock).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace nas {

class TenantLedger {
 public:
  TenantLedger(absl::Duration half_life, absl::Duration window)
      : half_life_(half_life), window_(window) {}
  // New settings (a quotas file reload). The decayed sums keep their values; a new window
  // length starts a new window at the next reading.
  void Configure(absl::Duration half_life, absl::Duration window);

  // The tenant's index, adding it when new.
  int Index(absl::string_view tenant);
  // -1 when unknown.
  int Find(absl::string_view tenant) const;
  int size() const { return static_cast<int>(tenants_.size()); }
  const std::string& name(int t) const { return tenants_[t].name; }

  // A worker was leased to the tenant at `now`.
  void Grant(int t, absl::Time now);
  // The lease granted at `granted` ended at `now`: its time is charged.
  void Release(int t, absl::Time granted, absl::Time now);

  // Decayed worker-seconds at `now`, the leases held now included.
  double DecayedSeconds(int t, absl::Time now) const;
  // What the fair share compares: DecayedSeconds plus, for each lease held, the mean length of
  // a lease (an average of the leases ended so far; 1 s before any). A lease just granted thus
  // counts at once, so that workers asking at the same instant (a round's tasks planned
  // together) are spread by weight rather than all given to the tenant first in line.
  double ShareSeconds(int t, absl::Time now) const {
    return DecayedSeconds(t, now) + tenants_[t].held * mean_lease_s_;
  }
  double mean_lease_seconds() const { return mean_lease_s_; }
  // Worker-seconds since the current window began, the leases held now included (from their
  // grant: a lease that straddles the window's start is charged whole to the new window).
  double WindowSeconds(int t, absl::Time now) const;
  int held(int t) const { return tenants_[t].held; }
  // Bumped by every Grant, Release and Restore: what Serialize writes changed since.
  uint64_t version() const { return version_; }
  // When the window that holds `now` ends.
  absl::Time WindowEnd(absl::Time now) const;

  // The sums as of `now`, as JSON text; Restore reads it back (InvalidArgument naming `what`
  // for a malformed text, bounded like every stored JSON).
  std::string Serialize(absl::Time now) const;
  absl::Status Restore(const std::string& text, const std::string& what);

 private:
  struct Tenant {
    std::string name;
    double decayed = 0;                        // as of `as_of`, leases held excluded
    absl::Time as_of = absl::InfinitePast();
    double window = 0;                         // in window `window_index`, held excluded
    int64_t window_index = 0;
    int held = 0;
    double held_grant_sum_s = 0;               // sum of held leases' grant times (unix s)
  };
  // Brings the tenant's decayed sum to `now` and its window to the one holding `now`.
  void Advance(Tenant& t, absl::Time now) const;
  int64_t WindowIndex(absl::Time now) const;
  double Decay(double value, absl::Time from, absl::Time to) const;

  absl::Duration half_life_, window_;
  uint64_t version_ = 0;
  double mean_lease_s_ = 1;  // exponential average (1/32 per lease) of ended leases' lengths
  mutable std::vector<Tenant> tenants_;
  absl::flat_hash_map<std::string, int> index_;
};

}  // namespace nas
