// The real coordinator (gRPC server on localhost:0, RocksDB in a temporary directory) driven by
// simulated workers that speak the real protocol (coordinator/sim_worker.h): a job runs to DONE;
// malformed results, wrong shapes, unknown leases and jobs are refused and change nothing; an
// expired lease is re-issued and its late result refused; a restart on the same database
// continues from the last committed round without applying any round twice.
#include "coordinator/coordinator_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "coordinator/search_client.h"
#include "coordinator/sim_worker.h"
#include "core/json_fields.h"
#include "core/latency_table.h"
#include "core/param_names.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/test_util.h"

namespace nas {
namespace {

namespace fs = std::filesystem;

TEST_F(CoordinatorServerTest, BadSpecsAndUnknownJobsAreClearErrors) {
  JobSpec s = SmallSpec();
  s.set_device("");
  EXPECT_TRUE(IsError(client_->Submit(s).status(), absl::StatusCode::kInvalidArgument, {"device"}));
  s = SmallSpec();
  s.set_dataset("imagenet");
  EXPECT_TRUE(IsError(client_->Submit(s).status(), absl::StatusCode::kInvalidArgument, {"dataset"}));
  s = SmallSpec();
  s.set_arch_algo("evolution");
  EXPECT_TRUE(IsError(client_->Submit(s).status(), absl::StatusCode::kInvalidArgument, {"arch_algo"}));
  s = SmallSpec();
  s.set_space("no-such-space");
  EXPECT_TRUE(IsError(client_->Submit(s).status(), absl::StatusCode::kInvalidArgument, {"space"}));
  s = SmallSpec();
  s.set_loss("mul#exp");
  EXPECT_FALSE(client_->Submit(s).ok());
  s = SmallSpec();
  s.set_chain_steps(-1);
  EXPECT_TRUE(
      IsError(client_->Submit(s).status(), absl::StatusCode::kInvalidArgument, {"chain_steps"}));
  s = SmallSpec();
  s.set_chain_steps(4);
  s.set_parallel_tasks(2);
  EXPECT_TRUE(IsError(client_->Submit(s).status(), absl::StatusCode::kInvalidArgument,
                      {"chain_steps", "parallel_tasks 1"}));
  EXPECT_TRUE(IsError(client_->Get("j999").status(), absl::StatusCode::kNotFound, {"j999"}));
  EXPECT_TRUE(IsError(client_->Result("j999").status(), absl::StatusCode::kNotFound, {"j999"}));
  EXPECT_TRUE(IsError(client_->Cancel("j999"), absl::StatusCode::kNotFound, {"j999"}));
  auto jobs = client_->List("");
  ASSERT_TRUE(jobs.ok());
  EXPECT_TRUE(jobs->empty());
}

TEST_F(CoordinatorServerTest, UnknownDeviceFailsTheJobWithTheReason) {
  JobSpec s = SmallSpec();
  s.set_device("pixel9");
  auto id = client_->Submit(s);
  ASSERT_TRUE(id.ok());
  JobStatus st;
  for (int i = 0; i < 100; ++i) {
    st = *client_->Get(*id);
    if (st.state() == "FAILED") break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(st.state(), "FAILED");
  EXPECT_NE(st.message().find("pixel9"), std::string::npos) << st.message();
}

TEST_F(CoordinatorServerTest, JobRunsToDoneWithEveryRoundOnce) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok()) << id.status();
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  JobStatus st = RunToEnd(*id, w);
  ASSERT_NO_FATAL_FAILURE(ExpectSmallJobDone(*id, st));
  EXPECT_EQ(st.total_weight_steps(), 12);
  EXPECT_EQ(st.committed_round(), st.round());
  auto r = client_->Result(*id);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->architecture().choices_size(), 7);
  ASSERT_EQ(r->artifacts_size(), 2);
  auto weights = client_->Artifact(*id, "derived.pt");
  ASSERT_TRUE(weights.ok());
  EXPECT_EQ(*weights, std::string(8, 'w'));
  EXPECT_TRUE(IsError(client_->Artifact(*id, "nope.pt").status(), absl::StatusCode::kNotFound,
                      {"nope.pt"}));
  auto report = ParseJson(r->report_json(), "report");
  ASSERT_TRUE(report.ok());
  EXPECT_EQ((*report)["device"], "test-cpu");
  EXPECT_TRUE(report->contains("baseline"));
  // The result directory, as `nas search` writes it.
  auto md = WriteResultDirectory(*client_, *r, (dir_ / "out").string());
  ASSERT_TRUE(md.ok()) << md.status();
  for (const char* f : {"architecture.json", "network.json", "alpha_history.jsonl",
                        "latency_table.json", "report.json", "report.md", "report.html",
                        "derived.pt", "baseline.pt", "job_spec.json"}) {
    EXPECT_TRUE(fs::exists(dir_ / "out" / f)) << f;
  }
}

