// The real coordinator (gRPC on localhost:0, RocksDB in a temporary directory) against what a
// careless or hostile user sends and what a failing disk does (issue 19): every class of bad
// request is refused with a clear status while the server stays up and the other jobs are
// unchanged; a store holding one unreadable job recovers the others; a corrupted table file is
// an error naming it, never "recovered 0 jobs"; job ids are never reused; Shutdown ends open
// watch streams and long polls before it destroys anything.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "coordinator/checkpoint_store.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_spec.h"
#include "core/json_fields.h"
#include "gtest/gtest.h"
#include "nas/search.grpc.pb.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "tests/test_util.h"

namespace nas {
namespace {

namespace fs = std::filesystem;

using CoordinatorHostileTest = CoordinatorServerTest;

// A SubmitJob through a raw stub (the message as given, no client-side checks).
grpc::Status RawSubmit(const std::shared_ptr<grpc::Channel>& channel, const JobSpec& spec) {
  auto stub = SearchService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  SubmitJobRequest req;
  *req.mutable_spec() = spec;
  SubmitJobReply reply;
  return stub->SubmitJob(&ctx, req, &reply);
}

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// The Fashion-MNIST space document with one field replaced.
std::string SpaceWith(const std::string& from, const std::string& to) {
  std::string json = Json::parse(SearchSpace::Preset("fashion-mnist")->ToJson()).dump();
  size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) json.replace(at, from.size(), to);
  return json;
}

TEST_F(CoordinatorHostileTest, EveryClassOfBadSpecIsRefusedAndChangesNothing) {
  auto a = client_->Submit(SmallSpec());
  ASSERT_TRUE(a.ok()) << a.status();
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(w, 3));  // init + 2 rounds
  const JobStatus before = *client_->Get(*a);

  struct Case {
    std::string what;
    std::function<void(JobSpec&)> change;
    grpc::StatusCode code;
    std::vector<std::string> parts;
  };
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const auto bad = grpc::StatusCode::INVALID_ARGUMENT;
  const auto big = grpc::StatusCode::RESOURCE_EXHAUSTED;
  std::vector<Case> cases = {
      // Non-finite and out-of-range numbers.
      {"NaN arch_lr", [&](JobSpec& s) { s.set_arch_lr(nan); }, bad, {"arch_lr", "finite"}},
      {"inf target",
       [&](JobSpec& s) { s.set_target_latency_ms(inf); },
       bad,
       {"target_latency_ms", "finite"}},
      {"NaN smoothing", [&](JobSpec& s) { s.set_label_smoothing(nan); }, bad, {"label_smoothing"}},
      {"huge lambda", [&](JobSpec& s) { s.set_loss_lambda(1e300); }, bad, {"loss_lambda", "limit"}},
      {"huge batch", [&](JobSpec& s) { s.set_batch_size(1 << 30); }, bad, {"batch_size", "4096"}},
      {"huge epochs", [&](JobSpec& s) { s.set_search_epochs(2000000000); }, bad, {"search_epochs"}},
      {"huge priority", [&](JobSpec& s) { s.set_priority(1 << 30); }, bad, {"priority"}},
      // Strings: oversized, outside the alphabet, escaping the data roots.
      {"100 KB tenant",
       [&](JobSpec& s) { s.set_tenant(std::string(100000, 'a')); },
       bad,
       {"tenant", "limit of 64"}},
      {"10 MB tenant", [&](JobSpec& s) { s.set_tenant(std::string(10 << 20, 'a')); }, big, {}},
      {"tenant with a slash", [&](JobSpec& s) { s.set_tenant("a/b"); }, bad, {"tenant"}},
      {"device with a newline", [&](JobSpec& s) { s.set_device("cpu\nx"); }, bad, {"device"}},
      {"data_dir escaping",
       [&](JobSpec& s) { s.set_data_dir("/data/../etc"); },
       bad,
       {"data_dir", ".."}},
      // Spaces: nested, oversized, exploding, numbers beyond a double.
      {"2 MB nested space_json",
       [&](JobSpec& s) { s.set_space_json(Nested(1 << 20)); },
       big,
       {"SubmitJob", "limit"}},
      {"deeply nested space_json",
       [&](JobSpec& s) { s.set_space_json(Nested(200000)); },
       bad,
       {"space_json", "nested deeper"}},
      {"two billion blocks",
       [&](JobSpec& s) { s.set_space_json(SpaceWith("\"blocks\":2", "\"blocks\":2000000000")); },
       bad,
       {"space_json", "blocks", "limit"}},
      {"ten thousand kernels",
       [&](JobSpec& s) {
         std::string k = "3";
         for (int i = 1; i < 10000; ++i) k += "," + std::to_string(2 * i + 3);
         s.set_space_json(SpaceWith("\"kernels\":[3,5,7]", "\"kernels\":[" + k + "]"));
       },
       bad,
       {"space_json", "kernels", "limit"}},
      {"a number beyond a double",
       [&](JobSpec& s) {
         s.set_space_json(SpaceWith("\"num_classes\":10", "\"num_classes\":1e999"));
       },
       bad,
       {"space_json", "out of range"}},
      {"an integer beyond int",
       [&](JobSpec& s) {
         s.set_space_json(SpaceWith("\"num_classes\":10", "\"num_classes\":99999999999"));
       },
       bad,
       {"space_json", "num_classes"}},
      {"a huge width",
       [&](JobSpec& s) { s.set_space_json(SpaceWith("\"channels\":16", "\"channels\":1000000")); },
       bad,
       {"space_json", "channels", "limit"}},
  };
  for (const Case& c : cases) {
    JobSpec s = SmallSpec();
    c.change(s);
    grpc::Status st = RawSubmit(Channel(), s);
    EXPECT_EQ(st.error_code(), c.code) << c.what << ": " << st.error_message();
    for (const std::string& p : c.parts) {
      EXPECT_NE(st.error_message().find(p), std::string::npos)
          << c.what << ": '" << st.error_message() << "' lacks '" << p << "'";
    }
    // The server is up and the running job unchanged.
    auto now = client_->Get(*a);
    ASSERT_TRUE(now.ok()) << c.what << ": " << now.status();
    EXPECT_EQ(now->SerializeAsString(), before.SerializeAsString()) << c.what;
  }
  auto jobs = client_->List("");
  ASSERT_TRUE(jobs.ok());
  EXPECT_EQ(jobs->size(), 1u);
  // And it still works.
  SimWorker w2(Channel());
  ASSERT_TRUE(w2.Register("sim2").ok());
  ExpectSmallJobDone(*a, RunToEnd(*a, w2));
}

