#include "worker/job_data.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace nas {

namespace {

// Bad files named one by one in the log at loading; the rest are counted.
constexpr size_t kNamedBadFiles = 20;

std::vector<int32_t> LabelsOf(const ImageFolder& folder, const std::vector<int64_t>& items) {
  std::vector<int32_t> labels(items.size());
  for (size_t i = 0; i < items.size(); ++i) labels[i] = folder.labels[items[i]];
  return labels;
}

std::vector<int64_t> Pick(const std::vector<int64_t>& items, const std::vector<int64_t>& at) {
  std::vector<int64_t> out(at.size());
  for (size_t i = 0; i < at.size(); ++i) out[i] = items[at[i]];
  return out;
}

}  // namespace

absl::Status JobData::CheckLoaderThreads(int loader_threads) {
  if (loader_threads >= 1 && loader_threads <= kMaxLoaderThreads) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("loader_threads: ", loader_threads, " is outside 1..", kMaxLoaderThreads));
}

absl::StatusOr<std::shared_ptr<const JobData>> JobData::Load(const JobDataOptions& o,
                                                             const SearchSpace& space) {
  const bool folder = o.dataset == "folder";
  if (!folder && o.stream_images) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream_images: only for dataset \"folder\" (dataset is \"", o.dataset, "\")"));
  }
  if (!folder && o.skip_bad_files) {
    return absl::InvalidArgumentError(absl::StrCat(
        "skip_bad_files: only for dataset \"folder\" (dataset is \"", o.dataset, "\")"));
  }
  NAS_RETURN_IF_ERROR(CheckLoaderThreads(o.loader_threads));
  if (o.prefetch_batches < 1 || o.prefetch_batches > JobData::kMaxPrefetchBatches) {
    return absl::InvalidArgumentError(absl::StrCat("prefetch_batches: ", o.prefetch_batches,
                                                   " is outside 1..", JobData::kMaxPrefetchBatches));
  }
  if (folder && o.dir.empty()) {
    return absl::InvalidArgumentError(
        "data_dir: dataset \"folder\" needs the image folder's path (on the workers)");
  }
  std::shared_ptr<JobData> d(new JobData());
  d->o_ = o;
  d->streamed_ = folder && o.stream_images;
  d->height_ = space.input_height();
  d->width_ = space.input_width();
  d->channels_ = space.input_channels();
  const uint64_t seed = o.split_seed;

  if (!folder) {
    NAS_ASSIGN_OR_RETURN(d->train_full_, LoadDataSet(o.dataset, o.dir, true));
    NAS_ASSIGN_OR_RETURN(d->test_, LoadDataSet(o.dataset, o.dir, false));
  } else {
    NAS_ASSIGN_OR_RETURN(d->sets_, ResolveImageFolder(o.dir));
    if (!d->streamed_) {
      const TransformOptions t = EvalTransform(d->height_, d->width_, d->channels_, {}, {});
      std::vector<std::string> skipped;
      std::vector<std::string>* skip = o.skip_bad_files ? &skipped : nullptr;
      NAS_ASSIGN_OR_RETURN(d->train_full_,
                           LoadFolderDataSet(*d->sets_.train_folder, d->sets_.train, t,
                                             o.loader_threads, kMaxInMemoryImageBytes, skip));
      NAS_ASSIGN_OR_RETURN(d->test_,
                           LoadFolderDataSet(*d->sets_.test_folder, d->sets_.test, t,
                                             o.loader_threads, kMaxInMemoryImageBytes, skip));
      d->load_bad_files_ = static_cast<int64_t>(skipped.size());
      if (o.log) {
        for (size_t i = 0; i < skipped.size() && i < kNamedBadFiles; ++i) {
          o.log("skipped " + skipped[i]);
        }
        if (skipped.size() > kNamedBadFiles) {
          o.log(absl::StrCat("skipped ", skipped.size() - kNamedBadFiles, " more bad files"));
        }
      }
      d->sets_ = FolderSets{};  // the pixels are in memory; the file lists are not needed
    }
  }

  if (!d->streamed_) {
    const DataSet& t = d->train_full_;
    if (t.channels() != d->channels_ || t.height() != d->height_ || t.width() != d->width_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dataset: ", o.dataset, " images are ", t.height(), "x", t.width(), "x", t.channels(),
          " but space ", space.name(), " expects ", d->height_, "x", d->width_, "x",
          d->channels_));
    }
    d->num_classes_ = t.num_classes;
  } else {
    d->num_classes_ = d->sets_.train_folder->num_classes();
  }
  if (d->num_classes_ > space.num_classes()) {
    return absl::InvalidArgumentError(absl::StrCat("dataset: ", o.dataset, " has ",
                                                   d->num_classes_, " classes, space ",
                                                   space.name(), " only ", space.num_classes()));
  }

  if (!d->streamed_) {
    // The test images are normalised as the training images (not by their own statistics).
    d->test_.mean = d->train_full_.mean;
    d->test_.std = d->train_full_.std;
    if (o.train_subset > 0) d->train_full_ = BalancedSubset(d->train_full_, o.train_subset, seed);
    if (o.test_subset > 0) d->test_ = BalancedSubset(d->test_, o.test_subset, seed + 1);
    if (o.valid_size > 0) {
      NAS_ASSIGN_OR_RETURN(d->split_, SplitValidation(d->train_full_, o.valid_size, seed));
    }
    d->mean_ = d->train_full_.mean;
    d->std_ = d->train_full_.std;
    return std::shared_ptr<const JobData>(std::move(d));
  }

  // Streamed: the same draws on the file lists as BalancedSubset / SplitValidation on the
  // decoded images.
  const ImageFolder& train_folder = *d->sets_.train_folder;
  const ImageFolder& test_folder = *d->sets_.test_folder;
  const int nc = d->num_classes_;
  d->train_full_items_ = d->sets_.train;
  if (o.train_subset > 0) {
    d->train_full_items_ = Pick(d->train_full_items_,
                                BalancedSubsetIndices(LabelsOf(train_folder, d->train_full_items_),
                                                      nc, o.train_subset, seed));
  }
  d->test_items_ = d->sets_.test;
  if (o.test_subset > 0) {
    d->test_items_ = Pick(d->test_items_, BalancedSubsetIndices(LabelsOf(test_folder, d->test_items_),
                                                                nc, o.test_subset, seed + 1));
  }
  const std::vector<int32_t> full_labels = LabelsOf(train_folder, d->train_full_items_);
  if (o.valid_size > 0) {
    NAS_ASSIGN_OR_RETURN(ImageFolderSplit split,
                         BalancedValidationSplit(full_labels, nc, o.valid_size, seed));
    d->train_items_ = Pick(d->train_full_items_, split.train);
    d->valid_items_ = Pick(d->train_full_items_, split.valid);
  }
  // The normalisation: from a class-balanced sample of the training images (before the subset,
  // as the in-memory statistics), decoded as the evaluation transform does.
  std::vector<int64_t> sample =
      Pick(d->sets_.train, BalancedSubsetIndices(LabelsOf(train_folder, d->sets_.train), nc,
                                                 kStatsSample, seed));
  std::vector<std::string> skipped;
  NAS_ASSIGN_OR_RETURN(
      DataSet stats,
      LoadFolderDataSet(train_folder, sample,
                        EvalTransform(d->height_, d->width_, d->channels_, {}, {}),
                        o.loader_threads, kMaxInMemoryImageBytes,
                        o.skip_bad_files ? &skipped : nullptr));
  if (o.log) {
    for (const std::string& why : skipped) o.log("skipped " + why);
  }
  d->mean_ = stats.mean;
  d->std_ = stats.std;
  return std::shared_ptr<const JobData>(std::move(d));
}