// A job with one task per round runs its weight tasks in chains (the default, 8): a chain is one
// task that lists every path's tensors, ends where an arch step is due, and counts one step per
// task of it. SmallSpec's 12 weight steps (4 batches an epoch, an arch step after every 2nd
// batch of the second joint epoch) take 4 rounds: 4, 4, then 2 + arch, 2 + arch.
TEST_F(CoordinatorServerTest, ChainedWeightTasksRunInFewerRoundsWithEveryStepOnce) {
  JobSpec spec = SmallSpec();
  spec.clear_chain_steps();
  auto id = client_->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(w, 1));  // init
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
  const Task& t = w.last_task();
  ASSERT_TRUE(t.has_weight());
  ASSERT_EQ(t.weight().chain_size(), 3);  // the warm-up epoch's 4 batches
  // The task lists the candidates of its 4 paths and no other.
  std::vector<std::vector<int>> paths = {{t.weight().path().begin(), t.weight().path().end()}};
  for (const WeightStep& step : t.weight().chain()) {
    paths.emplace_back(step.path().begin(), step.path().end());
    EXPECT_EQ(step.batches_size(), 1);
    EXPECT_EQ(step.lrs_size(), 1);
  }
  for (const TensorRef& r : t.tensors()) {
    TensorOwner o = ClassifyTensor(r.name());
    if (o.fixed) continue;
    EXPECT_TRUE(std::any_of(paths.begin(), paths.end(),
                            [&](const std::vector<int>& p) { return p[o.edge] == o.candidate; }))
        << r.name() << " is on none of the chain's paths";
  }
  auto ran = w.RunSome(absl::Milliseconds(200));  // completes the chain it holds
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(*ran, 1);
  JobStatus after = *client_->Get(*id);
  EXPECT_EQ(after.weight_steps(), 4);
  EXPECT_EQ(after.round(), 1);
  JobStatus st = RunToEnd(*id, w);
  ASSERT_EQ(st.state(), "DONE") << st.message();
  EXPECT_EQ(st.weight_steps(), 12);
  EXPECT_EQ(st.arch_steps(), 2);
  EXPECT_EQ(st.round(), 4);
  EXPECT_EQ(client_->Result(*id)->history_size(), 1 + 2 + 1);
}

// A chained task's outcome carries one loss and accuracy per further task: the wrong count or
// a non-finite value is refused, naming the field, and changes nothing.
TEST_F(CoordinatorServerTest, ChainOutcomeWithoutALossPerTaskIsRefused) {
  JobSpec spec = SmallSpec();
  spec.set_chain_steps(3);
  auto id = client_->Submit(spec);
  ASSERT_TRUE(id.ok()) << id.status();
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(w, 1));
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
  ASSERT_EQ(w.last_task().weight().chain_size(), 2);
  auto good = w.MakeResult();
  ASSERT_TRUE(good.ok());
  TaskOutcome short_one = good->first;
  short_one.mutable_chain_losses()->RemoveLast();
  EXPECT_TRUE(IsError(w.Complete(short_one, good->second), absl::StatusCode::kInvalidArgument,
                      {"chain_losses", "expected 2"}));
  TaskOutcome nan = good->first;
  nan.set_chain_losses(1, std::nan(""));
  EXPECT_TRUE(IsError(w.Complete(nan, good->second), absl::StatusCode::kInvalidArgument,
                      {"chain_losses", "[1]", "finite"}));
  EXPECT_EQ(client_->Get(*id)->weight_steps(), 0);
  ASSERT_TRUE(w.Complete(good->first, good->second).ok());
  EXPECT_EQ(client_->Get(*id)->weight_steps(), 3);
}

