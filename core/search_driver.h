// The schedule and state of one ProxylessNAS search, without LibTorch: what the single-process
// search (worker/search.cc) and the coordinator both run, so that the two follow the same
// trajectory for the same seed.
//
// A search advances in rounds. Each round:
//   1. PlanWeightTasks(n): up to n weight tasks on consecutive training batches of the current
//      epoch, each on a path sampled from p (k local SGD steps per task, one path per task);
//   2. the tasks run (locally or on workers) from the same parameter version; the caller merges
//      their tensors and calls ApplyWeightResults with the results in task order;
//   3. PlanArchTasks(): the arch steps due after those batches (every k-th batch of a joint epoch
//      from the second joint epoch on), each with its sampled pairs ('two' mode) or path (rl) and
//      its validation batch;
//   4. ApplyArchResults: one alpha update per arch task, in task order (Adam, latency gradient,
//      'two' rescale); each returns a history line.
// The state (alpha, Adam moments, RNG, position, counters) serialises to JSON between rounds
// (SaveState / RestoreState), which is what the coordinator checkpoints.
//
//   NAS_ASSIGN_OR_RETURN(SearchDriver d, SearchDriver::Create(plan));
//   while (!d.done()) {
//     std::vector<WeightTaskSpec> w = d.PlanWeightTasks(1);
//     ... run them ...  d.ApplyWeightResults(results);
//     for (const ArchTaskSpec& a : d.PlanArchTasks()) { ... d.ApplyArchResults(...); }
//   }
//
// Not thread-safe: the owner serialises calls.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/arch_params.h"
#include "core/latency_table.h"
#include "core/rng.h"
#include "core/search_space.h"

namespace nas {

struct SearchPlan {
  // Candidates per edge and which candidates are Zero (from the search space).
  std::vector<int> candidates_per_edge;
  std::vector<std::vector<bool>> zero;
  // Epochs of warm-up (weights only) and of the joint phase. Defaults 1 and 3.
  int warmup_epochs = 1;
  int search_epochs = 3;
  // Batches per epoch of the training split and of the validation split (set by the caller
  // from the data). Default 0 (invalid).
  int64_t train_batches = 0;
  int64_t valid_batches = 0;
  // An arch step after every k-th weight step of a joint epoch, from the second on. Default 5.
  int arch_every = 5;
  // Base learning rate of the cosine schedule of each phase. Default 0.05.
  double search_lr = 0.05;
  // SGD steps per weight task, all on the task's one path. Default 1.
  int steps_per_task = 1;
  // "gradient" (binary gates, 'two' mode) or "rl" (REINFORCE). Default "gradient".
  std::string arch_algo = "gradient";
  ArchAdamOptions adam;
  // Hardware loss with its target set (target_ms > 0 unless type is none).
  HardwareLossOptions loss{HardwareLossOptions::Type::kAddLinear};
  LatencyModel latency;
  uint64_t seed = 0;

  // Edges, candidates and Zero flags of `space`; everything else at its default.
  static SearchPlan ForSpace(const SearchSpace& space);
  absl::Status Validate() const;
};

// Latency model of a space under a table (fixed layers + per-candidate, Zero = 0); NotFound
// names the first key the table lacks.
absl::StatusOr<LatencyModel> BuildLatencyModel(const SearchSpace& space,
                                               const LatencyTable& table);

struct WeightTaskSpec {
  int64_t index = 0;             // task number within the search (0, 1, ...)
  std::vector<int> path;         // one candidate per edge
  int64_t data_epoch = 0;        // epoch of the training batcher (warm-up and joint counted on)
  std::vector<int64_t> batches;  // batch indices within that epoch, one per SGD step
  std::vector<double> lrs;       // learning rate of each step
};
struct WeightTaskResult {
  double loss = 0;      // mean over the task's steps
  double accuracy = 0;  // mean over the task's steps, in [0, 1]
};

struct ArchTaskSpec {
  int64_t index = 0;                // arch step number within the search
  bool rl = false;                  // REINFORCE: evaluate `path`; else the binary-gate pairs
  std::vector<PairSample> pairs;    // gradient mode
  std::vector<int> path;            // rl mode
  int64_t valid_epoch = 0, valid_batch = 0;
};
struct ArchTaskResult {
  double ce = 0;
  double accuracy = 0;
  std::vector<std::vector<double>> gate_grads;  // [edge] = {dCE/dg_active, dCE/dg_other}
};

class SearchDriver {
 public:
  enum class Phase { kWarmup, kSearch, kDone };