int64_t JobData::train_size() const {
  return streamed_ ? static_cast<int64_t>(train_items_.size()) : split_.train.size();
}
int64_t JobData::valid_size() const {
  return streamed_ ? static_cast<int64_t>(valid_items_.size()) : split_.valid.size();
}
int64_t JobData::test_size() const {
  return streamed_ ? static_cast<int64_t>(test_items_.size()) : test_.size();
}
int64_t JobData::train_full_size() const {
  return streamed_ ? static_cast<int64_t>(train_full_items_.size()) : train_full_.size();
}
int64_t JobData::bad_files() const { return load_bad_files_ + stream_bad_files_->load(); }

std::string JobData::Describe() const {
  std::string s = absl::StrCat(train_size(), " train / ", valid_size(), " valid / ", test_size(),
                               " test (", train_full_size(), " for final training), ",
                               streamed_ ? "streamed" : "in memory");
  if (bad_files() > 0) absl::StrAppend(&s, ", ", bad_files(), " bad files skipped");
  return s;
}

std::unique_ptr<BatchSource> JobData::Folder(const ImageFolder& folder,
                                             std::vector<int64_t> items, int batch_size,
                                             uint64_t seed, bool train, bool hflip, bool shuffle,
                                             bool drop_last) const {
  LoaderOptions lo;
  lo.threads = o_.loader_threads;
  lo.queue_depth = o_.prefetch_batches;
  lo.seed = seed;
  lo.skip_bad_files = o_.skip_bad_files;
  lo.transform = train ? TrainTransform(height_, width_, channels_, mean_, std_)
                       : EvalTransform(height_, width_, channels_, mean_, std_);
  lo.transform.hflip = train && hflip;
  auto source = std::make_unique<FolderBatcher>(folder, std::move(items), batch_size, seed,
                                                std::move(lo), shuffle, drop_last);
  if (o_.skip_bad_files) {
    source->set_on_skip([counter = stream_bad_files_, log = o_.log](const std::string& why) {
      counter->fetch_add(1);
      if (log) log("skipped " + why);
    });
  }
  return source;
}

