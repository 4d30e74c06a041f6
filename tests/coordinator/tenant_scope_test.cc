// The tenant rules on their own (TenantScope over a JobManager, no gRPC): a job is its caller's
// tenant's whatever the spec says; another tenant's job is NOT_FOUND, word for word as an
// unknown one, for every operation; an admin sees and does everything; without identities a
// spec's tenant is kept.
#include "coordinator/tenant_scope.h"

#include <filesystem>
#include <memory>

#include "gtest/gtest.h"
#include "tests/coordinator/synthetic_table.h"

namespace nas {
namespace {

class TenantScopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("tenant_scope");
    auto store = CheckpointStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto jobs = JobManager::Create(store_.get(), &latency_, {});
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = std::move(*jobs);
  }
  void TearDown() override {
    jobs_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  static JobSpec Spec() {
    JobSpec s;
    s.set_device("test-cpu");
    s.set_tenant("b");        // a caller cannot put a job into another tenant ...
    s.set_owner("mallory");   // ... or under another name
    return s;
  }

  const Identity alice_{"alice", "a", Role::kUser};
  const Identity bob_{"bob", "b", Role::kUser};
  const Identity root_{"root", "ops", Role::kAdmin};
  std::filesystem::path dir_;
  std::unique_ptr<CheckpointStore> store_;
  SyntheticLatency latency_;
  std::unique_ptr<JobManager> jobs_;
};

TEST_F(TenantScopeTest, AJobIsItsCallersTenantsAndInvisibleToAnother) {
  TenantScope scope(jobs_.get(), /*identities=*/true);
  auto id = scope.Submit(alice_, Spec());
  ASSERT_TRUE(id.ok()) << id.status();
  auto mine = scope.Get(alice_, *id);
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->tenant(), "a");
  EXPECT_EQ(mine->owner(), "alice");

  // Bob gets exactly what an unknown job gets, from every operation.
  const std::string unknown = "j999999-aaaaaaaaaa";
  absl::Status none = scope.Get(bob_, unknown).status();
  ASSERT_EQ(none.code(), absl::StatusCode::kNotFound);
  auto same = [&](const absl::Status& s) {
    return s.code() == absl::StatusCode::kNotFound &&
           std::string(s.message()) ==
               std::string(none.message()).replace(none.message().find(unknown),
                                                   unknown.size(), *id);
  };
  EXPECT_TRUE(same(scope.Get(bob_, *id).status())) << scope.Get(bob_, *id).status();
  EXPECT_TRUE(same(scope.Cancel(bob_, *id)));
  EXPECT_TRUE(same(scope.Delete(bob_, *id)));
  EXPECT_TRUE(same(scope.Result(bob_, *id).status()));
  EXPECT_TRUE(same(scope.Artifact(bob_, *id, "derived.pt").status()));
  EXPECT_TRUE(same(scope.WaitForChange(bob_, *id, JobStatus(), absl::ZeroDuration()).status()));
  EXPECT_TRUE(scope.List(bob_, "")->empty());
  EXPECT_TRUE(scope.List(bob_, "a")->empty());
  EXPECT_TRUE(scope.Queue(bob_, "a")->tenants().empty());
  // Nothing of alice's job changed.
  EXPECT_EQ(scope.Get(alice_, *id)->state(), mine->state());
  ASSERT_EQ(scope.List(alice_, "")->size(), 1u);
  ASSERT_EQ(scope.Queue(alice_, "")->tenants_size(), 1);
  EXPECT_EQ(scope.Queue(alice_, "")->tenants(0).tenant(), "a");

  // An admin sees and cancels it.
  EXPECT_EQ(scope.List(root_, "")->size(), 1u);
  EXPECT_TRUE(scope.Get(root_, *id).ok());
  EXPECT_TRUE(scope.Cancel(root_, *id).ok());
  EXPECT_TRUE(scope.Delete(root_, *id).ok());
}

TEST_F(TenantScopeTest, WithoutIdentitiesASpecsTenantIsKept) {
  TenantScope scope(jobs_.get(), /*identities=*/false);
  const Identity anyone{"", "", Role::kAdmin};
  auto id = scope.Submit(anyone, Spec());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(scope.Get(anyone, *id)->tenant(), "b");
  EXPECT_EQ(scope.Get(anyone, *id)->owner(), "mallory");
}

}  // namespace
}  // namespace nas
