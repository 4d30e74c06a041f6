// Image folders as the worker's tensors, on a folder of real PNG and JPEG files written from
// Fashion-MNIST test images: the in-memory DataSet, and FolderBatcher's addressing and
// prefetch restarts.
#include "worker/folder_data.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "tests/worker/fashion_folder.h"

namespace nas {
namespace {

namespace fs = std::filesystem;

class FolderDataTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(testing_folder::MakeScratchDir("nas_folder_data_test"));
    ASSERT_FALSE(root_->empty()) << "mkdtemp in /tmp failed";
    absl::StatusOr<DataSet> written = testing_folder::WriteFashionFolder(*root_, 80, 1);
    ASSERT_TRUE(written.ok()) << written.status();
    source_ = new DataSet(*written);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
    delete source_;
  }
  static std::string* root_;
  static DataSet* source_;
};
std::string* FolderDataTest::root_ = nullptr;
DataSet* FolderDataTest::source_ = nullptr;

TEST_F(FolderDataTest, InMemoryDataSetHoldsTheImagesAndLabels) {
  auto folder = ScanImageFolder(*root_);
  ASSERT_TRUE(folder.ok()) << folder.status();
  ASSERT_EQ(folder->size(), 80);
  std::vector<int64_t> all(folder->size());
  std::iota(all.begin(), all.end(), 0);
  TransformOptions t = EvalTransform(28, 28, 1, {}, {});
  t.eval_crop_fraction = 1.0;  // 28x28 stays 28x28: the PNGs come back exactly
  auto d = LoadFolderDataSet(*folder, all, t, 2);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->images.sizes(), (std::vector<int64_t>{80, 1, 28, 28}));
  EXPECT_EQ(d->num_classes, 10);
  ASSERT_EQ(d->mean.size(), 1u);
  EXPECT_GT(d->std[0], 0.1f);
  for (int64_t i = 0; i < folder->size(); ++i) {
    const std::string& f = folder->files[i];
    const int64_t src = std::stoll(f.substr(f.find('/') + 1, 4));
    EXPECT_EQ(d->labels[i].item<int64_t>(), source_->labels[src].item<int64_t>()) << f;
    if (f.find(".png") != std::string::npos) {
      EXPECT_TRUE(torch::equal(d->images[i], source_->images[src])) << f;
    } else {
      EXPECT_LT((d->images[i].to(torch::kFloat) - source_->images[src].to(torch::kFloat))
                    .abs()
                    .mean()
                    .item<float>(),
                4.0f)
          << f;
    }
  }
  // Upscaled to 64x64 in colour, as a small space on any folder would take it.
  auto big = LoadFolderDataSet(*folder, {0, 1, 2}, EvalTransform(64, 64, 3, {}, {}), 2);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->images.sizes(), (std::vector<int64_t>{3, 3, 64, 64}));
  EXPECT_TRUE(IsError(LoadFolderDataSet(*folder, all, t, 2, 1000).status(),
                      absl::StatusCode::kInvalidArgument, {*root_, "limit of 1000 bytes"}));
}