std::unique_ptr<BatchSource> JobData::SearchTrain(int batch_size, uint64_t seed,
                                                  Augment augment) const {
  if (streamed_) {
    return Folder(*sets_.train_folder, train_items_, batch_size, seed, /*train=*/true,
                  augment.hflip, /*shuffle=*/true, /*drop_last=*/true);
  }
  return std::make_unique<Batcher>(split_.train, batch_size, seed, augment);
}

std::unique_ptr<BatchSource> JobData::SearchValid(int batch_size, uint64_t seed) const {
  if (streamed_) {
    return Folder(*sets_.train_folder, valid_items_, batch_size, seed, /*train=*/false, false,
                  /*shuffle=*/true, /*drop_last=*/true);
  }
  return std::make_unique<Batcher>(split_.valid, batch_size, seed, Augment{});
}

std::unique_ptr<BatchSource> JobData::ValidInOrder(int batch_size) const {
  // Whole batches only (a batch of one has no batch statistics), unless the split is smaller.
  const bool drop_last = valid_size() >= batch_size;
  if (streamed_) {
    return Folder(*sets_.train_folder, valid_items_, batch_size, 0, /*train=*/false, false,
                  /*shuffle=*/false, drop_last);
  }
  return std::make_unique<Batcher>(split_.valid, batch_size, 0, Augment{}, /*shuffle=*/false,
                                   drop_last);
}

std::unique_ptr<BatchSource> JobData::FinalTrain(int batch_size, uint64_t seed,
                                                 Augment augment) const {
  if (streamed_) {
    return Folder(*sets_.train_folder, train_full_items_, batch_size, seed, /*train=*/true,
                  augment.hflip, /*shuffle=*/true, /*drop_last=*/true);
  }
  return std::make_unique<Batcher>(train_full_, batch_size, seed, augment);
}

std::unique_ptr<BatchSource> JobData::Test(int batch_size) const {
  if (streamed_) {
    return Folder(*sets_.test_folder, test_items_, batch_size, 0, /*train=*/false, false,
                  /*shuffle=*/false, /*drop_last=*/false);
  }
  return std::make_unique<Batcher>(test_, batch_size, 0, Augment{}, /*shuffle=*/false,
                                   /*drop_last=*/false);
}

}  // namespace nas
