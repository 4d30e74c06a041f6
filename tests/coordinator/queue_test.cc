// The queue inside the JobManager, called directly (no gRPC) on the injected clock: admission
// under per-tenant quotas, weighted fair share of the workers, preemption at a round boundary
// with an exact continuation, the usage kept across a restart. Tasks are run by the simulated
// worker's result function (SimulatedResult), so rounds, merges and alpha updates are the real
// ones; a task "takes" whatever time the test advances the clock by.
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>

#include "coordinator/job_manager.h"
#include "coordinator/quota_config.h"
#include "coordinator/sim_worker.h"
#include "core/json_fields.h"
#include "gtest/gtest.h"
#include "tests/coordinator/synthetic_table.h"
#include "tests/test_util.h"

namespace nas {
namespace {

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("queue");
    Open();
  }
  void TearDown() override {
    jobs_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    jobs_.reset();
    store_.reset();
    auto store = CheckpointStore::Open(dir_.string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    JobManagerOptions o;
    o.clock = [this] {
      absl::MutexLock lock(&mu_);
      return now_;
    };
    o.quotas = [this] {
      absl::MutexLock lock(&mu_);
      return quotas_;
    };
    auto jobs = JobManager::Create(store_.get(), &latency_, o);
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    jobs_ = std::move(*jobs);
  }
  void SetQuotas(const std::string& json) {
    auto q = QuotaConfig::Parse(json, "test quotas");
    ASSERT_TRUE(q.ok()) << q.status();
    {
      absl::MutexLock lock(&mu_);
      quotas_ = std::make_shared<const QuotaConfig>(*q);
    }
    jobs_->Tick();  // the manager reads its settings on a tick
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  static JobSpec Spec(const std::string& tenant, int priority, int parallel = 1) {
    JobSpec s;
    s.set_tenant(tenant);
    s.set_device("test-cpu");
    s.set_batch_size(16);
    s.set_warmup_epochs(1);
    s.set_search_epochs(2);
    s.set_arch_every(2);
    s.set_seed(3);
    s.set_chain_steps(1);
    s.set_parallel_tasks(parallel);
    s.set_train_epochs(-1);  // no final training: the search alone
    s.set_priority(priority);
    return s;
  }
  std::string Submit(const JobSpec& spec) {
    auto id = jobs_->Submit(spec);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }
  std::string State(const std::string& id) {
    auto s = jobs_->Get(id);
    return s.ok() ? s->state() : std::string(s.status().message());
  }
  // Waits (the manager's own ticker prepares admitted jobs) until the job leaves PREPARING.
  void AwaitPrepared(const std::string& id) {
    for (int i = 0; i < 100 && State(id) == "PREPARING"; ++i) {
      auto now = jobs_->Get(id);
      ASSERT_TRUE(now.ok());
      (void)jobs_->WaitForChange(id, *now, absl::Milliseconds(100));
    }
  }
  std::string Register(const std::string& name, const std::string& latency_device = "") {
    RegisterWorkerRequest r;
    r.set_name(name);
    r.set_device("cpu");
    if (!latency_device.empty()) r.add_latency_devices(latency_device);
    auto reply = jobs_->RegisterWorker(r);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? reply->worker_id() : "";
  }
  // A task for `worker` (none: nullopt), not yet completed.
  std::optional<Task> Take(const std::string& worker) {
    auto t = jobs_->Acquire(worker, absl::ZeroDuration());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : std::nullopt;
  }
  // Completes `task` as the simulated worker would.
  void Finish(const Task& task) {
    std::vector<TensorBlob> tensors;
    if (task.has_weight() || task.has_arch()) {
      std::vector<std::string> names;
      for (const TensorRef& r : task.tensors()) names.push_back(r.name());
      auto fetched = jobs_->Fetch(task.lease_id(), names);
      ASSERT_TRUE(fetched.ok()) << fetched.status();
      for (const auto& b : *fetched) tensors.push_back(*b);
    }
    auto result = SimulatedResult(task, std::move(tensors));
    ASSERT_TRUE(result.ok()) << result.status();
    CompletedTask c;
    c.outcome = std::move(result->first);
    c.tensors = std::move(result->second);
    absl::Status s = jobs_->Complete(std::move(c));
    ASSERT_TRUE(s.ok()) << s;
  }
  // One worker runs tasks (each taking a second) until `id` is DONE; the job ids it ran, in
  // order.
  std::vector<std::string> RunUntilDone(const std::string& worker, const std::string& id,
                                        int max_tasks = 2000) {
    std::vector<std::string> ran;
    for (int i = 0; i < max_tasks && State(id) != "DONE"; ++i) {
      std::optional<Task> t = Take(worker);
      if (!t.has_value()) {
        jobs_->Tick();  // admission, preparation
        absl::SleepFor(absl::Milliseconds(5));
        continue;
      }
      Advance(absl::Seconds(1));
      Finish(*t);
      ran.push_back(t->job_id());
    }
    EXPECT_EQ(State(id), "DONE");
    return ran;
  }
  std::vector<std::string> History(const std::string& id) {
    auto r = jobs_->Result(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::vector<std::string>(r->history().begin(), r->history().end())
                  : std::vector<std::string>();
  }

  std::filesystem::path dir_;
  std::unique_ptr<CheckpointStore> store_;
  SyntheticLatency latency_;
  absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  std::shared_ptr<const QuotaConfig> quotas_;
  std::unique_ptr<JobManager> jobs_;
};

TEST_F(QueueTest, AJobOverItsTenantsRunningQuotaWaitsQueuedAndIsAdmittedWhenASlotFrees) {
  SetQuotas(R"({"tenants": {"lab": {"max_running_jobs": 1}}})");
  std::string a = Submit(Spec("lab", 0));
  std::string b = Submit(Spec("lab", 0));
  std::string other = Submit(Spec("elsewhere", 0));  // another tenant: not held back
  EXPECT_NE(State(a), "QUEUED");
  EXPECT_NE(State(other), "QUEUED");
  auto st = jobs_->Get(b);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state(), "QUEUED");
  EXPECT_EQ(st->queue_position(), 1);
  EXPECT_NE(st->wait_reason().find("quota: tenant lab runs at most 1 job"), std::string::npos)
      << st->wait_reason();
  GetQueueReply q = jobs_->Queue("lab");
  ASSERT_EQ(q.tenants_size(), 1);
  EXPECT_EQ(q.tenants(0).running_jobs(), 1);
  EXPECT_EQ(q.tenants(0).queued_jobs(), 1);
  EXPECT_EQ(q.tenants(0).max_running_jobs(), 1);
  ASSERT_EQ(q.tenants(0).jobs_size(), 2);
  EXPECT_EQ(q.tenants(0).jobs(1).job_id(), b);  // the queue after the running job

  ASSERT_TRUE(jobs_->Cancel(a).ok());
  EXPECT_NE(State(b), "QUEUED");
  // The quota's reason is gone. (Once b's preparation finishes - a background thread, sooner or
  // later than this line - it may wait for a worker instead: "share: every worker ... busy".)
  const std::string reason = jobs_->Get(b)->wait_reason();
  EXPECT_EQ(reason.find("quota"), std::string::npos) << reason;
}

TEST_F(QueueTest, APreemptedJobYieldsAtItsRoundBoundaryAndLaterContinuesExactly) {
  // The uninterrupted run, for comparison.
  std::string w = Register("w");
  JobSpec spec = Spec("lab", 0);
  spec.set_search_epochs(8);
  std::string alone = Submit(spec);
  AwaitPrepared(alone);
  RunUntilDone(w, alone);
  const std::vector<std::string> expected = History(alone);
  ASSERT_GT(expected.size(), 8u);

  SetQuotas(R"({"tenants": {"lab": {"max_running_jobs": 1}}})");
  std::string low = Submit(spec);
  AwaitPrepared(low);
  // A few rounds of the low job (warm-up: one weight task a round), then a high-priority job
  // arrives with a round in flight.
  for (int i = 0; i < 3; ++i) {
    std::optional<Task> t = Take(w);
    ASSERT_TRUE(t.has_value());
    Advance(absl::Seconds(1));
    Finish(*t);
  }
  std::optional<Task> in_flight = Take(w);
  ASSERT_TRUE(in_flight.has_value());
  ASSERT_EQ(in_flight->job_id(), low);
  std::string high = Submit(Spec("lab", 5));
  EXPECT_EQ(State(high), "PREPARING");  // admitted: it takes the slot
  auto yielding = jobs_->Get(low);
  EXPECT_EQ(yielding->state(), "RUNNING");  // until its round ends
  EXPECT_NE(yielding->wait_reason().find("preempted"), std::string::npos);
  Advance(absl::Seconds(1));
  Finish(*in_flight);
  auto queued = jobs_->Get(low);
  EXPECT_EQ(queued->state(), "QUEUED");
  EXPECT_EQ(queued->preemptions(), 1);
  EXPECT_EQ(queued->queue_position(), 1);

  // The worker now runs the high job only, to its end; then the low job continues.
  AwaitPrepared(high);
  std::vector<std::string> ran = RunUntilDone(w, high);
  for (const std::string& id : ran) EXPECT_EQ(id, high);
  RunUntilDone(w, low);
  EXPECT_EQ(History(low), expected);  // byte-equal to the uninterrupted run
}

TEST_F(QueueTest, WorkersAreSharedByWeightAndATenantAloneGetsThemAll) {
  SetQuotas(R"({"tenants": {"big": {"weight": 3}, "small": {"weight": 1}}})");
  std::vector<std::string> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(Register(absl::StrCat("w", i)));
  // Enough work for each: two jobs of 4 parallel tasks a round per tenant.
  std::map<std::string, std::string> tenant_of;
  for (const char* t : {"big", "small"}) {
    for (int k = 0; k < 2; ++k) {
      JobSpec s = Spec(t, 0, /*parallel=*/4);
      s.set_search_epochs(400);
      tenant_of[Submit(s)] = t;
    }
  }
  for (const auto& [id, t] : tenant_of) AwaitPrepared(id);
  std::map<std::string, int> seconds;
  for (int step = 0; step < 400; ++step) {
    std::vector<Task> running;
    for (const std::string& w : workers) {
      std::optional<Task> t = Take(w);
      if (t.has_value()) running.push_back(*t);
    }
    Advance(absl::Seconds(1));
    for (const Task& t : running) {
      if (step >= 100) ++seconds[tenant_of[t.job_id()]];  // the measured window
      Finish(t);
    }
  }
  double total = seconds["big"] + seconds["small"];
  ASSERT_GT(total, 0);
  EXPECT_NEAR(seconds["big"] / total, 0.75, 0.05) << seconds["big"] << " " << seconds["small"];

  // small's jobs end: big alone gets every worker.
  for (const auto& [id, t] : tenant_of) {
    if (t == "small") ASSERT_TRUE(jobs_->Cancel(id).ok());
  }
  int taken = 0;
  for (const std::string& w : workers) taken += Take(w).has_value() ? 1 : 0;
  EXPECT_EQ(taken, 4);
}

TEST_F(QueueTest, ATenantAtItsWorkerQuotaGetsNoMoreWorkers) {
  SetQuotas(R"({"tenants": {"lab": {"max_workers": 2}}})");
  std::string id = Submit(Spec("lab", 0, /*parallel=*/4));
  AwaitPrepared(id);
  std::string w0 = Register("w0");
  std::optional<Task> init = Take(w0);
  ASSERT_TRUE(init.has_value());
  Finish(*init);  // now a round of 4 weight tasks
  int taken = 0;
  for (int i = 0; i < 4; ++i) taken += Take(Register(absl::StrCat("x", i))).has_value() ? 1 : 0;
  EXPECT_EQ(taken, 2);
  GetQueueReply q = jobs_->Queue("lab");
  ASSERT_EQ(q.tenants_size(), 1);
  EXPECT_EQ(q.tenants(0).workers_held(), 2);
}

TEST_F(QueueTest, ATenantOverItsWorkerHourBudgetYieldsAndWaitsForTheWindow) {
  // 36 worker-seconds per window of an hour.
  SetQuotas(R"({"window_hours": 1, "tenants": {"lab": {"worker_hours_per_window": 0.01}}})");
  JobSpec spec = Spec("lab", 0);
  spec.set_search_epochs(100);
  std::string id = Submit(spec);
  AwaitPrepared(id);
  std::string w = Register("w");
  int ran = 0;
  for (int i = 0; i < 100; ++i) {
    jobs_->Tick();
    std::optional<Task> t = Take(w);
    if (!t.has_value()) break;
    Advance(absl::Seconds(1));
    Finish(*t);
    ++ran;
  }
  EXPECT_GE(ran, 36);
  EXPECT_LT(ran, 100);
  jobs_->Tick();
  auto st = jobs_->Get(id);
  EXPECT_EQ(st->state(), "QUEUED");
  EXPECT_NE(st->wait_reason().find("budget"), std::string::npos) << st->wait_reason();
  EXPECT_GT(st->estimated_start_unix_ms(), absl::ToUnixMillis(now_));
  // The next window: admitted again.
  Advance(absl::Hours(1));
  jobs_->Tick();
  EXPECT_NE(State(id), "QUEUED");
}

TEST_F(QueueTest, TheFinalLatencyIsMeasuredOnAWorkerOfTheJobsDevice) {
  JobSpec spec = Spec("lab", 0);
  spec.set_train_epochs(1);
  spec.set_no_baseline(true);
  std::string id = Submit(spec);
  AwaitPrepared(id);
  std::string any = Register("elsewhere");
  std::string dev = Register("on-device", "test-cpu");
  // The search runs on the first worker; the final task waits for the device's.
  std::optional<Task> t;
  for (int i = 0; i < 1000; ++i) {
    t = Take(any);
    if (!t.has_value()) break;
    Finish(*t);
  }
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(State(id), "FINAL");
  std::optional<Task> final_task = Take(dev);
  ASSERT_TRUE(final_task.has_value());
  ASSERT_TRUE(final_task->has_final());
  Finish(*final_task);
  ASSERT_EQ(State(id), "DONE");
  auto r = jobs_->Result(id);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->report_json().find("\"is_job_device\": true"), std::string::npos);
  EXPECT_NE(r->report_json().find("\"worker\": \"on-device\""), std::string::npos);
}

TEST_F(QueueTest, AWorkersLatencyDevicesAreBoundedAndChecked) {
  auto refused = [&](std::vector<std::string> devices, const std::string& expect) {
    RegisterWorkerRequest r;
    r.set_name("w");
    r.set_device("cpu");
    for (std::string& d : devices) r.add_latency_devices(std::move(d));
    auto reply = jobs_->RegisterWorker(r);
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(reply.status().message().find(expect), std::string::npos) << reply.status();
  };
  refused(std::vector<std::string>(17, "local-cpu"), "latency_devices: 17 devices");
  refused({""}, "latency_devices: an empty device name");
  refused({"pixel\n9"}, "latency_devices");
  refused({std::string(129, 'a')}, "latency_devices");
  EXPECT_FALSE(Register("ok", "pixel9:tflite+fp16").empty());
}

TEST_F(QueueTest, WithoutAWorkerOfItsDeviceTheReportSaysWhereItWasMeasured) {
  JobSpec spec = Spec("lab", 0);
  spec.set_train_epochs(1);
  spec.set_no_baseline(true);
  std::string id = Submit(spec);
  AwaitPrepared(id);
  std::string w = Register("elsewhere", "some-other-device");
  RunUntilDone(w, id);
  auto r = jobs_->Result(id);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->report_json().find("\"is_job_device\": false"), std::string::npos);
}