  // Draws alpha ~ N(0, 1e-3) and the two data seeds from Rng(plan.seed), in the order the
  // single-process search always has.
  static absl::StatusOr<SearchDriver> Create(SearchPlan plan);

  bool done() const { return phase_ == Phase::kDone; }
  Phase phase() const { return phase_; }
  static std::string PhaseName(Phase p);
  int epoch() const { return epoch_; }  // within the phase
  int64_t round() const { return round_; }
  int64_t weight_steps() const { return weight_steps_; }
  int64_t arch_steps() const { return arch_steps_; }
  // Weight steps of the whole search and of the current phase (for progress and ETA).
  int64_t total_weight_steps() const;
  int64_t phase_steps() const { return phase_step_; }
  int64_t phase_total_steps() const;
  uint64_t train_seed() const { return train_seed_; }
  uint64_t valid_seed() const { return valid_seed_; }
  const ArchParams& alpha() const { return alpha_; }
  const SearchPlan& plan() const { return plan_; }
  double ema_loss() const { return ema_loss_; }
  double ema_accuracy() const { return ema_acc_; }
  double last_arch_accuracy() const { return arch_acc_; }
  double ExpectedLatency() const { return plan_.latency.Expected(alpha_); }

  // Up to max_tasks weight tasks for the next batches of the current epoch (fewer at the end of
  // an epoch). Empty when done. Samples one path per task. With stop_at_arch, the last task is
  // the first one after which an arch step is due: run in order on one worker, such tasks are
  // the rounds of one task each that the single-process search runs (a chain, same trajectory).
  std::vector<WeightTaskSpec> PlanWeightTasks(int max_tasks, bool stop_at_arch = false);
  // Results of the tasks just planned, in the same order. Advances the position (phase, epoch).
  absl::Status ApplyWeightResults(const std::vector<WeightTaskResult>& results);
  // The arch steps due after the weight tasks just applied (may be empty).
  std::vector<ArchTaskSpec> PlanArchTasks();
  // Applies one arch result (in task order). Validation errors leave alpha untouched.
  // Returns the history line (JSON) of the step.
  absl::StatusOr<std::string> ApplyArchResult(const ArchTaskSpec& task,
                                              const ArchTaskResult& result);
  // Ends the round (counts it). Call after the round's arch results.
  void FinishRound() { ++round_; }

  // A history line (JSON object) for the current state.
  std::string HistoryLine(const std::string& phase, double loss, double accuracy) const;

  std::string SaveState() const;
  absl::Status RestoreState(const std::string& json);

 private:
  SearchDriver() = default;
  int64_t DataEpoch() const;
  // Whether an arch step is due after a weight task on these batches of the current epoch.
  bool ArchDueAfter(const std::vector<int64_t>& batches) const;

  SearchPlan plan_;
  ArchParams alpha_;
  ArchAdam adam_;
  Rng rng_;
  ReinforceState rl_state_;
  uint64_t train_seed_ = 0, valid_seed_ = 0;
  Phase phase_ = Phase::kWarmup;
  int epoch_ = 0;             // within the phase
  int64_t batch_ = 0;         // next batch within the epoch
  int64_t phase_step_ = 0;    // SGD steps done in the phase (the cosine schedule's step)
  int64_t weight_steps_ = 0;  // SGD steps of the whole search
  int64_t arch_steps_ = 0;
  int64_t round_ = 0;
  double ema_loss_ = 0, ema_acc_ = 0, arch_acc_ = 0;
  // Batches of the weight tasks planned but not yet applied: [first, first + count).
  int64_t pending_first_ = 0, pending_count_ = 0, pending_tasks_ = 0;
  // The batch range of the last applied weight tasks (for PlanArchTasks).
  int64_t done_first_ = 0, done_count_ = 0;
  bool done_in_search_ = false;
  int done_epoch_ = 0;
};

}  // namespace nas