// With pipelined commits a round is written while the next one runs: the job ends the same,
// and a coordinator that shuts down writes what it queued, so a restart loses no round.
TEST_F(CoordinatorServerTest, PipelinedCommitsEndTheSameAndShutDownWritesEveryRound) {
  server_.reset();
  pipelined_ = true;
  ASSERT_NO_FATAL_FAILURE(Start());
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(w, 8));  // init + 7 rounds (an arch step among them)
  JobStatus before = *client_->Get(*id);
  // The acknowledged (written) round is at most two behind the one in memory.
  EXPECT_LE(before.committed_round(), before.round());
  EXPECT_GE(before.committed_round(), before.round() - 2);
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(Start());
  JobStatus after = *client_->Get(*id);
  EXPECT_EQ(after.round(), before.round());
  EXPECT_EQ(after.committed_round(), before.round());
  EXPECT_EQ(after.weight_steps(), before.weight_steps());
  SimWorker w2(Channel());
  ASSERT_TRUE(w2.Register("sim2").ok());
  ASSERT_NO_FATAL_FAILURE(ExpectSmallJobDone(*id, RunToEnd(*id, w2)));
  EXPECT_TRUE(client_->Artifact(*id, "derived.pt").ok());
}

// A final task returns <label>.pt and, from a worker that exports it, <label>.onnx: both become
// artifacts that the result lists (and WriteResultDirectory writes); a final task from a worker
// that sends no .onnx (here the baseline's) still completes. Another name, or a name twice, is
// refused and changes nothing.
TEST_F(CoordinatorServerTest, FinalTasksMayReturnAnOnnxModel) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok()) << id.status();
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  int finals = 0;
  for (int i = 0; i < 1000; ++i) {
    auto st = client_->Get(*id);
    ASSERT_TRUE(st.ok());
    if (st->state() == "DONE" || st->state() == "FAILED") break;
    auto got = w.Acquire(absl::Milliseconds(200));
    ASSERT_TRUE(got.ok()) << got.status();
    if (!*got) continue;
    auto r = w.MakeResult();
    ASSERT_TRUE(r.ok()) << r.status();
    if (w.last_task().has_final() && w.last_task().final().label() == "derived") {
      ++finals;
      ASSERT_EQ(r->second.size(), 1u);
      std::vector<TensorBlob> other = r->second;
      other.push_back(r->second[0]);
      other.back().set_name("derived.txt");
      EXPECT_TRUE(IsError(w.Complete(r->first, other), absl::StatusCode::kInvalidArgument,
                          {"derived.txt", "derived.onnx"}));
      std::vector<TensorBlob> twice = r->second;
      twice.push_back(r->second[0]);
      EXPECT_TRUE(IsError(w.Complete(r->first, twice), absl::StatusCode::kInvalidArgument,
                          {"derived.pt", "twice"}));
      TensorBlob onnx = r->second[0];
      onnx.set_name("derived.onnx");
      onnx.set_data(std::string(8, 'o'));
      r->second.push_back(onnx);
    }
    ASSERT_TRUE(w.Complete(r->first, r->second).ok());
  }
  EXPECT_EQ(finals, 1);
  auto res = client_->Result(*id);
  ASSERT_TRUE(res.ok()) << res.status();
  std::set<std::string> artifacts(res->artifacts().begin(), res->artifacts().end());
  EXPECT_EQ(artifacts, (std::set<std::string>{"baseline.pt", "derived.pt", "derived.onnx"}));
  auto onnx = client_->Artifact(*id, "derived.onnx");
  ASSERT_TRUE(onnx.ok()) << onnx.status();
  EXPECT_EQ(*onnx, std::string(8, 'o'));
  EXPECT_TRUE(IsError(client_->Artifact(*id, "baseline.onnx").status(), absl::StatusCode::kNotFound,
                      {"baseline.onnx"}));
  auto md = WriteResultDirectory(*client_, *res, (dir_ / "onnx_out").string());
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(ReadTextFile((dir_ / "onnx_out" / "derived.onnx").string()), std::string(8, 'o'));
}

