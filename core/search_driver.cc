#include "core/search_driver.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/json_fields.h"
#include "core/latency_table.h"
#include "core/network_config.h"
#include "core/status_macros.h"

namespace nas {

namespace {

double Cosine(double base, int64_t step, int64_t total) {
  if (total <= 0) return base;
  return 0.5 * base * (1 + std::cos(M_PI * static_cast<double>(step) / total));
}

}  // namespace

absl::StatusOr<LatencyModel> BuildLatencyModel(const SearchSpace& space,
                                               const LatencyTable& table) {
  // A path's latency is the layer sum of its network plus the table's calibration,
  // overhead + per_layer * layers (core/latency_table.h): the overhead and the fixed layers'
  // share go into fixed_ms, and each non-Zero candidate carries its own per-layer term, so
  // PathLatency(choices) == table.PredictNetwork(space.Derive(choices)->LayerKeys()).
  const std::vector<std::string> fixed_keys = space.FixedLayerKeys();
  NAS_ASSIGN_OR_RETURN(double fixed, table.SumMeans(fixed_keys));
  fixed += table.NetworkCorrection(static_cast<int>(fixed_keys.size()));
  const double per_layer =
      table.info().calibration.has_value() ? table.info().calibration->per_layer_ms : 0.0;
  std::vector<std::vector<double>> edge_ms;
  for (const EdgeSpec& e : space.edges()) {
    std::vector<double> ms;
    for (size_t i = 0; i < e.candidates.size(); ++i) {
      if (e.candidates[i].zero) {
        ms.push_back(0.0);
        continue;
      }
      NAS_ASSIGN_OR_RETURN(LatencyEntry le, table.Lookup(BlockKey(e.Block(static_cast<int>(i)))));
      ms.push_back(le.mean_ms + per_layer);
    }
    edge_ms.push_back(ms);
  }
  // The fastest network must still take time: a calibration fitted on a busy machine can make
  // the correction larger than the layers it corrects.
  double fastest = fixed;
  for (const std::vector<double>& ms : edge_ms) {
    fastest += ms.empty() ? 0.0 : *std::min_element(ms.begin(), ms.end());
  }
  if (!(fastest > 0) && table.info().calibration.has_value()) {
    const LatencyCalibration& c = *table.info().calibration;
    return absl::FailedPreconditionError(absl::StrCat(
        "latency table of device ", table.info().device, ": its calibration (overhead ",
        c.overhead_ms, " ms, ", c.per_layer_ms, " ms per layer) predicts ", fastest,
        " ms for the fastest network of space ", space.name(),
        "; the table was profiled on a busy machine - profile again"));
  }
  return LatencyModel(fixed, edge_ms);
}

SearchPlan SearchPlan::ForSpace(const SearchSpace& space) {
  SearchPlan plan;
  plan.candidates_per_edge = space.CandidatesPerEdge();
  for (const EdgeSpec& e : space.edges()) {
    std::vector<bool> z;
    for (const auto& c : e.candidates) z.push_back(c.zero);
    plan.zero.push_back(z);
  }
  return plan;
}

absl::Status SearchPlan::Validate() const {
  if (candidates_per_edge.empty()) return absl::InvalidArgumentError("plan: no edges");
  if (zero.size() != candidates_per_edge.size()) {
    return absl::InvalidArgumentError("plan.zero: one entry per edge expected");
  }
  for (size_t e = 0; e < zero.size(); ++e) {
    if (static_cast<int>(zero[e].size()) != candidates_per_edge[e]) {
      return absl::InvalidArgumentError(absl::StrCat("plan.zero[", e, "]: expected ",
                                                     candidates_per_edge[e], " flags"));
    }
  }
  if (warmup_epochs < 0) return absl::InvalidArgumentError("warmup_epochs: must be >= 0");
  if (search_epochs < 0) return absl::InvalidArgumentError("search_epochs: must be >= 0");
  if (train_batches <= 0) {
    return absl::InvalidArgumentError(
        "train_batches: the training split has no full batch (fewer images than batch_size)");
  }
  if (search_epochs > 1 && valid_batches <= 0) {
    return absl::InvalidArgumentError(
        "valid_batches: the validation split has no full batch (fewer images than batch_size)");
  }
  if (arch_every <= 0) return absl::InvalidArgumentError("arch_every: must be positive");
  if (steps_per_task <= 0) return absl::InvalidArgumentError("steps_per_task: must be positive");
  if (!(search_lr > 0)) return absl::InvalidArgumentError("search_lr: must be positive");
  if (arch_algo != "gradient" && arch_algo != "rl") {
    return absl::InvalidArgumentError(
        absl::StrCat("arch_algo: '", arch_algo, "' is not one of gradient, rl"));
  }
  if (latency.edge_ms().size() != candidates_per_edge.size()) {
    return absl::InvalidArgumentError("latency: the model's edges do not match the space");
  }
  return loss.Validate();
}

std::string SearchDriver::PhaseName(Phase p) {
  switch (p) {
    case Phase::kWarmup:
      return "warmup";
    case Phase::kSearch:
      return "search";
    case Phase::kDone:
      return "done";
  }
  return "?";
}

absl::StatusOr<SearchDriver> SearchDriver::Create(SearchPlan plan) {
  NAS_RETURN_IF_ERROR(plan.Validate());
  SearchDriver d;
  d.plan_ = std::move(plan);
  d.rng_ = Rng(d.plan_.seed);
  d.alpha_ = ArchParams(d.plan_.candidates_per_edge);
  d.alpha_.InitNormal(1e-3, d.rng_);
  d.adam_ = ArchAdam(d.plan_.candidates_per_edge, d.plan_.adam);
  d.train_seed_ = d.rng_.Next();
  d.valid_seed_ = d.rng_.Next();
  d.phase_ = d.plan_.warmup_epochs > 0 ? Phase::kWarmup : Phase::kSearch;
  if (d.phase_ == Phase::kSearch && d.plan_.search_epochs == 0) d.phase_ = Phase::kDone;
  return d;
}

int64_t SearchDriver::total_weight_steps() const {
  return plan_.train_batches * (plan_.warmup_epochs + plan_.search_epochs);
}

int64_t SearchDriver::phase_total_steps() const {
  int epochs = phase_ == Phase::kWarmup ? plan_.warmup_epochs : plan_.search_epochs;
  return plan_.train_batches * epochs;
}

int64_t SearchDriver::DataEpoch() const {
  return (phase_ == Phase::kWarmup ? 0 : plan_.warmup_epochs) + epoch_;
}

std::vector<WeightTaskSpec> SearchDriver::PlanWeightTasks(int max_tasks, bool stop_at_arch) {
  std::vector<WeightTaskSpec> tasks;
  if (done() || max_tasks <= 0) return tasks;
  pending_first_ = batch_;
  pending_count_ = 0;
  int64_t total = phase_total_steps();
  int64_t b = batch_;
  int64_t step = phase_step_;
  for (int t = 0; t < max_tasks && b < plan_.train_batches; ++t) {
    WeightTaskSpec w;
    w.index = weight_steps_ + (b - batch_);
    w.path = alpha_.SamplePath(rng_);
    w.data_epoch = DataEpoch();
    for (int k = 0; k < plan_.steps_per_task && b < plan_.train_batches; ++k) {
      w.batches.push_back(b++);
      w.lrs.push_back(Cosine(plan_.search_lr, step++, total));
    }
    pending_count_ += static_cast<int64_t>(w.batches.size());
    tasks.push_back(std::move(w));
    if (stop_at_arch && ArchDueAfter(tasks.back().batches)) break;
  }
  pending_tasks_ = static_cast<int64_t>(tasks.size());
  return tasks;
}

absl::Status SearchDriver::ApplyWeightResults(const std::vector<WeightTaskResult>& results) {
  if (static_cast<int64_t>(results.size()) != pending_tasks_) {
    return absl::InvalidArgumentError(absl::StrCat("weight results: expected ", pending_tasks_,
                                                   ", got ", results.size()));
  }
  for (size_t i = 0; i < results.size(); ++i) {
    if (!std::isfinite(results[i].loss) || !(results[i].accuracy >= 0) ||
        results[i].accuracy > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("weight results[", i, "]: loss must be finite and accuracy in [0, 1]"));
    }
  }
  for (const WeightTaskResult& r : results) {
    ema_loss_ = phase_step_ == 0 ? r.loss : 0.98 * ema_loss_ + 0.02 * r.loss;
    ema_acc_ = phase_step_ == 0 ? r.accuracy : 0.98 * ema_acc_ + 0.02 * r.accuracy;
    ++phase_step_;
  }
  // Steps beyond one per task advance the schedule without another EMA sample.
  int64_t extra = pending_count_ - static_cast<int64_t>(results.size());
  phase_step_ += extra;
  weight_steps_ += pending_count_;
  done_first_ = pending_first_;
  done_count_ = pending_count_;
  done_in_search_ = phase_ == Phase::kSearch;
  done_epoch_ = epoch_;
  batch_ += pending_count_;
  pending_tasks_ = pending_count_ = 0;
  if (batch_ >= plan_.train_batches) {
    batch_ = 0;
    ++epoch_;
    int epochs = phase_ == Phase::kWarmup ? plan_.warmup_epochs : plan_.search_epochs;
    if (epoch_ >= epochs) {
      epoch_ = 0;
      phase_step_ = 0;
      phase_ = phase_ == Phase::kWarmup ? Phase::kSearch : Phase::kDone;
      if (phase_ == Phase::kSearch && plan_.search_epochs == 0) phase_ = Phase::kDone;
    }
  }
  return absl::OkStatus();
}

