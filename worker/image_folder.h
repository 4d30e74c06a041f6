// Image-folder data sets: one sub-folder per class (the layout of ImageNet and of torchvision's
// ImageFolder), JPEG and PNG files of any size, colour or grey; their train/validation split; the
// training and evaluation transforms; and a multi-threaded loader that decodes batches ahead of
// the step through a bounded prefetch queue. No LibTorch: batches are plain NCHW buffers that
// the worker wraps into tensors.
//
//   NAS_ASSIGN_OR_RETURN(ImageFolder folder, ScanImageFolder("/data/imagenet/train"));
//   NAS_ASSIGN_OR_RETURN(ImageFolderSplit split, SplitImageFolder(folder, 10000, seed));
//   LoaderOptions o;
//   o.transform = TrainTransform(224, 224, 3, kImageNetMean, kImageNetStd);
//   ImageFolderLoader loader(folder, o, EpochBatches(split.train, 256, seed, /*epoch=*/0));
//   while (true) {
//     absl::StatusOr<ImageBatch> b = loader.Next();    // in the order asked
//     if (absl::IsOutOfRange(b.status())) break;        // all batches delivered
//     ...
//   }
//
// Layout: the class folders are the root's sub-folders (not starting with '.'), sorted by name;
// class index = position in that order (as torchvision's find_classes). Each class's files are
// every regular file under its folder (recursively, at most ImageFolderLimits::max_depth deep,
// names not starting with '.'), sorted by path. Which files are images is decided by their magic
// bytes when decoded, not by their names: a file that is neither JPEG nor PNG is a bad file.
//
// Split: when the root holds `train.txt` and/or `val.txt` (paths relative to the root, one per
// line, the class being the first path component), those lists are the split; otherwise a seeded
// class-balanced validation split, the same draw as worker/data.h's SplitValidation.
//
// Determinism: the random crop and flip of image `index` in epoch `epoch` come from
// Rng(MixSeed(seed, epoch, index)) alone, so a batch is the same whichever worker, thread or
// thread count decodes it - the property a distributed search needs to stay reproducible.
//
// Hostile files: every bound in ImageFolderLimits / ImageLimits is checked and a refusal names
// the file and the limit. A corrupt, truncated, unreadable or non-image file is an error naming
// it; with LoaderOptions::skip_bad_files it is left out of its batch instead, and the batch and
// the loader report it (never silently dropped).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/image_codec.h"

namespace nas {

// Bounds on a folder. Defaults in the comments.
struct ImageFolderLimits {
  // Most image files (all classes). Default 5,000,000 (ImageNet-1k train holds 1,281,167).
  int64_t max_files = 5'000'000;
  // Most classes. Default 100,000 (ImageNet-21k has 21,841).
  int64_t max_classes = 100'000;
  // Longest path of a file relative to the root, in bytes (also the longest split-list line).
  // Default 1,024.
  int max_path_bytes = 1024;
  // Deepest file below its class folder (1: directly in it). Default 8.
  int max_depth = 8;
  // Per-file bounds (size, dimensions, pixels).
  ImageLimits image;
};

struct ImageFolder {
  std::string root;
  std::vector<std::string> classes;  // sorted sub-folder names; a label indexes this
  std::vector<std::string> files;    // relative to root ("n01440764/a.JPEG"), grouped by class
  std::vector<int32_t> labels;       // one per file
  int64_t hidden_skipped = 0;        // entries starting with '.' that were left out

