// SearchDriver's chains (PlanWeightTasks with stop_at_arch): weight tasks planned several at a
// time, cut where an arch step is due, and applied together, follow the same trajectory as one
// task per round - what lets one worker run a chain as one task (JobSpec.chain_steps).
#include "core/search_driver.h"

#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace nas {
namespace {

// A plan over 4 edges of 3 candidates (the last one Zero on two edges), 23 batches an epoch
// (not a multiple of arch_every, so chains meet epoch ends off the arch grid).
SearchPlan Plan(const std::string& algo, int steps_per_task) {
  SearchPlan p;
  p.candidates_per_edge = {3, 3, 3, 3};
  p.zero = {
      {false, false, false}, {false, false, true}, {false, false, false}, {false, false, true}};
  p.warmup_epochs = 1;
  p.search_epochs = 3;
  p.train_batches = 23;
  p.valid_batches = 4;
  p.arch_every = 5;
  p.steps_per_task = steps_per_task;
  p.arch_algo = algo;
  p.loss = HardwareLossOptions{HardwareLossOptions::Type::kAddLinear, /*target_ms=*/2.0};
  p.latency = LatencyModel(0.5, {{0.3, 0.6, 0.9}, {0.2, 0.4, 0.0}, {0.5, 0.7, 1.1}, {0.1, 0.3, 0}});
  p.seed = 11;
  return p;
}

// Deterministic results that depend on what was planned, so that a different plan shows.
WeightTaskResult WeightResult(const WeightTaskSpec& w) {
  double s = 0;
  for (int c : w.path) s = 3 * s + c;
  return {1.0 + 0.01 * s + 0.001 * static_cast<double>(w.batches.front()), 0.5};
}
ArchTaskResult ArchResult(const ArchTaskSpec& a) {
  ArchTaskResult r;
  r.ce = 1.0 + 0.1 * static_cast<double>(a.index % 3);
  r.accuracy = 0.6;
  for (size_t e = 0; e < a.pairs.size(); ++e) {
    r.gate_grads.push_back({0.02 * (a.pairs[e].active - 1.0), -0.01 * (a.pairs[e].other + 0.5)});
  }
  return r;
}

// Everything a run planned, in order, as text; and the state it ended in.
struct Trace {
  std::vector<std::string> events;
  std::vector<int> tasks_per_round;
  std::string final_state;
};

std::string Describe(const WeightTaskSpec& w) {
  std::string s = "w" + std::to_string(w.index) + " e" + std::to_string(w.data_epoch) + " p";
  for (int c : w.path) s += std::to_string(c);
  for (size_t i = 0; i < w.batches.size(); ++i) {
    s += " b" + std::to_string(w.batches[i]) + "@" + std::to_string(w.lrs[i]);
  }
  return s;
}
std::string Describe(const ArchTaskSpec& a) {
  std::string s = "a" + std::to_string(a.index) + " v" + std::to_string(a.valid_epoch) + "." +
                  std::to_string(a.valid_batch) + " ";
  for (const PairSample& p : a.pairs) s += std::to_string(p.active) + std::to_string(p.other);
  for (int c : a.path) s += std::to_string(c);
  return s;
}

Trace RunSearch(const SearchPlan& plan, int chain) {
  Trace t;
  absl::StatusOr<SearchDriver> d = SearchDriver::Create(plan);
  EXPECT_TRUE(d.ok()) << d.status();
  if (!d.ok()) return t;
  while (!d->done()) {
    std::vector<WeightTaskSpec> w = d->PlanWeightTasks(chain, /*stop_at_arch=*/chain > 1);
    EXPECT_FALSE(w.empty());
    if (w.empty()) break;
    std::vector<WeightTaskResult> results;
    for (const WeightTaskSpec& s : w) {
      t.events.push_back(Describe(s));
      results.push_back(WeightResult(s));
    }
    t.tasks_per_round.push_back(static_cast<int>(w.size()));
    EXPECT_TRUE(d->ApplyWeightResults(results).ok());
    for (const ArchTaskSpec& a : d->PlanArchTasks()) {
      t.events.push_back(Describe(a));
      absl::StatusOr<std::string> line = d->ApplyArchResult(a, ArchResult(a));
      EXPECT_TRUE(line.ok()) << line.status();
      if (line.ok()) t.events.push_back(*line);
    }
    d->FinishRound();
  }
  t.events.push_back("ema " + std::to_string(d->ema_loss()) + " " +
                     std::to_string(d->ema_accuracy()));
  // Everything but the round counter (a chain is one round).
  t.final_state = std::regex_replace(d->SaveState(), std::regex("\"round\":[0-9]+"), "");
  return t;
}

TEST(SearchDriverTest, ChainsFollowTheTrajectoryOfOneTaskPerRound) {
  for (const std::string algo : {"gradient", "rl"}) {
    for (int steps_per_task : {1, 2}) {
      SCOPED_TRACE(algo + ", steps_per_task " + std::to_string(steps_per_task));
      SearchPlan plan = Plan(algo, steps_per_task);
      Trace one = RunSearch(plan, 1);
      ASSERT_GT(one.events.size(), 50u);
      for (int chain : {2, 5, 8, 64}) {
        SCOPED_TRACE("chain " + std::to_string(chain));
        Trace chained = RunSearch(plan, chain);
        EXPECT_EQ(chained.events, one.events);
        EXPECT_TRUE(chained.final_state == one.final_state)
            << chained.final_state << "\n vs one task per round:\n"
            << one.final_state;
        // Fewer rounds, none longer than asked.
        EXPECT_LT(chained.tasks_per_round.size(), one.tasks_per_round.size());
        for (int n : chained.tasks_per_round) EXPECT_LE(n, chain);
      }
    }
  }
}

TEST(SearchDriverTest, AChainEndsWhereAnArchStepIsDueAndAtTheEpochEnd) {
  SearchPlan plan = Plan("gradient", 1);
  absl::StatusOr<SearchDriver> d = SearchDriver::Create(plan);
  ASSERT_TRUE(d.ok()) << d.status();
  std::vector<int> lengths;
  while (!d->done()) {
    std::vector<WeightTaskSpec> w = d->PlanWeightTasks(8, /*stop_at_arch=*/true);
    ASSERT_FALSE(w.empty());
    lengths.push_back(static_cast<int>(w.size()));
    std::vector<WeightTaskResult> results;
    for (const WeightTaskSpec& s : w) results.push_back(WeightResult(s));
    ASSERT_TRUE(d->ApplyWeightResults(results).ok());
    std::vector<ArchTaskSpec> a = d->PlanArchTasks();
    EXPECT_LE(a.size(), 1u);  // at most one arch step after a chain: it ends at the first
    for (const ArchTaskSpec& s : a) ASSERT_TRUE(d->ApplyArchResult(s, ArchResult(s)).ok());
    d->FinishRound();
  }
  // Warm-up and the first joint epoch have no arch steps: 8 + 8 + 7 (the epoch's end). The
  // second and third joint epochs: cut after batches 4, 9, 14, 19 (arch steps), then 20-22.
  std::vector<int> want = {8, 8, 7, 8, 8, 7, 5, 5, 5, 5, 3, 5, 5, 5, 5, 3};
  EXPECT_EQ(lengths, want);
}

}  // namespace
}  // namespace nas
