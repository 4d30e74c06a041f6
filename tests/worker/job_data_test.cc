// A job's data (worker/job_data.h) on a folder of real PNG and JPEG files: the streamed kind draws
// the same splits as the in-memory kind and decodes the same validation and test pixels, its
// batches are the same on every worker whatever the thread count and the order asked, bad
// files fail naming them or are skipped and counted, and the options are checked.
#include "worker/job_data.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/worker/fashion_folder.h"

namespace nas {
namespace {

namespace fs = std::filesystem;

class JobDataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(testing_folder::MakeScratchDir("nas_job_data_test"));
    ASSERT_FALSE(root_->empty()) << "mkdtemp in /tmp failed";
    absl::StatusOr<DataSet> written = testing_folder::WriteFashionFolder(*root_, 300, 3);
    ASSERT_TRUE(written.ok()) << written.status();
    auto space = SearchSpace::Load("fashion-mnist");
    ASSERT_TRUE(space.ok()) << space.status();
    space_ = new SearchSpace(*space);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
    delete space_;
  }
  static JobDataOptions Options(bool stream) {
    JobDataOptions o;
    o.dataset = "folder";
    o.dir = *root_;
    o.train_subset = 200;
    o.test_subset = 20;
    o.valid_size = 60;
    o.split_seed = 5;
    o.stream_images = stream;
    return o;
  }
  // The batches of epoch 0 of `source` in order: pixels back in [0, 1] units (the
  // normalisation undone) and labels.
  static void ReadAll(BatchSource& source, const std::vector<float>& mean,
                      const std::vector<float>& std, torch::Tensor* pixels, torch::Tensor* labels) {
    std::vector<torch::Tensor> xs, ys;
    for (int64_t b = 0; b < source.batches_per_epoch(); ++b) {
      torch::Tensor x, y;
      absl::Status s = source.Batch(0, b, &x, &y);
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) return;
      xs.push_back(x * std[0] + mean[0]);
      ys.push_back(y);
    }
    *pixels = torch::cat(xs);
    *labels = torch::cat(ys);
  }
  static std::string* root_;
  static SearchSpace* space_;
};
std::string* JobDataTest::root_ = nullptr;
SearchSpace* JobDataTest::space_ = nullptr;

TEST_F(JobDataTest, StreamedDrawsTheSplitsOfTheInMemoryDataAndDecodesTheSamePixels) {
  auto memory = JobData::Load(Options(false), *space_);
  auto streamed = JobData::Load(Options(true), *space_);
  ASSERT_TRUE(memory.ok()) << memory.status();
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  EXPECT_FALSE((*memory)->streamed());
  EXPECT_TRUE((*streamed)->streamed());
  EXPECT_EQ((*memory)->train_full_size(), 200);
  EXPECT_EQ((*memory)->valid_size(), 60);
  EXPECT_EQ((*memory)->train_size(), 140);
  EXPECT_EQ((*memory)->test_size(), 20);
  EXPECT_EQ((*streamed)->train_full_size(), 200);
  EXPECT_EQ((*streamed)->valid_size(), 60);
  EXPECT_EQ((*streamed)->train_size(), 140);
  EXPECT_EQ((*streamed)->test_size(), 20);
  EXPECT_EQ((*streamed)->num_classes(), 10);
  EXPECT_TRUE(absl::StrContains((*streamed)->Describe(), "streamed")) << (*streamed)->Describe();
  // The normalisation: estimated from a sample (here every training image) as the in-memory
  // statistics are computed from the decoded images.
  ASSERT_EQ((*streamed)->mean().size(), 1u);
  EXPECT_NEAR((*streamed)->mean()[0], (*memory)->mean()[0], 1e-3);
  EXPECT_NEAR((*streamed)->std()[0], (*memory)->std()[0], 1e-3);

  // Validation (in order) and test batches: the same images, labels and pixels up to the
  // rounding of the in-memory uint8 copy.
  for (bool test : {false, true}) {
    SCOPED_TRACE(test ? "test" : "validation");
    auto a = test ? (*memory)->Test(16) : (*memory)->ValidInOrder(16);
    auto b = test ? (*streamed)->Test(16) : (*streamed)->ValidInOrder(16);
    ASSERT_EQ(a->batches_per_epoch(), b->batches_per_epoch());
    torch::Tensor xa, ya, xb, yb;
    ReadAll(*a, (*memory)->mean(), (*memory)->std(), &xa, &ya);
    ReadAll(*b, (*streamed)->mean(), (*streamed)->std(), &xb, &yb);
    ASSERT_TRUE(xa.defined() && xb.defined());
    EXPECT_TRUE(torch::equal(ya, yb));
    EXPECT_LE((xa - xb).abs().max().item<float>(), 0.6f / 255.0f);
  }
  // The seeded validation batches of the arch steps: the same labels in the same order.
  auto va = (*memory)->SearchValid(16, 9);
  auto vb = (*streamed)->SearchValid(16, 9);
  torch::Tensor x1, y1, x2, y2;
  ASSERT_TRUE(va->Batch(2, 1, &x1, &y1).ok());
  ASSERT_TRUE(vb->Batch(2, 1, &x2, &y2).ok());
  EXPECT_TRUE(torch::equal(y1, y2));
  // Training batches: the same images in the same order (their crops differ by design).
  auto ta = (*memory)->SearchTrain(16, 4, Augment{2, true});
  auto tb = (*streamed)->SearchTrain(16, 4, Augment{2, true});
  ASSERT_EQ(ta->batches_per_epoch(), tb->batches_per_epoch());
  ASSERT_TRUE(ta->Batch(1, 3, &x1, &y1).ok());
  ASSERT_TRUE(tb->Batch(1, 3, &x2, &y2).ok());
  EXPECT_TRUE(torch::equal(y1, y2));
  EXPECT_EQ(x2.sizes(), (std::vector<int64_t>{16, 1, 28, 28}));
}

