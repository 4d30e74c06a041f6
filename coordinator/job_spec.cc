#include "coordinator/job_spec.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/path_sample.h"
#include "core/search_defaults.h"
#include "core/status_macros.h"

namespace nas {

namespace {

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// A short, printable rendering of a value that failed a check (strings may be huge or binary).
std::string Shown(const std::string& v) {
  std::string out;
  for (char c : v.substr(0, 40)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (v.size() > 40) absl::StrAppend(&out, "... (", v.size(), " bytes)");
  return out;
}

absl::Status CheckPath(const std::string& field, const std::string& v) {
  if (v.size() > JobSpecLimits::kMaxPathBytes) {
    return Bad(field,
               absl::StrCat(v.size(), " bytes, over the limit of ", JobSpecLimits::kMaxPathBytes));
  }
  for (char c : v) {
    if (c < 0x20 || c >= 0x7f) {
      return Bad(field, absl::StrCat("'", Shown(v), "' has a control or non-ASCII character"));
    }
  }
  for (absl::string_view part : absl::StrSplit(v, '/')) {
    if (part == "..") return Bad(field, absl::StrCat("'", Shown(v), "' has a '..' component"));
  }
  return absl::OkStatus();
}

// A finite double in [lo, hi] (lo_open: (lo, hi]).
absl::Status CheckDouble(const std::string& field, double v, double lo, double hi,
                         bool lo_open = false) {
  if (!std::isfinite(v)) return Bad(field, absl::StrCat(v, " is not a finite number"));
  if (lo_open ? !(v > lo) : !(v >= lo)) {
    return Bad(field, absl::StrCat(v, " is not in ", lo_open ? "(" : "[", lo, ", ", hi, "]"));
  }
  if (v > hi) return Bad(field, absl::StrCat(v, " is over the limit of ", hi));
  return absl::OkStatus();
}

absl::Status CheckInt(const std::string& field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) return Bad(field, absl::StrCat(v, " is not in [", lo, ", ", hi, "]"));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateName(const std::string& field, const std::string& v, size_t max_bytes,
                          const char* extra) {
  if (v.size() > max_bytes) {
    return Bad(field, absl::StrCat(v.size(), " bytes, over the limit of ", max_bytes));
  }
  const absl::string_view more(extra);
  for (char c : v) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || (c != 0 && more.find(c) != more.npos);
    if (!ok) {
      return Bad(field,
                 absl::StrCat("'", Shown(v), "' has a character outside [A-Za-z0-9._-", more, "]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<JobSpec> NormalizeJobSpec(JobSpec s) {
  using L = JobSpecLimits;
  // Strings first: every later message may quote them.
  NAS_RETURN_IF_ERROR(ValidateName("space", s.space(), L::kMaxNameBytes));
  if (s.space_json().size() > SpaceLimits::kMaxJsonBytes) {
    return Bad("space_json", absl::StrCat(s.space_json().size(), " bytes, over the limit of ",
                                          SpaceLimits::kMaxJsonBytes));
  }
  NAS_RETURN_IF_ERROR(ValidateName("tenant", s.tenant(), L::kMaxNameBytes));
  NAS_RETURN_IF_ERROR(ValidateName("owner", s.owner(), L::kMaxNameBytes));
  NAS_RETURN_IF_ERROR(ValidateName("device", s.device(), L::kMaxDeviceBytes, ":+"));
  NAS_RETURN_IF_ERROR(CheckPath("data_dir", s.data_dir()));
  if (s.loss().size() > L::kMaxNameBytes) return Bad("loss", "is not a loss name");
  if (s.arch_algo().size() > L::kMaxNameBytes) return Bad("arch_algo", "is not gradient or rl");

  if (s.space_json().empty() && s.space().empty()) s.set_space("fashion-mnist");
  if (s.dataset().empty()) s.set_dataset("fashion-mnist");
  if (s.dataset() != "fashion-mnist" && s.dataset() != "mnist" && s.dataset() != "cifar10" &&
      s.dataset() != "folder") {
    return Bad("dataset", absl::StrCat("'", Shown(s.dataset()),
                                       "' is not one of fashion-mnist, mnist, cifar10, folder"));
  }
  if (s.dataset() == "folder" && s.data_dir().empty()) {
    return Bad("data_dir", "required with dataset folder (the image folder's path on the workers)");
  }
  if (s.dataset() != "folder" && s.stream_images()) {
    return Bad("stream_images", absl::StrCat("only for dataset folder (dataset is '",
                                             Shown(s.dataset()), "')"));
  }
  if (s.dataset() != "folder" && s.skip_bad_files()) {
    return Bad("skip_bad_files", absl::StrCat("only for dataset folder (dataset is '",
                                              Shown(s.dataset()), "')"));
  }
  if (s.device().empty()) {
    return Bad("device", "required (the latency-service device whose table the job uses)");
  }
  if (s.tenant().empty()) s.set_tenant("default");

  NAS_RETURN_IF_ERROR(CheckDouble("target_latency_ms", s.target_latency_ms(),
                                  -L::kMaxTargetLatencyMs, L::kMaxTargetLatencyMs));
  if (s.target_fraction() == 0) s.set_target_fraction(defaults::kTargetFraction);
  NAS_RETURN_IF_ERROR(
      CheckDouble("target_fraction", s.target_fraction(), 0, L::kMaxTargetFraction, true));
  if (s.loss().empty()) s.set_loss("add#linear");
  auto loss_type = HardwareLossOptions::ParseType(s.loss());
  if (!loss_type.ok()) return Bad("loss", std::string(loss_type.status().message()));
  if (s.loss_lambda() == 0) s.set_loss_lambda(defaults::kLossLambda);
  NAS_RETURN_IF_ERROR(CheckDouble("loss_lambda", s.loss_lambda(), 0, L::kMaxLossLambda, true));

  if (s.warmup_epochs() == 0) s.set_warmup_epochs(defaults::kWarmupEpochs);
  NAS_RETURN_IF_ERROR(CheckInt("warmup_epochs", s.warmup_epochs(), -1, L::kMaxEpochs));
  if (s.search_epochs() == 0) s.set_search_epochs(defaults::kSearchEpochs);
  NAS_RETURN_IF_ERROR(CheckInt("search_epochs", s.search_epochs(), 1, L::kMaxEpochs));
  if (s.train_epochs() == 0) s.set_train_epochs(defaults::kTrainEpochs);
  NAS_RETURN_IF_ERROR(CheckInt("train_epochs", s.train_epochs(), -1, L::kMaxEpochs));
  if (s.batch_size() == 0) s.set_batch_size(defaults::kBatchSize);
  NAS_RETURN_IF_ERROR(CheckInt("batch_size", s.batch_size(), 1, L::kMaxBatchSize));

  if (s.search_lr() == 0) s.set_search_lr(defaults::kSearchLr);
  if (s.train_lr() == 0) s.set_train_lr(defaults::kTrainLr);
  if (s.arch_lr() == 0) s.set_arch_lr(defaults::kArchLr);
  NAS_RETURN_IF_ERROR(CheckDouble("search_lr", s.search_lr(), 0, L::kMaxLearningRate, true));
  NAS_RETURN_IF_ERROR(CheckDouble("train_lr", s.train_lr(), 0, L::kMaxLearningRate, true));
  NAS_RETURN_IF_ERROR(CheckDouble("arch_lr", s.arch_lr(), 0, L::kMaxLearningRate, true));
  if (s.arch_every() == 0) s.set_arch_every(defaults::kArchEvery);
  NAS_RETURN_IF_ERROR(CheckInt("arch_every", s.arch_every(), 1, L::kMaxArchEvery));
  if (s.arch_algo().empty()) s.set_arch_algo("gradient");
  if (s.arch_algo() != "gradient" && s.arch_algo() != "rl") {
    return Bad("arch_algo",
               absl::StrCat("'", Shown(s.arch_algo()), "' is not one of gradient, rl"));
  }

  if (s.valid_size() == 0) s.set_valid_size(defaults::kValidSize);
  NAS_RETURN_IF_ERROR(CheckInt("valid_size", s.valid_size(), 1, L::kMaxExamples));
  NAS_RETURN_IF_ERROR(CheckInt("train_subset", s.train_subset(), 0, L::kMaxExamples));
  NAS_RETURN_IF_ERROR(CheckInt("test_subset", s.test_subset(), 0, L::kMaxExamples));
  NAS_RETURN_IF_ERROR(CheckInt("priority", s.priority(), -L::kMaxPriority, L::kMaxPriority));

  if (s.parallel_tasks() == 0) s.set_parallel_tasks(1);
  NAS_RETURN_IF_ERROR(CheckInt("parallel_tasks", s.parallel_tasks(), 1, L::kMaxParallelTasks));
  if (s.steps_per_task() == 0) s.set_steps_per_task(1);
  NAS_RETURN_IF_ERROR(CheckInt("steps_per_task", s.steps_per_task(), 1, L::kMaxStepsPerTask));
  if (s.chain_steps() == 0) s.set_chain_steps(s.parallel_tasks() == 1 ? defaults::kChainSteps : 1);
  NAS_RETURN_IF_ERROR(CheckInt("chain_steps", s.chain_steps(), 1, L::kMaxChainSteps));
  if (s.chain_steps() > 1 && s.parallel_tasks() != 1) {
    return Bad("chain_steps",
               "a chain needs parallel_tasks 1 (with several tasks per round each would run its "
               "chain from the same weights, which is local SGD: steps_per_task does that)");
  }
  if (s.label_smoothing() == 0) s.set_label_smoothing(0.1);
  if (!std::isfinite(s.label_smoothing()) ||
      !(s.label_smoothing() >= 0 && s.label_smoothing() < 1)) {
    return Bad("label_smoothing", absl::StrCat(s.label_smoothing(), " is not in [0, 1)"));
  }
  NAS_RETURN_IF_ERROR(CheckInt("profile_threads", s.profile_threads(), 0, L::kMaxProfileThreads));
  if (s.sampled_paths() == 0) s.set_sampled_paths(defaults::kSampledPaths);
  NAS_RETURN_IF_ERROR(CheckInt("sampled_paths", s.sampled_paths(), -1, kMaxSampledPaths));
  return s;
}

absl::StatusOr<SearchSpace> JobSearchSpace(const JobSpec& s) {
  if (!s.space_json().empty()) {
    auto sp = SearchSpace::FromJson(s.space_json());
    if (!sp.ok()) return Bad("space_json", std::string(sp.status().message()));
    return sp;
  }
  auto sp = SearchSpace::Preset(s.space());
  if (!sp.ok()) return Bad("space", std::string(sp.status().message()));
  return sp;
}

absl::StatusOr<HardwareLossOptions> JobLoss(const JobSpec& s, double target_ms) {
  HardwareLossOptions l;
  auto type = HardwareLossOptions::ParseType(s.loss());
  if (!type.ok()) return Bad("loss", std::string(type.status().message()));
  l.type = *type;
  l.lambda = s.loss_lambda();
  l.target_ms = target_ms;
  return l;
}

}  // namespace nas
