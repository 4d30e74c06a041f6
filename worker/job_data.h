// The images a search job reads, loaded once per process (the single-process search) or per
// worker and job (the task runner keeps a few): the training set after the subset, its search
// split (training / validation), the test set and the input normalisation, handed out as
// BatchSources (worker/data.h) for the search's tasks, the final training and the evaluations.
//
// Two kinds, by the job's data options:
//  - in memory (every data set; an image folder decoded once at the space's input size, bounded
//    by kMaxInMemoryImageBytes): Batchers over DataSets, with the job's pad/flip augmentation;
//  - streamed (an image folder with stream_images): the splits are file lists and batches are
//    decoded on threads as the tasks ask for them (FolderBatcher), so a folder of any size (all
//    of ImageNet) is searched in bounded memory. Training batches get torchvision's random
//    resized crop + horizontal flip (augment_hflip); validation, path-evaluation and test
//    batches are resized and centre-cropped. The normalisation is estimated from a seeded
//    class-balanced sample of kStatsSample training images.
// Either way the subsets and the validation split are the same draws (the same files, for a
// folder without bad files), and every worker of a job computes the same batches.
//
//   JobDataOptions o;  o.dataset = "folder";  o.dir = "/data/imagenet";  o.stream_images = true;
//   o.valid_size = 10000;
//   NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data, JobData::Load(o, space));
//   std::unique_ptr<BatchSource> train = data->SearchTrain(256, seed, Augment{0, true});
//   // RunWeightTask(net, sgd, *train, task, 0.1);   `data` must outlive `train`.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/search_space.h"
#include "worker/data.h"
#include "worker/folder_data.h"

namespace nas {

struct JobDataOptions {
  std::string dataset;  // fashion-mnist, mnist, cifar10, folder
  std::string dir;      // "" = the data set's default directory (required for folder)
  int64_t train_subset = 0;  // 0: all
  int64_t test_subset = 0;   // 0: all
  int64_t valid_size = 0;    // 0: no search split (final training and test only)
  uint64_t split_seed = 0;
  // Folder only: decode batches as they are asked for instead of once into memory.
  bool stream_images = false;
  // Folder only: a bad image file is left out (and counted) instead of failing the job.
  bool skip_bad_files = false;
  // Decoding threads of a folder's loaders (each source has its own). Default 2.
  int loader_threads = 2;
  // Batches a streamed source decodes ahead of the step. Default 4.
  int prefetch_batches = 4;
  // Where skipped files are named ("skipped <path>: <why>"). Default: nowhere (counted only).
  std::function<void(const std::string&)> log;
};

class JobData {
 public:
  // Training images the streamed normalisation is estimated from.
  static constexpr int64_t kStatsSample = 1000;
  // Bounds of JobDataOptions::loader_threads and prefetch_batches.
  static constexpr int kMaxLoaderThreads = 64;
  static constexpr int kMaxPrefetchBatches = 64;
  // InvalidArgument naming loader_threads unless it is 1..kMaxLoaderThreads (Load checks it; a
  // worker checks its flag at start-up).
  static absl::Status CheckLoaderThreads(int loader_threads);

  // Loads (in memory) or scans (streamed) the data; checks it against `space` (image size and
  // channels, classes). Errors name the field or file.
  static absl::StatusOr<std::shared_ptr<const JobData>> Load(const JobDataOptions& options,
                                                             const SearchSpace& space);

  bool streamed() const { return streamed_; }
  int64_t train_size() const;  // the search's training split
  int64_t valid_size() const;  // the search's validation split
  int64_t test_size() const;
  int64_t train_full_size() const;  // what the final training reads (the splits together)
  int num_classes() const { return num_classes_; }
  // Per-channel input normalisation (in [0, 1] units) the batches apply.
  const std::vector<float>& mean() const { return mean_; }
  const std::vector<float>& std() const { return std_; }
  // Files left out so far: at loading (in memory) or by this data's sources' batches so far
  // (streamed), with skip_bad_files.
  int64_t bad_files() const;
  // "12000 train / 2000 valid / 500 test (14000 for final training), in memory" and the like.
  std::string Describe() const;

  // The sources; each must not outlive this JobData, one caller at a time each.
  // The search's training split, shuffled by `seed`, whole batches, augmented.
  std::unique_ptr<BatchSource> SearchTrain(int batch_size, uint64_t seed, Augment augment) const;
  // The search's validation split, shuffled by `seed`, whole batches, not augmented.
  std::unique_ptr<BatchSource> SearchValid(int batch_size, uint64_t seed) const;
  // The validation split in order, whole batches unless it is smaller than one (path evaluation).
  std::unique_ptr<BatchSource> ValidInOrder(int batch_size) const;
  // The final training's images (training set after the subset), shuffled, augmented.
  std::unique_ptr<BatchSource> FinalTrain(int batch_size, uint64_t seed, Augment augment) const;
  // The test set in order, the last partial batch kept.
  std::unique_ptr<BatchSource> Test(int batch_size) const;

 private:
  JobData() = default;
  std::unique_ptr<BatchSource> Folder(const ImageFolder& folder, std::vector<int64_t> items,
                                      int batch_size, uint64_t seed, bool train, bool hflip,
                                      bool shuffle, bool drop_last) const;

  JobDataOptions o_;
  bool streamed_ = false;
  int num_classes_ = 0;
  int height_ = 0, width_ = 0, channels_ = 0;
  std::vector<float> mean_, std_;
  int64_t load_bad_files_ = 0;
  // In memory.
  DataSet train_full_;
  DataSplit split_;
  DataSet test_;
  // Streamed: file indices into the folders.
  FolderSets sets_;
  std::vector<int64_t> train_full_items_, train_items_, valid_items_, test_items_;
  // Bad files the streamed sources skipped (shared with them).
  std::shared_ptr<std::atomic<int64_t>> stream_bad_files_ =
      std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace nas