TEST_F(JobDataTest, StreamedBatchesAreTheSameOnEveryWorkerInAnyOrder) {
  JobDataOptions one = Options(true), three = Options(true);
  one.loader_threads = 1;
  one.prefetch_batches = 1;
  three.loader_threads = 3;
  auto a = JobData::Load(one, *space_);
  auto b = JobData::Load(three, *space_);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*a)->mean(), (*b)->mean());
  EXPECT_EQ((*a)->std(), (*b)->std());
  auto sa = (*a)->SearchTrain(16, 21, Augment{0, true});
  auto sb = (*b)->SearchTrain(16, 21, Augment{0, true});
  // Worker a walks epoch 1 in order after a hint; worker b jumps around.
  sa->Expect(1, {0, 1, 2});
  std::vector<torch::Tensor> xs(5), ys(5);
  for (int64_t k = 0; k < 5; ++k) ASSERT_TRUE(sa->Batch(1, k, &xs[k], &ys[k]).ok());
  for (int64_t k : {4, 0, 3, 1, 2}) {
    torch::Tensor x, y;
    ASSERT_TRUE(sb->Batch(1, k, &x, &y).ok());
    EXPECT_TRUE(torch::equal(x, xs[k])) << "batch " << k;
    EXPECT_TRUE(torch::equal(y, ys[k])) << "batch " << k;
  }
  // Another epoch: another order.
  torch::Tensor x, y;
  ASSERT_TRUE(sb->Batch(2, 0, &x, &y).ok());
  EXPECT_FALSE(torch::equal(x, xs[0]));
  EXPECT_TRUE(absl::IsOutOfRange(sb->Batch(1, sb->batches_per_epoch(), &x, &y)));
}

