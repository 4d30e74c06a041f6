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
// these images. A bad file is an error naming it. More than max_bytes of pixels is
// InvalidArgument naming the folder and the limit (default 4 GiB).
absl::StatusOr<DataSet> LoadFolderDataSet(const ImageFolder& folder,
                                          const std::vector<int64_t>& indices,
                                          TransformOptions transform, int threads = 2,
                                          int64_t max_bytes = int64_t{4} << 30);

// The `dataset: "folder"` data set of a job, as worker/data.h's LoadDataSet gives the others:
// the training images (`train`) or the test images, decoded at the space's input size
// (EvalTransform(height, width, channels): resize the shorter side, centre crop) into memory.
// Layouts of `dir`, tried in order:
//  - dir/train/<class>/... and dir/val/<class>/... (ImageNet's): train from train/, test from
//    val/, labelled by train/'s sorted class names (a val/ class that train/ lacks is an error);
//  - dir/<class>/... with dir/train.txt and/or dir/val.txt: train from the training list, test
//    from the validation list (SplitImageFolder);
//  - dir/<class>/... alone: test is a seeded (seed 0) class-balanced tenth, train the rest.
// The search's own validation split then comes from the training images, as for every data set.
absl::StatusOr<DataSet> LoadImageFolderDataSet(const std::string& dir, bool train, int height,
                                               int width, int channels, int threads = 2,
                                               const ImageFolderLimits& limits = {});

// A job's data set by name, for the search and the worker: "folder" is
// LoadImageFolderDataSet(dir, train) at `space`'s input size and channels; any other name is
// worker/data.h's LoadDataSet(name, dir, train).
absl::StatusOr<DataSet> LoadJobDataSet(const std::string& name, const std::string& dir, bool train,
                                       const SearchSpace& space, int threads = 2);

// Batches of `items` in the seeded order of worker/data.h's Batcher (epoch e shuffled by
// Rng(MixSeed(seed, e)), drop_last), decoded by an ImageFolderLoader that runs ahead: asking for
// the batch after the previous one is served from the prefetch queue; asking for any other
// (a new epoch, a task's batches elsewhere in the epoch) restarts the loader there. Not
// thread-safe: one caller. `folder` must outlive it.
class FolderBatcher {
 public:
  FolderBatcher(const ImageFolder& folder, std::vector<int64_t> items, int batch_size,
                uint64_t seed, LoaderOptions options, bool shuffle = true);
  ~FolderBatcher();

  int64_t batches_per_epoch() const;
  // Batch b of epoch e: x float [B, C, H, W] (normalised, channels-last strides), y int64 [B].
  // OutOfRange when b is outside the epoch; a bad file's error naming it (or, with
  // options.skip_bad_files, a shorter batch and bad_files() counts it).
  absl::Status Batch(int64_t epoch, int64_t b, torch::Tensor* x, torch::Tensor* y);
  int64_t bad_files() const { return bad_files_; }
  // How many times the loader was (re)started (sequential use: once per epoch).
  int64_t restarts() const { return restarts_; }

 private:
  void Start(int64_t epoch, int64_t b);

  const ImageFolder& folder_;
  const std::vector<int64_t> items_;
  const int batch_size_;
  const uint64_t seed_;
  const LoaderOptions options_;
  const bool shuffle_;
  std::unique_ptr<ImageFolderLoader> loader_;
  int64_t epoch_ = -1, next_ = 0;  // what loader_ returns next
  int64_t bad_files_ = 0, restarts_ = 0;
};

}  // namespace nas