bool SearchDriver::ArchDueAfter(const std::vector<int64_t>& batches) const {
  if (phase_ != Phase::kSearch || epoch_ == 0) return false;
  return std::any_of(batches.begin(), batches.end(),
                     [&](int64_t b) { return (b + 1) % plan_.arch_every == 0; });
}

std::vector<ArchTaskSpec> SearchDriver::PlanArchTasks() {
  std::vector<ArchTaskSpec> tasks;
  if (!done_in_search_ || done_epoch_ == 0) return tasks;
  int64_t a = arch_steps_;
  for (int64_t b = done_first_; b < done_first_ + done_count_; ++b) {
    if ((b + 1) % plan_.arch_every != 0) continue;
    ArchTaskSpec t;
    t.index = a;
    t.valid_epoch = a / plan_.valid_batches;
    t.valid_batch = a % plan_.valid_batches;
    ++a;
    if (plan_.arch_algo == "gradient") {
      t.pairs = alpha_.SamplePairs(rng_);
    } else {
      t.rl = true;
      t.path = alpha_.SamplePath(rng_);
    }
    tasks.push_back(std::move(t));
  }
  done_count_ = 0;
  return tasks;
}

absl::StatusOr<std::string> SearchDriver::ApplyArchResult(const ArchTaskSpec& task,
                                                          const ArchTaskResult& r) {
  if (!std::isfinite(r.ce) || !(r.accuracy >= 0) || r.accuracy > 1) {
    return absl::InvalidArgumentError("arch result: ce must be finite and accuracy in [0, 1]");
  }
  double step_loss = 0;
  if (!task.rl) {
    int n = alpha_.num_edges();
    if (static_cast<int>(task.pairs.size()) != n) {
      return absl::InvalidArgumentError("arch task: pairs do not match the edges");
    }
    std::vector<bool> active_is_zero(n);
    for (int e = 0; e < n; ++e) {
      int a = task.pairs[e].active;
      if (a < 0 || a >= alpha_.num_candidates(e)) {
        return absl::InvalidArgumentError(absl::StrCat("arch task: pairs[", e, "] out of range"));
      }
      active_is_zero[e] = plan_.zero[e][a];
    }
    NAS_ASSIGN_OR_RETURN(ArchUpdateStats u,
                         ArchUpdate(alpha_, adam_, task.pairs, r.gate_grads, active_is_zero,
                                    r.ce, &plan_.latency, plan_.loss));
    step_loss = u.loss;
  } else {
    ReinforceOptions ro;
    double reward = ReinforceReward(ro, r.accuracy, plan_.latency.PathLatency(task.path),
                                    plan_.loss.target_ms);
    ReinforceUpdate(alpha_, adam_, task.path, reward, ro, rl_state_);
    step_loss = -reward;
  }
  arch_acc_ = r.accuracy;
  ++arch_steps_;
  return HistoryLine("search", step_loss, r.accuracy);
}

