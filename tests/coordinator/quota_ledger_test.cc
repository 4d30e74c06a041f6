// The queue's settings file (QuotaConfig: bounds, unknown members refused, defaults inherited)
// and the tenants' usage (TenantLedger: decay by the half-life, the window, leases held counted
// as they run, persistence), each on its own.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "coordinator/quota_config.h"
#include "coordinator/tenant_ledger.h"
#include "gtest/gtest.h"

namespace nas {
namespace {

absl::Status ParseError(const std::string& json) {
  return QuotaConfig::Parse(json, "quotas.json").status();
}

TEST(QuotaConfigTest, ReadsSettingsAndTenantsWhoInheritTheDefault) {
  auto c = QuotaConfig::Parse(R"({
    "half_life_hours": 12, "window_hours": 24, "aging_hours": 0.5,
    "default": {"weight": 2, "max_running_jobs": 3},
    "tenants": {"vision": {"weight": 3, "max_workers": 8, "worker_hours_per_window": 100},
                "speech": {}}})",
                              "q");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->half_life, absl::Hours(12));
  EXPECT_EQ(c->window, absl::Hours(24));
  EXPECT_EQ(c->aging, absl::Minutes(30));
  EXPECT_EQ(c->For("vision").weight, 3);
  EXPECT_EQ(c->For("vision").max_running_jobs, 3);  // from the default
  EXPECT_EQ(c->For("vision").max_workers, 8);
  EXPECT_EQ(c->For("vision").worker_hours_per_window, 100);
  EXPECT_EQ(c->For("speech").weight, 2);
  EXPECT_EQ(c->For("unlisted").max_running_jobs, 3);
  auto empty = QuotaConfig::Parse("{}", "q");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->For("x").weight, 1);
  EXPECT_EQ(empty->For("x").max_workers, 0);
}

TEST(QuotaConfigTest, RefusesWhatIsOutOfBoundsOrMisspeltNamingTheMember) {
  struct Case {
    const char* json;
    const char* expect;
  } cases[] = {
      {R"({"tenants": {"a": {"weight": 0}}})", "tenants.a.weight: must be in (0, 1e+06], got 0"},
      {R"({"tenants": {"a": {"weight": -1}}})", "tenants.a.weight"},
      {R"({"tenants": {"a": {"max_workers": -2}}})", "tenants.a.max_workers: must be in [0,"},
      {R"({"tenants": {"a": {"max_running_jobs": 1.5}}})", "tenants.a.max_running_jobs"},
      {R"({"tenants": {"a": {"max_worker": 2}}})", "tenants.a.max_worker: unknown member"},
      {R"({"tenant": {}})", "tenant: unknown member"},
      {R"({"half_life_hours": 0})", "half_life_hours: must be in (0,"},
      {R"({"aging_hours": 1e-300})", "aging_hours: must be at least one second"},
      {R"({"window_hours": 1e999})", "quotas.json"},
      {R"({"tenants": {"a b": {}}})", "tenants.a b"},
      {R"({"tenants": []})", "tenants: expected an object"},
      {R"([1])", "expected a JSON object"},
      {R"({"tenants": {"a": {"weight": "3"}}})", "tenants.a.weight"},
      {R"({"tenants": {"a": {"b": {"c": {"d": {}}}}}})", "quotas.json"},
  };
  for (const Case& c : cases) {
    absl::Status s = ParseError(c.json);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << c.json << " -> " << s.message();
  }
  std::string big = R"({"tenants": {)";
  for (int i = 0; i <= QuotaConfig::kMaxTenants; ++i) {
    big += (i ? "," : "") + std::string("\"t") + std::to_string(i) + "\": {}";
  }
  big += "}}";
  EXPECT_NE(ParseError(big).message().find("more than the limit of 10000"), std::string::npos);
}

absl::Time At(double seconds) { return absl::FromUnixSeconds(1'000'000) + absl::Seconds(seconds); }

TEST(TenantLedgerTest, ChargesLeasesAndDecaysByTheHalfLife) {
  TenantLedger ledger(absl::Hours(1), absl::Hours(24));
  int a = ledger.Index("a");
  EXPECT_EQ(ledger.Index("a"), a);
  EXPECT_EQ(ledger.Find("b"), -1);
  ledger.Grant(a, At(0));
  EXPECT_EQ(ledger.held(a), 1);
  EXPECT_DOUBLE_EQ(ledger.DecayedSeconds(a, At(30)), 30);  // held leases count as they run
  ledger.Release(a, At(0), At(60));
  EXPECT_EQ(ledger.held(a), 0);
  EXPECT_DOUBLE_EQ(ledger.DecayedSeconds(a, At(60)), 60);
  EXPECT_NEAR(ledger.DecayedSeconds(a, At(60 + 3600)), 30, 1e-9);  // one half-life later
  EXPECT_NEAR(ledger.DecayedSeconds(a, At(60 + 7200)), 15, 1e-9);
}