TEST_F(QueueTest, TheUsageSurvivesARestart) {
  std::string id = Submit(Spec("lab", 0));
  AwaitPrepared(id);
  std::string w = Register("w");
  for (int i = 0; i < 10; ++i) {
    std::optional<Task> t = Take(w);
    ASSERT_TRUE(t.has_value());
    Advance(absl::Seconds(3));
    Finish(*t);
  }
  Advance(absl::Seconds(2));
  jobs_->Tick();  // writes the usage (at most once a second)
  GetQueueReply before = jobs_->Queue("lab");
  ASSERT_EQ(before.tenants_size(), 1);
  EXPECT_NEAR(before.tenants(0).usage_worker_seconds(), 30, 0.01);
  Open();
  GetQueueReply after = jobs_->Queue("lab");
  ASSERT_EQ(after.tenants_size(), 1);
  EXPECT_NEAR(after.tenants(0).usage_worker_seconds(), before.tenants(0).usage_worker_seconds(),
              1e-6);
  EXPECT_NEAR(after.tenants(0).window_worker_hours(), 30.0 / 3600, 1e-9);
}

TEST_F(QueueTest, AQueuedJobStaysQueuedAcrossARestartWithItsPlaceAndReason) {
  SetQuotas(R"({"tenants": {"lab": {"max_running_jobs": 1}}})");
  std::string a = Submit(Spec("lab", 0));
  std::string b = Submit(Spec("lab", 0));
  AwaitPrepared(a);
  ASSERT_EQ(State(b), "QUEUED");
  Open();  // the same quotas (the provider is the test's)
  EXPECT_NE(State(a), "QUEUED");
  auto st = jobs_->Get(b);
  EXPECT_EQ(st->state(), "QUEUED");
  EXPECT_EQ(st->queue_position(), 1);
  EXPECT_NE(st->wait_reason().find("quota"), std::string::npos);
}

