// Image-classification data sets: IDX files (MNIST, Fashion-MNIST; plain or .gz as Debian
// ships them) and CIFAR-10 binary batches; a seeded class-balanced validation split; batching
// with augmentation for training only.
//
//   NAS_ASSIGN_OR_RETURN(DataSet train, LoadDataSet("fashion-mnist", "", /*train=*/true));
//   DataSplit split = SplitValidation(train, 5000, seed);
//   Batcher b(split.train, 128, seed, Augment{.pad = 2, .hflip = true});
//   torch::Tensor x, y;
//   while (b.Next(&x, &y)) ...
// A truncated or corrupt file is an error naming the file, the field and what was expected.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/rng.h"
#include "worker/dataset_format.h"

namespace nas {

struct DataSet {
  torch::Tensor images;  // uint8 [N, C, H, W]
  torch::Tensor labels;  // int64 [N]
  int num_classes = 10;
  std::vector<float> mean;  // per channel, in [0, 1] units (from the training images)
  std::vector<float> std;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  int channels() const { return static_cast<int>(images.size(1)); }
  int height() const { return static_cast<int>(images.size(2)); }
  int width() const { return static_cast<int>(images.size(3)); }
  DataSet Subset(const torch::Tensor& index) const;
};

// Reads a whole file, gunzipping it when it is gzip (plain files pass through). A file that
// inflates beyond `max_bytes` is InvalidArgument naming it (a gzip bomb is refused as it is read).
absl::StatusOr<std::string> ReadMaybeGz(const std::string& path,
                                        int64_t max_bytes = kMaxDataFileBytes);

// Reads an IDX image file (magic 2051) and label file (magic 2049); .gz is decompressed.
absl::StatusOr<DataSet> LoadIdx(const std::string& images_path, const std::string& labels_path);
// Reads CIFAR-10 binary batches (data_batch_1..5.bin or test_batch.bin) from `dir`.
absl::StatusOr<DataSet> LoadCifar10(const std::string& dir, bool train);
// By name: "fashion-mnist", "mnist" (IDX, default dirs under /usr/share/datasets) or "cifar10"
// (needs `dir`). `dir` overrides the default location.
absl::StatusOr<DataSet> LoadDataSet(const std::string& name, const std::string& dir, bool train);
std::string DefaultDataDir(const std::string& name);

struct DataSplit {
  DataSet train;
  DataSet valid;
};
// Holds out `valid_size` images, the same number from every class, chosen by `seed`.
absl::StatusOr<DataSplit> SplitValidation(const DataSet& data, int64_t valid_size, uint64_t seed);
// First n images of a seeded class-balanced shuffle (for small runs and tests).
DataSet BalancedSubset(const DataSet& data, int64_t n, uint64_t seed);

struct Augment {
  int pad = 0;         // random translation by up to `pad` pixels (zero fill)
  bool hflip = false;  // random horizontal flip
};

// A split's batches addressed by (epoch, index): what the search's tasks, the final training and
// the evaluations read. Batcher (a data set in memory) and FolderBatcher (worker/folder_data.h:
// an image folder decoded as the batches are asked for) are its two kinds. One caller at a time.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t batches_per_epoch() const = 0;
  // Batch b of epoch e: x float [B, C, H, W] (normalised, channels-last strides), y int64 [B].
  // OutOfRange when b is outside the epoch; a source's data error (a bad image file) names it.
  virtual absl::Status Batch(int64_t epoch, int64_t b, torch::Tensor* x, torch::Tensor* y) = 0;
  // A hint: the batches of `epoch` the caller asks for next, in this order (a task's). A
  // streaming source starts decoding them; the default does nothing.
  virtual void Expect(int64_t epoch, const std::vector<int64_t>& batches) {}
  // Seconds Batch has spent waiting for batches to be decoded (a streaming source whose loader
  // did not keep up with the steps); 0 for a source that computes its batches in the caller.
  virtual double wait_seconds() const { return 0; }
};

// OutOfRange: "batch b of epoch e is outside the split (an epoch has n batches)".
absl::Status BatchOutOfRange(int64_t epoch, int64_t b, int64_t batches_per_epoch);

// Iterates over a data set in seeded random (or sequential) order, yielding normalised float
// batches. The last partial batch is dropped when `drop_last`.
// Random access: the order of epoch e comes from MixSeed(seed, e) and the augmentation of batch b
// of epoch e from MixSeed(seed, e, b + 1), so Batch(e, b) is the same batch that the sequential
// Next() yields as the b-th of the e-th epoch (the constructor starts epoch 0, Reset the next)
// - which is how a worker reproduces the batch a task names.
class Batcher : public BatchSource {
 public:
  Batcher(const DataSet& data, int batch_size, uint64_t seed, Augment augment = {},
          bool shuffle = true, bool drop_last = true);
  bool Next(torch::Tensor* x, torch::Tensor* y);
  int64_t batches_per_epoch() const override;
  void Reset();  // a new epoch (new order when shuffling)
  // Batch b of epoch e; OutOfRange when b is outside the epoch.
  absl::Status Batch(int64_t epoch, int64_t b, torch::Tensor* x, torch::Tensor* y) override;

 private:
  void Order(int64_t epoch);

  const DataSet& data_;
  int batch_size_;
  uint64_t seed_;
  Augment augment_;
  bool shuffle_, drop_last_;
  torch::Tensor order_;
  int64_t order_epoch_ = -1;
  int64_t epoch_ = -1;
  int64_t next_ = 0;  // next batch of epoch_ for Next()
};

// A 4-D tensor with exactly the channels-last strides. `x.contiguous(ChannelsLast)` is not
// enough for one channel (or 1x1 spatial): such a tensor already counts as channels-last
// contiguous, keeps its NCHW strides, and LibTorch then runs every convolution after it in
// NCHW through oneDNN's slow gemm weight-gradient path for depthwise kernels.
torch::Tensor ChannelsLastStrided(const torch::Tensor& x);

// uint8 [B, C, H, W] -> normalised float, channels-last strided.
torch::Tensor Normalize(const torch::Tensor& images_u8, const std::vector<float>& mean,
                        const std::vector<float>& std);

}  // namespace nas