TEST(TenantLedgerTest, AFreshLeaseCountsAtOnceInTheShareSoSimultaneousAsksSpread) {
  TenantLedger ledger(absl::Hours(1), absl::Hours(24));
  int a = ledger.Index("a");
  ledger.Grant(a, At(0));
  ledger.Grant(a, At(0));
  EXPECT_DOUBLE_EQ(ledger.DecayedSeconds(a, At(0)), 0);
  EXPECT_DOUBLE_EQ(ledger.ShareSeconds(a, At(0)), 2 * ledger.mean_lease_seconds());
}

TEST(TenantLedgerTest, TheWindowStartsAfreshAtItsEnd) {
  TenantLedger ledger(absl::Hours(24), absl::Hours(1));
  int a = ledger.Index("a");
  absl::Time start = ledger.WindowEnd(At(0)) - absl::Hours(1);
  ledger.Grant(a, start + absl::Minutes(10));
  ledger.Release(a, start + absl::Minutes(10), start + absl::Minutes(40));
  EXPECT_DOUBLE_EQ(ledger.WindowSeconds(a, start + absl::Minutes(50)), 1800);
  EXPECT_DOUBLE_EQ(ledger.WindowSeconds(a, start + absl::Minutes(61)), 0);
  EXPECT_GT(ledger.DecayedSeconds(a, start + absl::Minutes(61)), 1700);  // the decayed sum stays
}

TEST(TenantLedgerTest, SurvivesSerializationAndKeepsDecayingThroughTheGap) {
  TenantLedger ledger(absl::Hours(1), absl::Hours(24));
  int a = ledger.Index("a"), b = ledger.Index("b");
  ledger.Grant(a, At(0));
  ledger.Release(a, At(0), At(100));
  ledger.Grant(b, At(0));
  ledger.Release(b, At(0), At(40));
  std::string text = ledger.Serialize(At(100));
  TenantLedger back(absl::Hours(1), absl::Hours(24));
  ASSERT_TRUE(back.Restore(text, "usage").ok());
  EXPECT_NEAR(back.DecayedSeconds(back.Find("a"), At(100)), ledger.DecayedSeconds(a, At(100)),
              1e-9);
  EXPECT_NEAR(back.DecayedSeconds(back.Find("b"), At(100 + 3600)),
              ledger.DecayedSeconds(b, At(100 + 3600)), 1e-9);
  EXPECT_NEAR(back.WindowSeconds(back.Find("a"), At(200)), 100, 1e-9);
  EXPECT_FALSE(back.Restore("{\"as_of_unix_s\": 1, \"tenants\": {\"x\": {}}}", "usage").ok());
  EXPECT_FALSE(back.Restore("not json", "usage").ok());
  // Out of bounds: a far time, a sum beyond 1e15, a window index that is no whole number or
  // beyond what an int64 holds.
  auto usage = [](const std::string& as_of, const std::string& decayed, const std::string& index) {
    return absl::StrCat("{\"as_of_unix_s\": ", as_of, ", \"tenants\": {\"x\": {\"decayed_seconds\": ",
                        decayed, ", \"window_seconds\": 0, \"window_index\": ", index, "}}}");
  };
  EXPECT_TRUE(back.Restore(usage("1", "1", "2"), "usage").ok());
  EXPECT_NE(back.Restore(usage("1e300", "1", "2"), "usage").message().find("as_of_unix_s"),
            std::string::npos);
  EXPECT_NE(back.Restore(usage("1", "1e300", "2"), "usage").message().find("usage must be in"),
            std::string::npos);
  EXPECT_NE(back.Restore(usage("1", "1", "1e300"), "usage").message().find("window_index"),
            std::string::npos);
  EXPECT_NE(back.Restore(usage("1", "1", "2.5"), "usage").message().find("window_index"),
            std::string::npos);
  EXPECT_FALSE(back.Restore(
                       "{\"as_of_unix_s\": 1, \"tenants\": {\"x\": {\"decayed_seconds\": -1, "
                       "\"window_seconds\": 0, \"window_index\": 0}}}",
                       "usage")
                   .ok());
}

}  // namespace
}  // namespace nas