TEST_F(CoordinatorServerTest, JobWithoutFinalTrainingEndsWithAResult) {
  JobSpec s = SmallSpec();
  s.set_train_epochs(-1);
  auto id = client_->Submit(s);
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  JobStatus st = RunToEnd(*id, w);
  ASSERT_EQ(st.state(), "DONE") << st.message();
  auto r = client_->Result(*id);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->artifacts_size(), 0);
  EXPECT_EQ(r->architecture().choices_size(), 7);
  auto report = ParseJson(r->report_json(), "report");
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->contains("baseline"));
  EXPECT_GE((*report)["seconds"]["search"].get<double>(), 0.0);
}

TEST_F(CoordinatorServerTest, TasksListOnlyTheirPathsTensors) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
  ASSERT_TRUE(w.last_task().has_init());
  auto init = w.MakeResult();
  ASSERT_TRUE(init.ok());
  size_t supernet_tensors = init->second.size();
  ASSERT_TRUE(w.Complete(init->first, init->second).ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
  const Task& t = w.last_task();
  ASSERT_TRUE(t.has_weight());
  std::vector<int> path(t.weight().path().begin(), t.weight().path().end());
  size_t candidates = 0;
  for (const TensorRef& r : t.tensors()) {
    TensorOwner o = ClassifyTensor(r.name());
    if (o.fixed) continue;
    ++candidates;
    EXPECT_EQ(o.candidate, path[o.edge]) << r.name() << " is not on the task's path";
  }
  EXPECT_LT(static_cast<size_t>(t.tensors_size()), supernet_tensors / 3);
  // 3 tensors per non-Zero candidate on the path.
  auto space = SearchSpace::Preset("fashion-mnist");
  size_t non_zero = 0;
  for (int e = 0; e < space->num_edges(); ++e) {
    non_zero += space->edges()[e].candidates[path[e]].zero ? 0 : 1;
  }
  EXPECT_EQ(candidates, 3 * non_zero);
}

// Every task of the first rounds lists exactly the store's tensors that its path (or pair)
// needs: the fixed layers and its candidates', with momentum for weight tasks (momentum tensors
// appear after the first weight round, so the coordinator's grouping of its store is rebuilt).
TEST_F(CoordinatorServerTest, TasksListExactlyTheTensorsTheirPathNeeds) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  auto space = SearchSpace::Preset("fashion-mnist");
  ASSERT_TRUE(space.ok());
  std::set<std::string> stored;  // what the coordinator holds: every tensor ever returned
  int weight_tasks = 0, arch_tasks = 0;
  for (int i = 0; i < 40 && (weight_tasks < 6 || arch_tasks < 2); ++i) {
    ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
    const Task& t = w.last_task();
    if (!t.has_init()) {
      std::vector<std::vector<bool>> keep;
      for (int e = 0; e < space->num_edges(); ++e) {
        keep.emplace_back(space->edges()[e].candidates.size(), false);
        if (t.has_weight()) {
          keep[e][t.weight().path(e)] = true;
        } else {
          ASSERT_TRUE(t.has_arch());
          keep[e][t.arch().active(e)] = true;
          keep[e][t.arch().other(e)] = true;
        }
      }
      std::set<std::string> want, listed;
      for (const std::string& n : stored) {
        bool momentum = absl::StartsWith(n, kMomentumPrefix);
        if (TensorNeeded(n, keep) && (t.has_weight() || !momentum)) want.insert(n);
      }
      for (const TensorRef& r : t.tensors()) {
        EXPECT_TRUE(listed.insert(r.name()).second) << r.name() << " listed twice";
      }
      EXPECT_EQ(listed, want) << "task of round " << t.round();
      (t.has_weight() ? weight_tasks : arch_tasks) += 1;
    }
    auto r = w.MakeResult();
    ASSERT_TRUE(r.ok()) << r.status();
    for (const TensorBlob& b : r->second) stored.insert(b.name());
    ASSERT_TRUE(w.Complete(r->first, r->second).ok());
  }
  EXPECT_GE(weight_tasks, 6);
  EXPECT_GE(arch_tasks, 2);
}