TEST_F(JobDataTest, BadFilesFailNamingThemOrAreSkippedAndCounted) {
  const std::string dir = *root_ + "_bad";
  fs::remove_all(dir);
  fs::copy(*root_, dir, fs::copy_options::recursive);
  const std::string bad = dir + "/c3/0999.jpg";
  std::ofstream(bad, std::ios::binary) << "\xff\xd8\xff not a JPEG after all";
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "streamed" : "in memory");
    JobDataOptions o = Options(stream);
    o.dir = dir;
    o.train_subset = 0;
    o.test_subset = 0;
    auto failed = JobData::Load(o, *space_);
    if (failed.ok()) {
      // Streamed, the file may be outside the sample the statistics come from: then the batch
      // that holds it fails naming it.
      ASSERT_TRUE(stream);
      absl::Status batch_status;
      auto train = (*failed)->FinalTrain((*failed)->train_full_size(), 1, Augment{});
      auto test = (*failed)->Test((*failed)->test_size());
      torch::Tensor x, y;
      batch_status = train->Batch(1, 0, &x, &y);
      if (batch_status.ok()) batch_status = test->Batch(0, 0, &x, &y);
      EXPECT_TRUE(IsError(batch_status, absl::StatusCode::kDataLoss, {"0999.jpg"}))
          << batch_status;
    } else {
      EXPECT_TRUE(IsError(failed.status(), absl::StatusCode::kDataLoss, {"0999.jpg"}))
          << failed.status();
    }
    o.skip_bad_files = true;
    std::vector<std::string> logged;
    o.log = [&logged](const std::string& line) { logged.push_back(line); };
    auto skipped = JobData::Load(o, *space_);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    ASSERT_FALSE(logged.empty());
    EXPECT_TRUE(absl::StrContains(logged[0], "0999.jpg")) << logged[0];
    if (!stream) {
      EXPECT_EQ((*skipped)->bad_files(), 1);
      EXPECT_EQ((*skipped)->train_full_size() + (*skipped)->test_size(), 300);
      continue;
    }
    // Streamed: the file is in the lists; the batches that hold it leave it out.
    EXPECT_EQ((*skipped)->train_full_size() + (*skipped)->test_size(), 301);
    const int64_t at_load = (*skipped)->bad_files();
    auto all = (*skipped)->FinalTrain((*skipped)->train_full_size(), 1, Augment{});
    auto test = (*skipped)->Test((*skipped)->test_size());
    int64_t seen = 0;
    torch::Tensor x, y;
    ASSERT_TRUE(all->Batch(1, 0, &x, &y).ok());
    seen += y.size(0);
    ASSERT_TRUE(test->Batch(0, 0, &x, &y).ok());
    seen += y.size(0);
    EXPECT_EQ(seen, 300);  // every good file once, the bad one left out
    EXPECT_EQ(at_load, 0);  // a file left out of the statistics sample is only logged
    EXPECT_EQ((*skipped)->bad_files(), 1);
    EXPECT_TRUE(absl::StrContains((*skipped)->Describe(), "bad files skipped"));
  }
  fs::remove_all(dir);
}

TEST_F(JobDataTest, OptionsAreCheckedNamingTheField) {
  JobDataOptions o = Options(true);
  o.dataset = "fashion-mnist";
  o.dir = "";
  EXPECT_TRUE(IsError(JobData::Load(o, *space_).status(), absl::StatusCode::kInvalidArgument,
                      {"stream_images", "folder"}));
  o.stream_images = false;
  o.skip_bad_files = true;
  EXPECT_TRUE(IsError(JobData::Load(o, *space_).status(), absl::StatusCode::kInvalidArgument,
                      {"skip_bad_files", "folder"}));
  o = Options(true);
  o.loader_threads = 0;
  EXPECT_TRUE(IsError(JobData::Load(o, *space_).status(), absl::StatusCode::kInvalidArgument,
                      {"loader_threads", "1..64"}));
  o = Options(true);
  o.prefetch_batches = 65;
  EXPECT_TRUE(IsError(JobData::Load(o, *space_).status(), absl::StatusCode::kInvalidArgument,
                      {"prefetch_batches"}));
  o = Options(true);
  o.dir = "";
  EXPECT_TRUE(IsError(JobData::Load(o, *space_).status(), absl::StatusCode::kInvalidArgument,
                      {"data_dir"}));
  // More classes than the space has outputs.
  auto cifar = SearchSpace::Load("cifar10");
  ASSERT_TRUE(cifar.ok());
  const std::string dir = *root_ + "_many";
  const fs::path one = fs::directory_iterator(*root_ + "/c0")->path();
  for (int c = 0; c < 11; ++c) {
    fs::create_directories(dir + "/k" + std::to_string(c));
    for (const char* name : {"/a", "/b"}) {
      fs::copy_file(one, dir + "/k" + std::to_string(c) + name + one.extension().string());
    }
  }
  o = Options(true);
  o.dir = dir;
  o.train_subset = o.test_subset = 0;
  o.valid_size = 0;
  EXPECT_TRUE(IsError(JobData::Load(o, *cifar).status(), absl::StatusCode::kInvalidArgument,
                      {"11 classes"}));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nas