  int64_t size() const { return static_cast<int64_t>(files.size()); }
  int num_classes() const { return static_cast<int>(classes.size()); }
  std::string path(int64_t i) const { return root + "/" + files[i]; }
};

// Scans `root`. Errors: root missing or not a folder (NotFound), no class folders or no files
// (InvalidArgument), a bound exceeded (InvalidArgument naming the path and the limit), a folder
// that cannot be listed (naming it).
absl::StatusOr<ImageFolder> ScanImageFolder(const std::string& root,
                                            const ImageFolderLimits& limits = {});

struct ImageFolderSplit {
  std::vector<int64_t> train;  // indices into ImageFolder::files, ascending
  std::vector<int64_t> valid;
  std::string source;    // "lists" (train.txt / val.txt) or "balanced"
  int64_t unlisted = 0;  // with lists: files in neither list (not used)
};

// The split: the lists when the root holds train.txt or val.txt (a missing one is the files the
// other does not name), else BalancedValidationSplit(labels, valid_size, seed). A list line that
// names no scanned file, escapes the root, is too long, names a file twice or disagrees with its
// folder's class is InvalidArgument naming the list, the line number and the problem.
absl::StatusOr<ImageFolderSplit> SplitImageFolder(const ImageFolder& folder, int64_t valid_size,
                                                  uint64_t seed,
                                                  const ImageFolderLimits& limits = {});

// Holds out `valid_size` items, the same number from every class (the first `valid_size %
// num_classes` classes one more), chosen by `seed`: the same draw as SplitValidation in
// worker/data.h for the same labels.
absl::StatusOr<ImageFolderSplit> BalancedValidationSplit(const std::vector<int32_t>& labels,
                                                         int num_classes, int64_t valid_size,
                                                         uint64_t seed);

// The first n items of a seeded class-balanced shuffle (round robin over the classes, each
// class shuffled by one Rng(seed)), ascending; every item when n >= labels.size(). The same
// draw as BalancedSubset in worker/data.h for the same labels. Labels must be in
// [0, num_classes).
std::vector<int64_t> BalancedSubsetIndices(const std::vector<int32_t>& labels, int num_classes,
                                           int64_t n, uint64_t seed);

// ---- transforms ----

// What turns a decoded image into one normalised sample.
struct TransformOptions {
  int out_height = 224;
  int out_width = 224;
  // 1 or 3: the search space's input channels (colour images become luma for 1, grey images are
  // replicated for 3).
  int channels = 3;
  // true: random resized crop + random horizontal flip; false: resize the shorter side to
  // out / eval_crop_fraction, then a centre crop of out (torchvision's Resize(256) +
  // CenterCrop(224) for the default fraction). Default true.
  bool train = true;
  // Random resized crop: area fraction and aspect ratio ranges, torchvision's defaults.
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  bool hflip = true;  // training only
  double eval_crop_fraction = 224.0 / 256.0;
  // Per-channel normalisation ((x / 255 - mean) / std); empty: x / 255. As many as channels.
  std::vector<float> mean, std;
  // Decode JPEGs at the smallest libjpeg-turbo scale that still covers the output. Default true.
  bool scaled_decode = true;
};

inline const std::vector<float> kImageNetMean = {0.485f, 0.456f, 0.406f};
inline const std::vector<float> kImageNetStd = {0.229f, 0.224f, 0.225f};

TransformOptions TrainTransform(int height, int width, int channels, std::vector<float> mean,
                                std::vector<float> std);
TransformOptions EvalTransform(int height, int width, int channels, std::vector<float> mean,
                               std::vector<float> std);

// The region of the source image a sample comes from, in source pixels, and its mirroring.
struct CropPlan {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool flip = false;
};
// The crop for a width x height image: torchvision's RandomResizedCrop.get_params (10 tries, then
// the centre crop clamped to the ratio range) + a coin for the flip, drawn from
// Rng(MixSeed(seed, epoch, index)), or the deterministic eval crop.
CropPlan PlanCrop(int width, int height, const TransformOptions& t, uint64_t seed, int64_t epoch,
                  int64_t index);

// Reads, decodes and transforms file `index` of `folder`; writes channels x out_height x
// out_width values (CHW) to `f32` (normalised) or, when f32 is null, to `u8` (0..255, rounded).
absl::Status LoadSample(const ImageFolder& folder, int64_t index, int64_t epoch, uint64_t seed,
                        const TransformOptions& t, const ImageFolderLimits& limits, float* f32,
                        uint8_t* u8);

// ---- the loader ----

struct BatchRequest {
  int64_t epoch = 0;
  std::vector<int64_t> indices;  // into ImageFolder::files
};

// The batches of one epoch over `items` (e.g. ImageFolderSplit::train) in the order of
// worker/data.h's Batcher: a Fisher-Yates shuffle by Rng(MixSeed(seed, epoch)) when `shuffle`.
std::vector<BatchRequest> EpochBatches(const std::vector<int64_t>& items, int batch_size,
                                       uint64_t seed, int64_t epoch, bool shuffle = true,
                                       bool drop_last = true);

struct ImageBatch;

// Batch buffers handed back (ImageFolderLoader::Recycle, and the batches a dropped loader had
// decoded but not delivered) for later batches to reuse, by the same loader or by the next one
// given the same pool: a float batch of 64x3x224x224 is 38 MB, and fresh memory costs a page
// fault per 4 KB on first touch and a fill (on this project's VMs two thirds of a restart's time
// at 224x224 went to them). Keeps at most `keep` buffers of each kind; thread-safe.
class BatchBufferPool {
 public:
  explicit BatchBufferPool(size_t keep) : keep_(keep) {}
  // A buffer handed back earlier, or an empty one.
  std::vector<float> TakeF32();
  std::vector<uint8_t> TakeU8();
  void Give(ImageBatch&& batch);
  size_t size() const;  // buffers held, both kinds

