// NormalizeJobSpec without a server: defaults, and every limit refused with InvalidArgument
// naming the field (the same checks the coordinator makes at SubmitJob).
#include "coordinator/job_spec.h"
#include "core/path_sample.h"

#include <cmath>
#include <limits>

#include "core/search_defaults.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

JobSpec Minimal() {
  JobSpec s;
  s.set_device("local-cpu");
  return s;
}

TEST(JobSpecTest, DefaultsAreNasSearchs) {
  auto s = NormalizeJobSpec(Minimal());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->space(), "fashion-mnist");
  EXPECT_EQ(s->dataset(), "fashion-mnist");
  EXPECT_EQ(s->tenant(), "default");
  EXPECT_EQ(s->search_epochs(), defaults::kSearchEpochs);
  EXPECT_EQ(s->batch_size(), defaults::kBatchSize);
  EXPECT_EQ(s->arch_lr(), defaults::kArchLr);
  EXPECT_EQ(s->chain_steps(), defaults::kChainSteps);
  EXPECT_EQ(s->sampled_paths(), defaults::kSampledPaths);
  EXPECT_EQ(s->parallel_tasks(), 1);
  // Normalising twice changes nothing (a recovered spec is normalised again).
  auto again = NormalizeJobSpec(*s);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), s->SerializeAsString());
}

TEST(JobSpecTest, NonFiniteNumbersAreRefusedNamingTheField) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  struct Case {
    const char* field;
    void (JobSpec::*set)(double);
  };
  for (Case c :
       {Case{"target_latency_ms", &JobSpec::set_target_latency_ms},
        Case{"target_fraction", &JobSpec::set_target_fraction},
        Case{"loss_lambda", &JobSpec::set_loss_lambda}, Case{"search_lr", &JobSpec::set_search_lr},
        Case{"train_lr", &JobSpec::set_train_lr}, Case{"arch_lr", &JobSpec::set_arch_lr},
        Case{"label_smoothing", &JobSpec::set_label_smoothing}}) {
    for (double v : {nan, inf, -inf}) {
      JobSpec s = Minimal();
      (s.*c.set)(v);
      EXPECT_TRUE(
          IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument, {c.field}))
          << c.field << " = " << v;
    }
  }
}

TEST(JobSpecTest, NumbersOutOfRangeAreRefusedWithTheLimit) {
  JobSpec s = Minimal();
  s.set_arch_lr(1e9);
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"arch_lr", "limit of 100"}));
  s = Minimal();
  s.set_search_lr(-0.1);
  EXPECT_TRUE(
      IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument, {"search_lr"}));
  s = Minimal();
  s.set_batch_size(5000);
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"batch_size", "4096"}));
  s = Minimal();
  s.set_valid_size(int64_t{1} << 40);
  EXPECT_TRUE(
      IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument, {"valid_size"}));
  s = Minimal();
  s.set_steps_per_task(-3);
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"steps_per_task"}));
  s = Minimal();
  s.set_sampled_paths(kMaxSampledPaths + 1);
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"sampled_paths", "256"}));
  s = Minimal();
  s.set_sampled_paths(-2);
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"sampled_paths"}));
  s = Minimal();
  s.set_profile_threads(100000);
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"profile_threads"}));
  // The edges of the ranges are accepted.
  s = Minimal();
  s.set_batch_size(JobSpecLimits::kMaxBatchSize);
  s.set_priority(-JobSpecLimits::kMaxPriority);
  s.set_warmup_epochs(-1);
  s.set_train_epochs(-1);
  s.set_target_latency_ms(-1);
  s.set_sampled_paths(-1);  // none
  EXPECT_TRUE(NormalizeJobSpec(s).ok());
  s.set_sampled_paths(kMaxSampledPaths);
  EXPECT_TRUE(NormalizeJobSpec(s).ok());
}

TEST(JobSpecTest, StringsAreBoundedAndOfASafeAlphabet) {
  JobSpec s = Minimal();
  s.set_tenant(std::string(65, 't'));
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"tenant", "65 bytes", "limit of 64"}));
  s = Minimal();
  s.set_tenant("lab a");
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"tenant", "outside"}));
  s = Minimal();
  s.set_device(std::string("gpu\0x", 5));
  EXPECT_TRUE(
      IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument, {"device"}));
  s = Minimal();
  s.set_device("pixel-1:tflite+fp16");
  EXPECT_TRUE(NormalizeJobSpec(s).ok());
  s = Minimal();
  s.set_space("../../etc/passwd");
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument, {"space"}));
  for (const char* dir : {"../x", "/data/../../etc", "a/..", "/data/\x7f"}) {
    s = Minimal();
    s.set_data_dir(dir);
    EXPECT_TRUE(
        IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument, {"data_dir"}))
        << dir;
  }
  s = Minimal();
  s.set_data_dir("/datasets/fashion-mnist..v2/train");
  EXPECT_TRUE(NormalizeJobSpec(s).ok());
  s = Minimal();
  s.set_space_json(std::string(SpaceLimits::kMaxJsonBytes + 1, ' '));
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"space_json", "limit"}));
}

TEST(JobSpecTest, AnImageFolderNeedsItsPath) {
  JobSpec s = Minimal();
  s.set_dataset("folder");
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"data_dir", "folder"}));
  s.set_data_dir("/data/datasets/imagenet");
  auto n = NormalizeJobSpec(s);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->dataset(), "folder");
  s.set_dataset("imagefolder");
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"dataset", "folder"}));
}

TEST(JobSpecTest, StreamingAndSkippingAreForImageFoldersOnly) {
  JobSpec s = Minimal();
  s.set_dataset("folder");
  s.set_data_dir("/data/datasets/imagenet");
  s.set_stream_images(true);
  s.set_skip_bad_files(true);
  auto n = NormalizeJobSpec(s);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_TRUE(n->stream_images());
  EXPECT_TRUE(n->skip_bad_files());
  s.set_dataset("cifar10");
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"stream_images", "only for dataset folder", "cifar10"}));
  s.set_stream_images(false);
  EXPECT_TRUE(IsError(NormalizeJobSpec(s).status(), absl::StatusCode::kInvalidArgument,
                      {"skip_bad_files", "only for dataset folder"}));
}

TEST(JobSpecTest, TheSpaceIsBuiltWithinItsLimits) {
  JobSpec s = Minimal();
  s.set_space_json(std::string(100, '[') + std::string(100, ']'));
  EXPECT_TRUE(IsError(JobSearchSpace(s).status(), absl::StatusCode::kInvalidArgument,
                      {"space_json", "nested deeper"}));
  s = Minimal();
  s.set_space("proxyless-imagenet");
  auto space = JobSearchSpace(s);
  ASSERT_TRUE(space.ok()) << space.status();
  EXPECT_EQ(space->num_edges(), 21);
}

TEST(JobSpecTest, NamesAreValidatedForOtherCallersToo) {
  EXPECT_TRUE(ValidateName("name", "host-1.lab", 64).ok());
  EXPECT_TRUE(IsError(ValidateName("name", "host:1", 64), absl::StatusCode::kInvalidArgument,
                      {"name", "outside"}));
  EXPECT_TRUE(ValidateName("name", "host:1", 64, ":").ok());
  EXPECT_TRUE(IsError(ValidateName("name", std::string(65, 'a'), 64),
                      absl::StatusCode::kInvalidArgument, {"name", "limit of 64"}));
}

}  // namespace
}  // namespace nas