// A worker that takes several tasks per call gets each tensor inline once per reply, and with
// what earlier tasks of the reply carried it lacks nothing (no FetchTensors call).
TEST_F(CoordinatorServerTest, SeveralTasksPerReplyCarryEachTensorOnce) {
  JobSpec spec = SmallSpec();
  spec.set_parallel_tasks(4);
  auto id = client_->Submit(spec);
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  w.set_single_round_trip(true);
  w.set_batch(4);
  ASSERT_TRUE(w.Register("sim").ok());
  int tasks = 0;
  EXPECT_EQ(RunToEnd(*id, w, &tasks).state(), "DONE");
  EXPECT_GT(tasks, 12);
  EXPECT_EQ(w.inline_repeats(), 0);
  EXPECT_EQ(w.bytes_fetched(), 0);
}

TEST_F(CoordinatorServerTest, MalformedResultsAreRefusedAndChangeNothing) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
  auto init = w.MakeResult();
  ASSERT_TRUE(init.ok());
  {
    TaskOutcome o = init->first;
    o.set_train_size(0);
    EXPECT_TRUE(IsError(w.Complete(o, init->second), absl::StatusCode::kInvalidArgument,
                        {"train_size"}));
  }
  ASSERT_TRUE(w.Complete(init->first, init->second).ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
  ASSERT_TRUE(w.last_task().has_weight());
  auto good = w.MakeResult();
  ASSERT_TRUE(good.ok());
  JobStatus before = *client_->Get(*id);

  // Unknown lease.
  TaskOutcome unknown = good->first;
  unknown.set_lease_id("L-none");
  EXPECT_TRUE(IsError(w.Complete(unknown, good->second), absl::StatusCode::kFailedPrecondition,
                      {"L-none", "not current"}));
  // Wrong shape.
  std::vector<TensorBlob> wrong = good->second;
  wrong[0].clear_shape();
  wrong[0].add_shape(2);
  wrong[0].add_shape(2);
  wrong[0].set_data(std::string(16, '\0'));
  EXPECT_TRUE(IsError(w.Complete(good->first, wrong), absl::StatusCode::kInvalidArgument,
                      {wrong[0].name(), "shape"}));
  // Bytes that do not fill the shape.
  wrong = good->second;
  wrong[0].mutable_data()->pop_back();
  EXPECT_TRUE(IsError(w.Complete(good->first, wrong), absl::StatusCode::kInvalidArgument,
                      {wrong[0].name(), "bytes"}));
  // A tensor of another candidate.
  wrong = good->second;
  wrong.push_back(wrong[0]);
  wrong.back().set_name("edge0_99.depthwise_conv.weight");
  EXPECT_TRUE(IsError(w.Complete(good->first, wrong), absl::StatusCode::kInvalidArgument,
                      {"edge0_99", "not a tensor of this task"}));
  // A missing tensor.
  wrong = good->second;
  wrong.erase(wrong.begin());
  EXPECT_TRUE(IsError(w.Complete(good->first, wrong), absl::StatusCode::kInvalidArgument,
                      {"missing"}));
  // Non-finite loss, unknown dtype.
  TaskOutcome nan = good->first;
  nan.set_loss(std::nan(""));
  EXPECT_TRUE(IsError(w.Complete(nan, good->second), absl::StatusCode::kInvalidArgument,
                      {"loss"}));
  wrong = good->second;
  wrong[0].set_dtype("float16");
  EXPECT_TRUE(IsError(w.Complete(good->first, wrong), absl::StatusCode::kInvalidArgument,
                      {"float16"}));
  // Fetching a tensor outside the task.
  EXPECT_TRUE(IsError(w.Fetch(w.last_task().lease_id(), {"edge0_99.x"}).status(),
                      absl::StatusCode::kInvalidArgument, {"edge0_99.x"}));
  EXPECT_TRUE(IsError(w.Fetch("L-none", {"stem.conv.weight"}).status(),
                      absl::StatusCode::kFailedPrecondition, {"L-none"}));

  JobStatus same = *client_->Get(*id);
  EXPECT_EQ(same.round(), before.round());
  EXPECT_EQ(same.weight_steps(), before.weight_steps());
  EXPECT_EQ(same.state(), "RUNNING");

  // The lease is still current: the good result (in small chunks) is applied once.
  ASSERT_TRUE(w.Complete(good->first, good->second, /*chunk=*/5).ok());
  JobStatus after = *client_->Get(*id);
  EXPECT_EQ(after.weight_steps(), before.weight_steps() + 1);
  EXPECT_TRUE(IsError(w.Complete(good->first, good->second), absl::StatusCode::kFailedPrecondition,
                      {"not current"}));
  EXPECT_EQ(client_->Get(*id)->weight_steps(), after.weight_steps());
}