std::string SearchDriver::HistoryLine(const std::string& phase, double loss,
                                      double accuracy) const {
  Json line = {{"phase", phase},
               {"epoch", phase == "final" ? plan_.search_epochs : epoch_},
               {"step", phase_step_},
               {"loss", loss},
               {"accuracy", accuracy},
               {"expected_latency_ms", ExpectedLatency()},
               {"entropy", alpha_.MeanEntropy()},
               {"alpha", alpha_.all()}};
  return line.dump();
}

std::string SearchDriver::SaveState() const {
  Json j = {{"alpha", alpha_.all()},
            {"adam", Json::parse(adam_.ToJson())},
            {"rng", rng_.State()},
            {"rl_baseline", rl_state_.baseline},
            {"rl_initialised", rl_state_.initialised},
            {"train_seed", train_seed_},
            {"valid_seed", valid_seed_},
            {"phase", static_cast<int>(phase_)},
            {"epoch", epoch_},
            {"batch", batch_},
            {"phase_step", phase_step_},
            {"weight_steps", weight_steps_},
            {"arch_steps", arch_steps_},
            {"round", round_},
            {"ema_loss", ema_loss_},
            {"ema_acc", ema_acc_},
            {"arch_acc", arch_acc_}};
  return j.dump();
}

absl::Status SearchDriver::RestoreState(const std::string& text) {
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, "search state"));
  try {
    ArchParams alpha(plan_.candidates_per_edge);
    auto a = j.at("alpha").get<std::vector<std::vector<double>>>();
    if (a.size() != plan_.candidates_per_edge.size()) {
      return absl::InvalidArgumentError("search state.alpha: edges do not match the plan");
    }
    for (size_t e = 0; e < a.size(); ++e) {
      if (static_cast<int>(a[e].size()) != plan_.candidates_per_edge[e]) {
        return absl::InvalidArgumentError(
            absl::StrCat("search state.alpha[", e, "]: candidates do not match the plan"));
      }
      alpha.mutable_alpha(static_cast<int>(e)) = a[e];
    }
    NAS_ASSIGN_OR_RETURN(ArchAdam adam, ArchAdam::FromJson(j.at("adam").dump()));
    Rng rng;
    NAS_RETURN_IF_ERROR(rng.Restore(j.at("rng").get<std::string>()));
    int phase = j.at("phase").get<int>();
    if (phase < 0 || phase > 2) return absl::InvalidArgumentError("search state.phase: invalid");
    alpha_ = std::move(alpha);
    adam_ = std::move(adam);
    rng_ = rng;
    rl_state_.baseline = j.at("rl_baseline").get<double>();
    rl_state_.initialised = j.at("rl_initialised").get<bool>();
    train_seed_ = j.at("train_seed").get<uint64_t>();
    valid_seed_ = j.at("valid_seed").get<uint64_t>();
    phase_ = static_cast<Phase>(phase);
    epoch_ = j.at("epoch").get<int>();
    batch_ = j.at("batch").get<int64_t>();
    phase_step_ = j.at("phase_step").get<int64_t>();
    weight_steps_ = j.at("weight_steps").get<int64_t>();
    arch_steps_ = j.at("arch_steps").get<int64_t>();
    round_ = j.at("round").get<int64_t>();
    ema_loss_ = j.at("ema_loss").get<double>();
    ema_acc_ = j.at("ema_acc").get<double>();
    arch_acc_ = j.at("arch_acc").get<double>();
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("search state: ", e.what()));
  }
  pending_tasks_ = pending_count_ = done_count_ = 0;
  return absl::OkStatus();
}

}  // namespace nas