TEST_F(FolderDataTest, BatcherAddressesBatchesLikeBatcherAndPrefetchesSequentially) {
  auto folder = ScanImageFolder(*root_);
  ASSERT_TRUE(folder.ok());
  auto split = SplitImageFolder(*folder, 20, 3);
  ASSERT_TRUE(split.ok());
  LoaderOptions o;
  o.transform = TrainTransform(32, 32, 3, kImageNetMean, kImageNetStd);
  o.seed = 5;
  FolderBatcher a(*folder, split->train, 16, 5, o);
  ASSERT_EQ(a.batches_per_epoch(), 60 / 16);
  std::vector<torch::Tensor> xs;
  for (int64_t b = 0; b < a.batches_per_epoch(); ++b) {
    torch::Tensor x, y;
    ASSERT_TRUE(a.Batch(0, b, &x, &y).ok());
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{16, 3, 32, 32}));
    EXPECT_TRUE(x.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_EQ(y.dtype(), torch::kInt64);
    xs.push_back(x);
  }
  EXPECT_EQ(a.restarts(), 1);  // one loader for the whole epoch
  {
    torch::Tensor x, y;
    ASSERT_TRUE(a.Batch(1, 0, &x, &y).ok());
    EXPECT_EQ(a.restarts(), 1);  // and on into the next: its first batch was decoded ahead
  }
  // Another batcher (another worker) jumping to batch 2 gets the same batch.
  o.threads = 1;
  FolderBatcher b(*folder, split->train, 16, 5, o);
  torch::Tensor x, y;
  ASSERT_TRUE(b.Batch(0, 2, &x, &y).ok());
  EXPECT_TRUE(torch::equal(x, xs[2]));
  ASSERT_TRUE(b.Batch(0, 1, &x, &y).ok());  // backwards: a restart
  EXPECT_TRUE(torch::equal(x, xs[1]));
  EXPECT_EQ(b.restarts(), 2);
  ASSERT_TRUE(b.Batch(1, 0, &x, &y).ok());  // a new epoch: another order and other crops
  EXPECT_FALSE(torch::equal(x, xs[0]));
  EXPECT_TRUE(absl::IsOutOfRange(b.Batch(0, 3, &x, &y)));
  // A task's hint: the loader decodes the named batches in that order, then the epoch after the
  // last; a hint that names what is already coming next changes nothing.
  FolderBatcher c(*folder, split->train, 16, 5, o);
  c.Expect(0, {2, 0});
  c.Expect(0, {2});
  for (int64_t k : {2, 0, 1}) {
    ASSERT_TRUE(c.Batch(0, k, &x, &y).ok());
    EXPECT_TRUE(torch::equal(x, xs[k])) << k;
  }
  EXPECT_EQ(c.restarts(), 1);
  c.Expect(0, {7, -1});  // outside the epoch: ignored
  EXPECT_EQ(c.restarts(), 1);
  // One channel, float: the tensor owns its memory (the loader's buffers are reused).
  o.transform = TrainTransform(28, 28, 1, {0.5f}, {0.25f});
  FolderBatcher g(*folder, split->train, 8, 5, o);
  torch::Tensor g0, y0, g1, y1;
  ASSERT_TRUE(g.Batch(0, 0, &g0, &y0).ok());
  torch::Tensor keep = g0.clone();
  ASSERT_TRUE(g.Batch(0, 1, &g1, &y1).ok());
  ASSERT_TRUE(g.Batch(0, 2, &g1, &y1).ok());
  EXPECT_TRUE(torch::equal(g0, keep));
}

TEST_F(FolderDataTest, FolderDataSetLayouts) {
  // One folder: a seeded class-balanced tenth is the test set.
  auto train = LoadImageFolderDataSet(*root_, true, 28, 28, 1);
  auto test = LoadImageFolderDataSet(*root_, false, 28, 28, 1);
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(train->size(), 70);
  EXPECT_EQ(test->size(), 10);
  EXPECT_EQ(torch::bincount(test->labels).min().item<int64_t>(), 1);
  // ImageNet's layout: train/ and val/, val/ labelled by train/'s classes.
  const std::string dir = *root_ + "_imagenet";
  for (const char* c : {"train/a", "train/b", "train/c", "val/a", "val/c"}) {
    fs::create_directories(dir + "/" + c);
    fs::copy_file(*root_ + "/c0/0000.png", dir + "/" + c + "/x.png");
  }
  auto val = LoadImageFolderDataSet(dir, false, 32, 32, 3);
  ASSERT_TRUE(val.ok()) << val.status();
  EXPECT_EQ(val->images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_EQ(val->labels[1].item<int64_t>(), 2);  // val/c is class 2 of train/
  EXPECT_EQ(val->num_classes, 3);
  fs::create_directories(dir + "/val/d");
  fs::copy_file(*root_ + "/c0/0000.png", dir + "/val/d/x.png");
  EXPECT_TRUE(IsError(LoadImageFolderDataSet(dir, false, 32, 32, 3).status(),
                      absl::StatusCode::kInvalidArgument, {dir + "/val/d", "has no folder"}));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nas