TEST_F(CoordinatorHostileTest, WorkerRegistrationsAreBounded) {
  SimWorker w(Channel());
  EXPECT_TRUE(IsError(w.Register(std::string(1000, 'x')), absl::StatusCode::kInvalidArgument,
                      {"name", "limit"}));
  EXPECT_TRUE(IsError(w.Register("bad name\x01"), absl::StatusCode::kInvalidArgument, {"name"}));
  EXPECT_TRUE(w.Register("host-1:42").ok());
}

TEST_F(CoordinatorHostileTest, OversizedRequestsAreRefusedNamingTheLimit) {
  auto a = client_->Submit(SmallSpec());
  ASSERT_TRUE(a.ok());
  const std::string huge(100000, 'j');
  EXPECT_TRUE(IsError(client_->Get(huge).status(), absl::StatusCode::kResourceExhausted,
                      {"GetJob", "limit of 4096"}));
  EXPECT_TRUE(
      IsError(client_->Cancel(huge), absl::StatusCode::kResourceExhausted, {"CancelJob", "limit"}));
  EXPECT_TRUE(
      IsError(client_->Delete(huge), absl::StatusCode::kResourceExhausted, {"DeleteJob", "limit"}));
  EXPECT_TRUE(IsError(client_->List(huge).status(), absl::StatusCode::kResourceExhausted,
                      {"ListJobs", "limit"}));
  // A message over the server's receive limit never reaches a handler.
  JobSpec s = SmallSpec();
  s.set_space_json(std::string(9 << 20, ' '));
  EXPECT_EQ(RawSubmit(Channel(), s).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(client_->Get(*a)->job_id(), *a);
}

// Flips every `step`th byte of a file in [from, size - 100) (before RocksDB's footer).
void Corrupt(const fs::path& file, uint64_t from, uint64_t step) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << file;
  const auto size = fs::file_size(file);
  ASSERT_GT(size, from + 100) << file;
  for (uint64_t off = from; off < size - 100; off += step) {
    f.seekg(static_cast<std::streamoff>(off));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(off));
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
}