// After the search, paths of the trained supernet are evaluated with their inherited weights (the
// report's accuracy-latency view): eval tasks list the union of their paths' tensors, and the
// report carries each path's source, choices, predicted latency and accuracy.
TEST_F(QueueTest, TheReportCarriesTheSampledPathsEvaluatedWithInheritedWeights) {
  JobSpec spec = Spec("lab", 0);
  spec.set_sampled_paths(9);  // + derived + baseline = 11 paths: two eval tasks of 8 and 3
  std::string id = Submit(spec);
  AwaitPrepared(id);
  std::string w = Register("w");
  int evals = 0;
  for (int i = 0; i < 2000 && State(id) != "DONE"; ++i) {
    std::optional<Task> t = Take(w);
    if (!t.has_value()) {
      jobs_->Tick();
      continue;
    }
    if (t->has_eval()) {
      ++evals;
      EXPECT_GT(t->tensors_size(), 0);
      EXPECT_EQ(t->eval().batch_size(), 16);
      if (evals == 1) {
        // A result with the wrong number of accuracies, or one outside [0, 1], is refused.
        CompletedTask bad;
        bad.outcome.set_lease_id(t->lease_id());
        bad.outcome.add_path_accuracies(0.5);
        EXPECT_EQ(jobs_->Complete(bad).code(), absl::StatusCode::kInvalidArgument);
        for (int k = 1; k < t->eval().paths_size(); ++k) bad.outcome.add_path_accuracies(0.5);
        bad.outcome.set_path_accuracies(0, 1.5);
        EXPECT_EQ(jobs_->Complete(bad).code(), absl::StatusCode::kInvalidArgument);
        bad.outcome.set_path_accuracies(0, std::nan(""));
        EXPECT_EQ(jobs_->Complete(bad).code(), absl::StatusCode::kInvalidArgument);
      }
    }
    Finish(*t);
  }
  ASSERT_EQ(State(id), "DONE");
  EXPECT_EQ(evals, 2);
  auto r = jobs_->Result(id);
  ASSERT_TRUE(r.ok()) << r.status();
  auto report = ParseJson(r->report_json(), "report.json");
  ASSERT_TRUE(report.ok()) << report.status();
  const Json& paths = (*report)["sampled_paths"]["paths"];
  ASSERT_EQ(paths.size(), 11u);
  EXPECT_EQ(paths[0]["source"], "derived");
  EXPECT_EQ(paths[1]["source"], "baseline");
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_TRUE(paths[i]["predicted_latency_ms"].get<double>() > 0);
    double acc = paths[i]["accuracy"].get<double>();
    EXPECT_TRUE(acc >= 0 && acc <= 1);
  }
  // Not networks: no artifact for the eval results.
  for (const std::string& a : r->artifacts()) EXPECT_EQ(a.find("paths/"), std::string::npos);
}

}  // namespace
}  // namespace nas
