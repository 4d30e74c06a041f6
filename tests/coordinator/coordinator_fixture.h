// The coordinator's test fixture: a real CoordinatorServer (gRPC on 127.0.0.1:0, RocksDB in a
// temporary directory, a synthetic latency table for the Fashion-MNIST space on device
// "test-cpu"), a SearchClient to it, and helpers that drive simulated workers (sim_worker.h).
#pragma once

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "coordinator/coordinator_server.h"
#include "coordinator/search_client.h"
#include "coordinator/sim_worker.h"
#include "core/latency_table.h"
#include "core/search_space.h"
#include "gtest/gtest.h"
#include "tests/coordinator/synthetic_table.h"

namespace nas {

class CoordinatorServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("coord");
    // A table for every layer of the Fashion-MNIST space (device "test-cpu").
    auto space = SearchSpace::Preset("fashion-mnist");
    ASSERT_TRUE(space.ok());
    auto t = SyntheticLatencyTable("test-cpu", space->AllLayerKeys());
    ASSERT_TRUE(t.ok()) << t.status();
    table_ = (dir_ / "table.json").string();
    ASSERT_TRUE(t->Save(table_).ok());
    Start();
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Start(absl::Duration lease = absl::Seconds(60)) {
    CoordinatorServer::Options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.db_dir = (dir_ / "db").string();
    o.sync = false;
    o.latency_table = table_;
    o.jobs.lease = lease;
    o.jobs.pipelined_commits = pipelined_;
    o.tokens_file = tokens_file_;
    o.worker_port = worker_port_;
    auto s = CoordinatorServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    target_ = "127.0.0.1:" + std::to_string(server_->port());
    worker_target_ = "127.0.0.1:" + std::to_string(server_->worker_port());
    SearchClientOptions co;
    co.token = token_;
    auto c = SearchClient::Connect(target_, co);
    ASSERT_TRUE(c.ok());
    client_ = std::move(*c);
  }

  // A channel to the worker gateway (the user port unless worker_port_ gives it its own).
  std::shared_ptr<grpc::Channel> Channel() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    return grpc::CreateCustomChannel(worker_target_, grpc::InsecureChannelCredentials(), args);
  }

  JobSpec SmallSpec() {
    JobSpec s;
    s.set_device("test-cpu");
    s.set_batch_size(16);
    s.set_warmup_epochs(1);
    s.set_search_epochs(2);
    s.set_arch_every(2);
    s.set_seed(3);
    s.set_chain_steps(1);  // one task per round (the Chain* tests run chains)
    return s;
  }

  // Runs the simulated worker (its batch of tasks per call) until the job ends; returns its last
  // status, and the tasks it ran in `tasks` when given.
  JobStatus RunToEnd(const std::string& job, SimWorker& w, int* tasks = nullptr) {
    for (int i = 0; i < 1000; ++i) {
      auto st = client_->Get(job);
      EXPECT_TRUE(st.ok());
      if (st->state() == "DONE" || st->state() == "FAILED") return *st;
      auto ran = w.RunSome(absl::Milliseconds(200));
      EXPECT_TRUE(ran.ok()) << ran.status();
      if (ran.ok() && tasks != nullptr) *tasks += *ran;
    }
    return *client_->Get(job);
  }

  // SmallSpec's job ended with every round once: 4 training batches per epoch (train_size = 4 x
  // batch), 1 + 2 epochs, an arch step after every 2nd batch of the second joint epoch; its
  // history is init, two arch steps, final.
  void ExpectSmallJobDone(const std::string& job, const JobStatus& st) {
    ASSERT_EQ(st.state(), "DONE") << st.message();
    EXPECT_EQ(st.weight_steps(), 12);
    EXPECT_EQ(st.arch_steps(), 2);
    EXPECT_EQ(st.round(), 12);
    auto r = client_->Result(job);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->history_size(), 1 + 2 + 1);
  }

  // Acquires the next task, waiting for preparation.
  void AcquireTask(SimWorker& w) {
    for (int i = 0; i < 100; ++i) {
      auto got = w.Acquire(absl::Milliseconds(200));
      ASSERT_TRUE(got.ok()) << got.status();
      if (*got) return;
    }
    FAIL() << "no task";
  }
  // Acquires and completes `n` tasks with well-formed results.
  void CompleteTasks(SimWorker& w, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_NO_FATAL_FAILURE(AcquireTask(w));
      auto r = w.MakeResult();
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(w.Complete(r->first, r->second).ok());
    }
  }

  std::filesystem::path dir_;
  // Options of the next Start(): the tokens file and the gateway's port (coordinator_server.h),
  // and the token client_ sends.
  std::string tokens_file_;
  int worker_port_ = -1;
  std::string token_;
  std::string worker_target_;
  std::string table_, target_;
  bool pipelined_ = false;  // JobManagerOptions.pipelined_commits of the next Start()
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<SearchClient> client_;
};

}  // namespace nas
