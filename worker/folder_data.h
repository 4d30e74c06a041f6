// Image folders as the worker's tensors: the hook between worker/image_folder.h (torch-free
// decoding and prefetching) and the search's data path (worker/data.h).
//
// Two ways, by the folder's size:
//  - LoadFolderDataSet: every listed image decoded once with the evaluation transform (resize +
//    centre crop to the space's input size) into an in-memory DataSet (uint8), then batched by
//    the ordinary Batcher with its pad/flip augmentation - for folders that fit in memory (a
//    small space at 64x64 or 96x96 on a lab's own images). Bounded by `max_bytes`.
//  - FolderBatcher: streams batches through ImageFolderLoader (random resized crop + flip, decoded
//    on threads ahead of the step) with Batcher's addressing: Batch(e, b) is batch b of epoch e
//    of the seeded order, the same on every worker - for ImageNet-sized folders.
//
//   NAS_ASSIGN_OR_RETURN(ImageFolder folder, ScanImageFolder(dir));
//   NAS_ASSIGN_OR_RETURN(ImageFolderSplit split, SplitImageFolder(folder, 10000, seed));
//   LoaderOptions o;  o.transform = TrainTransform(224, 224, 3, kImageNetMean, kImageNetStd);
//   FolderBatcher train(folder, split.train, 256, seed, o);
//   torch::Tensor x, y;
//   NAS_RETURN_IF_ERROR(train.Batch(epoch, b, &x, &y));   // x float [B,C,H,W] channels-last
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/search_space.h"
#include "worker/data.h"
#include "worker/image_folder.h"

namespace nas {

// Decodes folder.files[indices] with `transform` (normally EvalTransform(h, w, channels, {}, {}):
// its mean/std are ignored, the DataSet's come from the images) on `threads` threads into
// images uint8 [N, C, H, W] and labels; num_classes from the folder; mean/std per channel from
// these images. A bad file is an error naming it, or with `skipped` given, left out and named
// in *skipped ("path: why"). More than max_bytes of pixels is InvalidArgument naming the folder
// and the limit (default kMaxInMemoryImageBytes).
inline constexpr int64_t kMaxInMemoryImageBytes = int64_t{4} << 30;
absl::StatusOr<DataSet> LoadFolderDataSet(const ImageFolder& folder,
                                          const std::vector<int64_t>& indices,
                                          TransformOptions transform, int threads = 2,
                                          int64_t max_bytes = kMaxInMemoryImageBytes,
                                          std::vector<std::string>* skipped = nullptr);

// The training and test images of a `dataset: "folder"` directory. Layouts of `dir`, tried in
// order:
//  - dir/train/<class>/... and dir/val/<class>/... (ImageNet's): train from train/, test from
//    val/, labelled by train/'s sorted class names (a val/ class that train/ lacks is an error);
//  - dir/<class>/... with dir/train.txt and/or dir/val.txt: train from the training list, test
//    from the validation list (SplitImageFolder);
//  - dir/<class>/... alone: test is a seeded (seed 0) class-balanced tenth, train the rest.
// The search's own validation split then comes from the training images, as for every data set.
struct FolderSets {
  std::shared_ptr<const ImageFolder> train_folder;
  std::vector<int64_t> train;  // into train_folder's files, ascending
  std::shared_ptr<const ImageFolder> test_folder;  // labels as train_folder's classes
  std::vector<int64_t> test;
};
absl::StatusOr<FolderSets> ResolveImageFolder(const std::string& dir,
                                              const ImageFolderLimits& limits = {});

// The `dataset: "folder"` data set of a job, as worker/data.h's LoadDataSet gives the others:
// the training images (`train`) or the test images of ResolveImageFolder(dir), decoded at the
// space's input size (EvalTransform(height, width, channels): resize the shorter side, centre
// crop) into memory.
absl::StatusOr<DataSet> LoadImageFolderDataSet(const std::string& dir, bool train, int height,
                                               int width, int channels, int threads = 2,
                                               const ImageFolderLimits& limits = {});

// A job's data set by name, for the search and the worker: "folder" is
// LoadImageFolderDataSet(dir, train) at `space`'s input size and channels; any other name is
// worker/data.h's LoadDataSet(name, dir, train).
absl::StatusOr<DataSet> LoadJobDataSet(const std::string& name, const std::string& dir, bool train,
                                       const SearchSpace& space, int threads = 2);

// Batches of `items` in the seeded order of worker/data.h's Batcher (epoch e shuffled by
// Rng(MixSeed(seed, e)) when `shuffle`; the last partial batch dropped when `drop_last`), decoded
// by an ImageFolderLoader that runs ahead. The loader follows a plan: the batches Expect named,
// then the rest of the epoch and the next epoch in order (at most kPlanAhead batches more), so
// an epoch's first batch is decoded while the previous epoch's last step runs. Asking for the
// planned next batch is served from the prefetch queue; asking for any other restarts the loader
// there (and on through the epoch). Every loader it starts shares one BatchBufferPool.
// Not thread-safe: one caller at a time. `folder` must outlive it.
class FolderBatcher : public BatchSource {
 public:
  static constexpr int64_t kPlanAhead = 256;

  FolderBatcher(const ImageFolder& folder, std::vector<int64_t> items, int batch_size,
                uint64_t seed, LoaderOptions options, bool shuffle = true, bool drop_last = true);
  ~FolderBatcher() override;

  int64_t batches_per_epoch() const override;
  // Batch b of epoch e: x float [B, C, H, W] (normalised, channels-last strides), y int64 [B].
  // OutOfRange when b is outside the epoch; a bad file's error naming it (or, with
  // options.skip_bad_files, a shorter batch and bad_files() counts it; a batch of bad files
  // only is an error naming them).
  absl::Status Batch(int64_t epoch, int64_t b, torch::Tensor* x, torch::Tensor* y) override;
  // Starts decoding `batches` of `epoch` (those inside the epoch, in this order), then the rest
  // of the epoch after the last, unless the loader already has exactly these coming next.
  void Expect(int64_t epoch, const std::vector<int64_t>& batches) override;
  int64_t bad_files() const { return bad_files_; }
  // Time in Batch spent starting the loader and waiting for its next batch.
  double wait_seconds() const override { return wait_seconds_; }
  // Called with "path: why" for each bad file a batch left out (skip_bad_files).
  void set_on_skip(std::function<void(const std::string&)> f) { on_skip_ = std::move(f); }
  // How many times the loader was (re)started (sequential use: once per epoch).
  int64_t restarts() const { return restarts_; }

 private:
  struct Planned {
    int64_t epoch, batch;
    bool operator==(const Planned& o) const { return epoch == o.epoch && batch == o.batch; }
  };
  void Start(int64_t epoch, const std::vector<int64_t>& first);
  const std::vector<BatchRequest>& EpochPlan(int64_t epoch);

  const ImageFolder& folder_;
  const std::vector<int64_t> items_;
  const int batch_size_;
  const uint64_t seed_;
  const LoaderOptions options_;
  const bool shuffle_, drop_last_;
  std::unique_ptr<ImageFolderLoader> loader_;
  std::vector<Planned> plan_;  // the batches loader_ returns, in order
  size_t taken_ = 0;           // how many of plan_ were returned
  // The batches of the last two epochs planned (an ImageNet epoch's order costs a shuffle of
  // 1.28 million items).
  std::map<int64_t, std::vector<BatchRequest>> orders_;
  int64_t bad_files_ = 0, restarts_ = 0;
  double wait_seconds_ = 0;
  std::function<void(const std::string&)> on_skip_;
};

}  // namespace nas