// A result's chunks may come packed several to a message (what nas_worker sends) or one per
// message; either way a tensor whose bytes do not fill its shape is refused, naming it.
TEST_F(CoordinatorServerTest, ResultChunksPackedOrOnePerMessage) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(w, 1));  // init
  int64_t steps = client_->Get(*id)->weight_steps();
  for (bool packed : {false, true}) {
    w.set_pack_chunks(packed);
    ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
    ASSERT_TRUE(w.last_task().has_weight());
    auto good = w.MakeResult();
    ASSERT_TRUE(good.ok());
    // Two tensors split across chunks of 3 bytes, packed 3 bytes to a message.
    std::vector<TensorBlob> gap = good->second;
    ASSERT_GE(gap[0].data().size(), 8u);
    gap[0].set_data(gap[0].data().substr(0, 3) + gap[0].data().substr(4));  // one byte short
    EXPECT_TRUE(IsError(w.Complete(good->first, gap, /*chunk=*/3),
                        absl::StatusCode::kInvalidArgument, {gap[0].name()}));
    ASSERT_TRUE(w.Complete(good->first, good->second, /*chunk=*/3).ok()) << "packed " << packed;
    EXPECT_EQ(client_->Get(*id)->weight_steps(), ++steps);
  }
}

TEST_F(CoordinatorServerTest, WrongGateGradientCountIsRefused) {
  JobSpec s = SmallSpec();
  s.set_warmup_epochs(-1);  // straight to the joint phase
  auto id = client_->Submit(s);
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  for (int i = 0; i < 200; ++i) {
    ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
    if (w.last_task().has_arch()) break;
    auto r = w.MakeResult();
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(w.Complete(r->first, r->second).ok());
  }
  ASSERT_TRUE(w.last_task().has_arch());
  auto r = w.MakeResult();
  ASSERT_TRUE(r.ok());
  TaskOutcome o = r->first;
  o.add_gate_grads(0.5);
  EXPECT_TRUE(IsError(w.Complete(o, r->second), absl::StatusCode::kInvalidArgument,
                      {"gate_grads", "2 per edge"}));
  o = r->first;
  o.set_gate_grads(0, std::numeric_limits<double>::infinity());
  EXPECT_TRUE(IsError(w.Complete(o, r->second), absl::StatusCode::kInvalidArgument,
                      {"gate_grads"}));
  int64_t arch_before = client_->Get(*id)->arch_steps();
  ASSERT_TRUE(w.Complete(r->first, r->second).ok());
  EXPECT_EQ(client_->Get(*id)->arch_steps(), arch_before + 1);
}

TEST_F(CoordinatorServerTest, ExpiredLeaseIsReissuedAndItsLateResultRefused) {
  server_.reset();
  Start(absl::Milliseconds(300));
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  SimWorker a(Channel()), b(Channel());
  ASSERT_TRUE(a.Register("a").ok());
  ASSERT_TRUE(b.Register("b").ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(a));
  auto late = a.MakeResult();  // a computes its result but is too slow to send it
  ASSERT_TRUE(late.ok());
  absl::SleepFor(absl::Milliseconds(800));
  ASSERT_NO_FATAL_FAILURE(AcquireTask(b));
  EXPECT_EQ(b.last_task().kind_case(), a.last_task().kind_case());
  EXPECT_NE(b.last_task().lease_id(), a.last_task().lease_id());
  EXPECT_TRUE(IsError(a.Complete(late->first, late->second),
                      absl::StatusCode::kFailedPrecondition, {"not current"}));
  auto fresh = b.MakeResult();
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(b.Complete(fresh->first, fresh->second).ok());
  EXPECT_EQ(client_->Get(*id)->state(), "RUNNING");
}