TEST_F(CoordinatorHostileTest, AnUnreadableJobFailsAloneAndIdsAreNeverReused) {
  // Both jobs initialised and a few rounds in (b, at a higher priority, takes the worker from a,
  // which is long enough to be running still).
  JobSpec long_spec = SmallSpec();
  long_spec.set_search_epochs(30);
  auto a = client_->Submit(long_spec);
  ASSERT_TRUE(a.ok());
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(w, 3));
  JobSpec high = SmallSpec();
  high.set_priority(1);
  auto b = client_->Submit(high);
  ASSERT_TRUE(b.ok());
  for (int i = 0; i < 200 && client_->Get(*b)->state() != "RUNNING"; ++i) {
    absl::SleepFor(absl::Milliseconds(20));  // b's latencies are fetched
  }
  SimWorker wb(Channel());
  ASSERT_TRUE(wb.Register("sim-b").ok());
  ASSERT_NO_FATAL_FAILURE(CompleteTasks(wb, 3));
  ASSERT_EQ(client_->Get(*a)->state(), "RUNNING");
  ASSERT_GE(client_->Get(*b)->round(), 2);
  const JobStatus a_before = *client_->Get(*a);
  server_.reset();

  // b's committed search state is garbage; and a third job's record is lost.
  {
    auto store = CheckpointStore::Open((dir_ / "db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    RoundCommit c;
    c.job_id = *b;
    c.round = 3;
    c.search_state = "{\"alpha\": [[1, 2]], \"truncated";
    ASSERT_TRUE((*store)->CommitRound(c).ok());
  }
  Start();
  auto a_after = client_->Get(*a);
  ASSERT_TRUE(a_after.ok());
  EXPECT_EQ(a_after->state(), "RUNNING");
  EXPECT_EQ(a_after->round(), a_before.round());
  auto b_after = client_->Get(*b);
  ASSERT_TRUE(b_after.ok());
  EXPECT_EQ(b_after->state(), "FAILED");
  EXPECT_NE(b_after->message().find("recovery"), std::string::npos) << b_after->message();
  EXPECT_NE(b_after->message().find("search state"), std::string::npos) << b_after->message();

  // Ids: a new job never takes an old one's, even once the old records are gone.
  auto c = client_->Submit(SmallSpec());
  ASSERT_TRUE(c.ok());
  server_.reset();
  {
    auto store = CheckpointStore::Open((dir_ / "db").string());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->DeleteJob(*c).ok());
    ASSERT_TRUE((*store)->DeleteJob(*b).ok());
  }
  Start();
  auto d = client_->Submit(SmallSpec());
  ASSERT_TRUE(d.ok());
  std::set<std::string> ids = {*a, *b, *c, *d};
  EXPECT_EQ(ids.size(), 4u) << *a << " " << *b << " " << *c << " " << *d;
  // a still finishes.
  SimWorker w2(Channel());
  ASSERT_TRUE(w2.Register("sim2").ok());
  ASSERT_TRUE(client_->Cancel(*d).ok());
  EXPECT_EQ(RunToEnd(*a, w2).state(), "DONE");
}

// Bytes flipped in the table files that hold the jobs: in their first data block only (found
// when the block is read: the jobs are listed, or the counters read), or all through them
// (found when the table is opened). Either way the coordinator does not start, and says which
// file; it never starts with "recovered 0 jobs".
TEST_F(CoordinatorHostileTest, ACorruptedTableFileIsAnErrorNamingIt) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client_->Submit(SmallSpec()).ok());
  server_.reset();
  {
    auto store = CheckpointStore::Open((dir_ / "db").string());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Flush().ok());
  }
  const fs::path pristine = dir_ / "pristine";
  fs::copy(dir_ / "db", pristine, fs::copy_options::recursive);
  for (const auto& [from, step] : {std::pair<uint64_t, uint64_t>{8, 5000}, {64, 97}}) {
    fs::remove_all(dir_ / "db");
    fs::copy(pristine, dir_ / "db", fs::copy_options::recursive);
    int corrupted = 0;
    for (const auto& e : fs::directory_iterator(dir_ / "db")) {
      if (e.path().extension() == ".sst" && fs::file_size(e.path()) > 300) {
        ASSERT_NO_FATAL_FAILURE(Corrupt(e.path(), from, step));
        ++corrupted;
      }
    }
    ASSERT_GT(corrupted, 0);
    CoordinatorServer::Options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.db_dir = (dir_ / "db").string();
    o.latency_table = table_;
    auto s = CoordinatorServer::Start(o);
    ASSERT_FALSE(s.ok()) << "started on a store corrupted from byte " << from;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
    // RocksDB names the table file by path ("... in /db/000020.sst offset 770"), or, when a
    // table's identity no longer matches the manifest, by number ("SST #20 unique ID ..."), or,
    // when a table's properties block no longer reads as the manifest recorded it, the manifest
    // that lists the table ("properties unsorted in file .../MANIFEST-000023"): which of these
    // depends on where the flipped bytes land in the table's layout.
    const std::string m(s.status().message());
    EXPECT_TRUE(m.find(".sst") != std::string::npos || m.find("SST #") != std::string::npos ||
                m.find("/MANIFEST-") != std::string::npos)
        << m;
  }
}

TEST_F(CoordinatorHostileTest, ShutdownEndsOpenWatchesAndLongPollsFirst) {
  auto a = client_->Submit(SmallSpec());
  ASSERT_TRUE(a.ok());
  std::atomic<int> watch_code{-1}, poll_done{0};
  std::thread watcher([&] {
    absl::Status s = client_->Watch(*a, [](const JobStatus&) { return true; });
    watch_code = static_cast<int>(s.code());
  });
  SimWorker w(Channel());
  ASSERT_TRUE(w.Register("sim").ok());
  ASSERT_NO_FATAL_FAILURE(AcquireTask(w));  // the init task: the job has no more for a while
  std::thread poller([&] {
    auto got = w.Acquire(absl::Seconds(30));  // a long poll that finds nothing
    poll_done = got.ok() ? 1 : 2;
  });
  absl::SleepFor(absl::Milliseconds(300));  // both calls are in the server
  server_->Shutdown();
  watcher.join();
  poller.join();
  EXPECT_EQ(watch_code, static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(poll_done, 2);  // an error (UNAVAILABLE), not a task
  server_.reset();
}

}  // namespace
}  // namespace nas