 private:
  const size_t keep_;
  mutable absl::Mutex mu_;
  std::vector<std::vector<float>> f32_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<uint8_t>> u8_ ABSL_GUARDED_BY(mu_);
};

struct LoaderOptions {
  // Decoding threads. Default 2.
  int threads = 2;
  // Most batches decoded or being decoded ahead of the consumer (the prefetch queue's bound;
  // memory is about queue_depth batches). Default 4.
  int queue_depth = 4;
  TransformOptions transform;
  // true: float batches (normalised); false: uint8 batches (0..255). Default true.
  bool float_output = true;
  // Seed of the random crops and flips (Rng(MixSeed(seed, epoch, index))). Default 0.
  uint64_t seed = 0;
  // true: a bad file is left out of its batch (and reported); false: the batch is an error
  // naming it. Default false.
  bool skip_bad_files = false;
  // The decoding threads' niceness (Linux: per thread, setpriority on the thread id), 0..19:
  // above 0 they take the cores the consumer leaves idle rather than preempting its compute
  // threads (a preempted OpenMP thread stalls its partners at the next barrier). Default 10.
  int nice = 10;
  ImageFolderLimits limits;
  // Where batch buffers are recycled; loaders that share one (a FolderBatcher's, restart after
  // restart) reuse each other's. Null: the loader's own, of queue_depth + 1 buffers.
  std::shared_ptr<BatchBufferPool> buffers;
};

struct ImageBatch {
  int64_t n = 0;  // samples delivered (the request's, less skipped files)
  int channels = 0, height = 0, width = 0;
  std::vector<float> f32;   // n x C x H x W when float_output
  std::vector<uint8_t> u8;  // n x C x H x W otherwise
  std::vector<int64_t> labels;
  std::vector<int64_t> indices;      // which files, in order
  std::vector<std::string> skipped;  // "path: why" for each bad file left out
};

// Decodes a fixed sequence of batches on `threads` threads, at most `queue_depth` batches ahead
// of Next(). The threads share out each batch's images in chunks, the earliest batch first, so
// every thread works on the batch Next() will ask for first: a fresh loader's first batch (a
// restart's) comes about `threads` times sooner than if each thread decoded batches of its own.
// Thread-safe for one consumer: Next() must not be called concurrently. The folder must outlive
// the loader. The destructor stops the threads within an image each (batches not taken are
// dropped).
class ImageFolderLoader {
 public:
  ImageFolderLoader(const ImageFolder& folder, LoaderOptions options,
                    std::vector<BatchRequest> batches);
  ~ImageFolderLoader();
  ImageFolderLoader(const ImageFolderLoader&) = delete;
  ImageFolderLoader& operator=(const ImageFolderLoader&) = delete;

  // The next batch, in the order of `batches`; a batch with a bad file is its error (naming the
  // file) unless skip_bad_files; OutOfRange once every batch was returned. Invalid options are
  // returned as InvalidArgument by the first call.
  absl::StatusOr<ImageBatch> Next();
  // Hands a batch's buffers back for a later batch to reuse (optional; see BatchBufferPool).
  void Recycle(ImageBatch&& batch);
  // Files skipped so far (skip_bad_files), over every batch decoded.
  int64_t bad_files() const;
  int64_t batches() const { return static_cast<int64_t>(batches_.size()); }

 private:
  // A batch whose images are being decoded, each at its place in the request.
  struct Pending {
    int64_t claimed = 0;   // images handed to threads
    int64_t finished = 0;  // images those threads are done with
    bool ready = false;    // out's buffers and `status` are sized (by the first chunk's thread)
    absl::Status error;    // the buffers could not be had (memory): the batch's error
    int64_t fatal_at = -1;  // the first image whose decoding threw (memory): an error there
    ImageBatch out;
    std::vector<absl::Status> status;  // per image of the request
  };
  void Work();
  // Sizes p's buffers (reusing a pooled one) and per-image statuses; outside mu_.
  void Allocate(Pending* p, int64_t b);
  // Decodes images [begin, end) of batch b into p; stops early once the loader is stopping.
  // Returns the image whose decoding threw (its status says why), or -1.
  int64_t DecodeRange(Pending* p, int64_t b, int64_t begin, int64_t end);
  // The finished batch: the first bad file's error (or failure to decode), or the images that
  // decoded moved together (the bad ones named in `skipped`) with their labels. An error gives
  // the buffers back to the pool.
  absl::StatusOr<ImageBatch> Finish(int64_t b, Pending p) const;

  const ImageFolder& folder_;
  const LoaderOptions options_;
  const std::vector<BatchRequest> batches_;
  absl::Status invalid_;
  mutable absl::Mutex mu_;
  int64_t next_to_start_ ABSL_GUARDED_BY(mu_) = 0;  // earliest batch with images not handed out
  int64_t next_to_take_ ABSL_GUARDED_BY(mu_) = 0;   // next batch Next() returns
  std::atomic<bool> stop_{false};  // set under mu_; read by the threads between images
  absl::CondVar can_start_;     // next_to_take_ advanced or stop_ set
  absl::CondVar batch_done_;    // the batch Next() waits for is in done_
  absl::CondVar buffer_ready_;  // a Pending became ready
  int64_t bad_files_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);  // nodes stay put while decoded
  std::map<int64_t, absl::StatusOr<ImageBatch>> done_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<BatchBufferPool> buffers_;
  std::vector<std::thread> threads_;
};

}  // namespace nas
