#include "coordinator/tenant_ledger.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/status_macros.h"

namespace nas {

namespace {
double UnixSeconds(absl::Time t) { return absl::ToDoubleSeconds(t - absl::UnixEpoch()); }
}  // namespace

void TenantLedger::Configure(absl::Duration half_life, absl::Duration window) {
  half_life_ = half_life;
  if (window != window_) {
    window_ = window;
    for (Tenant& t : tenants_) t.window_index = -1;  // a new window at the next reading
  }
}

int TenantLedger::Index(absl::string_view tenant) {
  auto it = index_.find(tenant);
  if (it != index_.end()) return it->second;
  int t = static_cast<int>(tenants_.size());
  tenants_.push_back(Tenant{std::string(tenant)});
  index_.emplace(std::string(tenant), t);
  return t;
}

int TenantLedger::Find(absl::string_view tenant) const {
  auto it = index_.find(tenant);
  return it == index_.end() ? -1 : it->second;
}

int64_t TenantLedger::WindowIndex(absl::Time now) const {
  return static_cast<int64_t>(
      std::floor(UnixSeconds(now) / std::max(1.0, absl::ToDoubleSeconds(window_))));
}

absl::Time TenantLedger::WindowEnd(absl::Time now) const {
  return absl::UnixEpoch() + absl::Seconds(static_cast<double>(WindowIndex(now) + 1) *
                                           std::max(1.0, absl::ToDoubleSeconds(window_)));
}

double TenantLedger::Decay(double value, absl::Time from, absl::Time to) const {
  if (value == 0 || from == absl::InfinitePast() || to <= from) return value;
  return value * std::exp2(-absl::ToDoubleSeconds(to - from) /
                           std::max(1e-9, absl::ToDoubleSeconds(half_life_)));
}

void TenantLedger::Advance(Tenant& t, absl::Time now) const {
  t.decayed = Decay(t.decayed, t.as_of, now);
  if (t.as_of == absl::InfinitePast() || now > t.as_of) t.as_of = now;
  int64_t w = WindowIndex(now);
  if (w != t.window_index) {
    t.window = 0;
    t.window_index = w;
  }
}

void TenantLedger::Grant(int t, absl::Time now) {
  Tenant& x = tenants_[t];
  ++version_;
  ++x.held;
  x.held_grant_sum_s += UnixSeconds(now);
}

void TenantLedger::Release(int t, absl::Time granted, absl::Time now) {
  Tenant& x = tenants_[t];
  ++version_;
  Advance(x, now);
  double g = UnixSeconds(granted);
  double seconds = std::max(0.0, UnixSeconds(now) - g);
  mean_lease_s_ += (seconds - mean_lease_s_) / 32;
  x.decayed += seconds;
  x.window += seconds;
  if (x.held > 0) {
    --x.held;
    x.held_grant_sum_s -= g;
  }
  if (x.held == 0) x.held_grant_sum_s = 0;  // no drift from rounding
}

double TenantLedger::DecayedSeconds(int t, absl::Time now) const {
  const Tenant& x = tenants_[t];
  double held = x.held > 0 ? std::max(0.0, x.held * UnixSeconds(now) - x.held_grant_sum_s) : 0;
  return Decay(x.decayed, x.as_of, now) + held;
}

double TenantLedger::WindowSeconds(int t, absl::Time now) const {
  const Tenant& x = tenants_[t];
  double held = x.held > 0 ? std::max(0.0, x.held * UnixSeconds(now) - x.held_grant_sum_s) : 0;
  return (WindowIndex(now) == x.window_index ? x.window : 0) + held;
}

std::string TenantLedger::Serialize(absl::Time now) const {
  Json tenants = Json::object();
  for (Tenant& t : tenants_) {
    Advance(t, now);
    tenants[t.name] = {{"decayed_seconds", t.decayed},
                       {"window_seconds", t.window},
                       {"window_index", t.window_index}};
  }
  Json doc = {{"as_of_unix_s", UnixSeconds(now)}, {"tenants", tenants}};
  return doc.dump();
}

absl::Status TenantLedger::Restore(const std::string& text, const std::string& what) {
  NAS_ASSIGN_OR_RETURN(Json doc, ParseJson(text, what));
  if (!doc.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not an object"));
  NAS_ASSIGN_OR_RETURN(double as_of_s, GetDouble(doc, "", "as_of_unix_s"));
  NAS_ASSIGN_OR_RETURN(const Json* tenants, GetMember(doc, "", "tenants"));
  if (!tenants->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": tenants: not an object"));
  }
  // Bounds: a time within +-3,000 years of 1970, sums up to 1e15 worker-seconds (30 million
  // worker-years), a window index that is a whole number a double holds exactly.
  constexpr double kMaxSeconds = 1e11, kMaxSum = 1e15, kMaxIndex = 9e15;
  if (std::fabs(as_of_s) > kMaxSeconds) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": as_of_unix_s: ", as_of_s,
                                                   " is outside +-", kMaxSeconds));
  }
  absl::Time as_of = absl::UnixEpoch() + absl::Seconds(as_of_s);
  ++version_;
  for (auto it = tenants->begin(); it != tenants->end(); ++it) {
    const std::string path = FieldPath("tenants", it.key());
    NAS_ASSIGN_OR_RETURN(double decayed, GetDouble(it.value(), path, "decayed_seconds"));
    NAS_ASSIGN_OR_RETURN(double window, GetDouble(it.value(), path, "window_seconds"));
    NAS_ASSIGN_OR_RETURN(double index, GetDouble(it.value(), path, "window_index"));
    if (decayed < 0 || window < 0 || decayed > kMaxSum || window > kMaxSum) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", path, ": usage must be in [0, ", kMaxSum, "] worker-seconds"));
    }
    if (std::fabs(index) > kMaxIndex || index != std::floor(index)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", path, ".window_index: ", index, " is not a whole number within +-",
                       kMaxIndex));
    }
    Tenant& t = tenants_[Index(it.key())];
    t.decayed = decayed;
    t.as_of = as_of;
    t.window = window;
    t.window_index = static_cast<int64_t>(index);
  }
  return absl::OkStatus();
}

}  // namespace nas