TEST_F(CoordinatorServerTest, RestartContinuesFromTheLastCommittedRound) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(w, 6));  // init + 5 weight rounds
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));  // a lease in flight across the restart
  auto in_flight = w.MakeResult();
  ASSERT_TRUE(in_flight.ok());
  JobStatus before = *client_->Get(*id);
  EXPECT_EQ(before.round(), 5);
  EXPECT_EQ(before.committed_round(), 5);  // synced commits: a round is written when acknowledged

  server_.reset();
  Start();
  JobStatus after = *client_->Get(*id);
  EXPECT_EQ(after.round(), before.round());
  EXPECT_EQ(after.weight_steps(), before.weight_steps());
  EXPECT_EQ(after.state(), "RUNNING");
  SimWorker w2(Channel());
  ASSERT_TRUE(w2.Register("sim2").ok());
  EXPECT_TRUE(IsError(w2.Complete(in_flight->first, in_flight->second),
                      absl::StatusCode::kFailedPrecondition, {"not current"}));
  // Every round once: no arch step recorded twice in the history.
  ASSERT_NO_FATAL_FAILURE(ExpectSmallJobDone(*id, RunToEnd(*id, w2)));
}

// The ImageNet preset's tensors at their real sizes (64 MB of supernet parameters) through a
// channel with gRPC's default 4 MiB message limit: everything travels in chunks.
TEST_F(CoordinatorServerTest, ImageNetSizedTensorsTravelInChunks) {
  // A table for the ImageNet space too.
  auto space = SearchSpace::Preset("proxyless-imagenet");
  ASSERT_TRUE(space.ok());
  LatencyTableInfo info;
  info.device = "test-imagenet";
  LatencyTable t(info);
  for (const std::string& k : space->AllLayerKeys()) {
    if (!t.Contains(k)) ASSERT_TRUE(t.Insert(k, LatencyEntry{1, 1.0, 0.0}).ok());
  }
  table_ = (dir_ / "imagenet.json").string();
  ASSERT_TRUE(t.Save(table_).ok());
  server_.reset();
  Start();
  JobSpec s = SmallSpec();
  s.set_space("proxyless-imagenet");
  s.set_device("test-imagenet");
  auto id = client_->Submit(s);
  ASSERT_TRUE(id.ok()) << id.status();
  auto channel = grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());  // 4 MiB
  SimWorker w(channel, /*floats=*/0);
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
  auto init = w.MakeResult();
  ASSERT_TRUE(init.ok());
  int64_t supernet_bytes = 0;
  for (const TensorBlob& b : init->second) supernet_bytes += b.data().size();
  EXPECT_GT(supernet_bytes, 60'000'000);
  ASSERT_TRUE(w.Complete(init->first, init->second).ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
    ASSERT_TRUE(w.last_task().has_weight());
    int64_t before = w.bytes_fetched();
    auto r = w.MakeResult();
    ASSERT_TRUE(r.ok()) << r.status();
    int64_t path_bytes = w.bytes_fetched() - before;
    EXPECT_GT(path_bytes, 4 << 20);               // more than one default-sized message
    EXPECT_LT(path_bytes, supernet_bytes / 2);  // one path, not the supernet
    ASSERT_TRUE(w.Complete(r->first, r->second).ok());
  }
  EXPECT_EQ(client_->Get(*id)->weight_steps(), 2);
}

TEST_F(CoordinatorServerTest, CancelledJobHandsOutNoTasks) {
  auto id = client_->Submit(SmallSpec());
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(client_->Cancel(*id).ok());
  EXPECT_EQ(client_->Get(*id)->state(), "CANCELLED");
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  auto got = w.Acquire(absl::Milliseconds(300));
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
  EXPECT_TRUE(IsError(client_->Cancel(*id), absl::StatusCode::kFailedPrecondition, {"ended"}));
}

}  // namespace
}  // namespace nas
