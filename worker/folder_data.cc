#include "worker/folder_data.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace nas {

absl::StatusOr<DataSet> LoadFolderDataSet(const ImageFolder& folder,
                                          const std::vector<int64_t>& indices,
                                          TransformOptions transform, int threads,
                                          int64_t max_bytes) {
  if (indices.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(folder.root, ": no images to load"));
  }
  const int64_t sample = int64_t{transform.channels} * transform.out_height * transform.out_width;
  const int64_t n = static_cast<int64_t>(indices.size());
  if (sample > 0 && n > max_bytes / sample) {
    return absl::InvalidArgumentError(absl::StrCat(folder.root, ": ", n, " images of ", sample,
                                                   " bytes exceed the limit of ", max_bytes,
                                                   " bytes in memory (stream the folder instead)"));
  }
  transform.mean.clear();
  transform.std.clear();
  LoaderOptions o;
  o.threads = threads;
  o.queue_depth = std::max(2, 2 * threads);
  o.transform = transform;
  o.float_output = false;
  constexpr int64_t kChunk = 256;
  std::vector<BatchRequest> batches;
  for (int64_t pos = 0; pos < n; pos += kChunk) {
    BatchRequest r;
    r.indices.assign(indices.begin() + pos, indices.begin() + std::min(n, pos + kChunk));
    batches.push_back(std::move(r));
  }
  ImageFolderLoader loader(folder, o, std::move(batches));
  DataSet d;
  d.images = torch::empty({n, transform.channels, transform.out_height, transform.out_width},
                          torch::kUInt8);
  d.labels = torch::empty({n}, torch::kInt64);
  d.num_classes = folder.num_classes();
  uint8_t* px = d.images.data_ptr<uint8_t>();
  int64_t* lab = d.labels.data_ptr<int64_t>();
  int64_t at = 0;
  for (int64_t b = 0; b < loader.batches(); ++b) {
    absl::StatusOr<ImageBatch> batch = loader.Next();
    if (!batch.ok()) return batch.status();
    std::copy(batch->u8.begin(), batch->u8.end(), px + at * sample);
    std::copy(batch->labels.begin(), batch->labels.end(), lab + at);
    at += batch->n;
    loader.Recycle(std::move(*batch));
  }
  torch::Tensor f = d.images.to(torch::kFloat32).div_(255.0);
  for (int c = 0; c < d.channels(); ++c) {
    torch::Tensor ch = f.select(1, c);
    d.mean.push_back(ch.mean().item<float>());
    d.std.push_back(std::max(ch.std().item<float>(), 1e-3f));
  }
  return d;
}

absl::StatusOr<DataSet> LoadImageFolderDataSet(const std::string& dir, bool train, int height,
                                               int width, int channels, int threads,
                                               const ImageFolderLimits& limits) {
  const TransformOptions t = EvalTransform(height, width, channels, {}, {});
  std::error_code ec;
  if (std::filesystem::is_directory(dir + "/train", ec)) {
    NAS_ASSIGN_OR_RETURN(ImageFolder train_folder, ScanImageFolder(dir + "/train", limits));
    if (train) {
      std::vector<int64_t> all(train_folder.size());
      std::iota(all.begin(), all.end(), 0);
      return LoadFolderDataSet(train_folder, all, t, threads);
    }
    NAS_ASSIGN_OR_RETURN(ImageFolder val, ScanImageFolder(dir + "/val", limits));
    std::vector<int32_t> to_train(val.classes.size());
    for (size_t c = 0; c < val.classes.size(); ++c) {
      auto it = std::lower_bound(train_folder.classes.begin(), train_folder.classes.end(),
                                 val.classes[c]);
      if (it == train_folder.classes.end() || *it != val.classes[c]) {
        return absl::InvalidArgumentError(absl::StrCat(
            dir, "/val/", val.classes[c], ": a class that ", dir, "/train has no folder for"));
      }
      to_train[c] = static_cast<int32_t>(it - train_folder.classes.begin());
    }
    for (int32_t& l : val.labels) l = to_train[l];
    val.classes = train_folder.classes;
    std::vector<int64_t> all(val.size());
    std::iota(all.begin(), all.end(), 0);
    return LoadFolderDataSet(val, all, t, threads);
  }
  NAS_ASSIGN_OR_RETURN(ImageFolder folder, ScanImageFolder(dir, limits));
  const int64_t tenth = std::max<int64_t>(folder.num_classes(), folder.size() / 10);
  NAS_ASSIGN_OR_RETURN(ImageFolderSplit split, SplitImageFolder(folder, tenth, 0, limits));
  if (!train && split.valid.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/val.txt: lists no image (the test set of the folder)"));
  }
  return LoadFolderDataSet(folder, train ? split.train : split.valid, t, threads);
}

absl::StatusOr<DataSet> LoadJobDataSet(const std::string& name, const std::string& dir, bool train,
                                       const SearchSpace& space, int threads) {
  if (name != "folder") return LoadDataSet(name, dir, train);
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "data_dir: dataset \"folder\" needs the image folder's path (on the workers)");
  }
  return LoadImageFolderDataSet(dir, train, space.input_height(), space.input_width(),
                                space.input_channels(), threads);
}

FolderBatcher::FolderBatcher(const ImageFolder& folder, std::vector<int64_t> items, int batch_size,
                             uint64_t seed, LoaderOptions options, bool shuffle)
    : folder_(folder),
      items_(std::move(items)),
      batch_size_(std::max(1, batch_size)),
      seed_(seed),
      options_(std::move(options)),
      shuffle_(shuffle) {}

FolderBatcher::~FolderBatcher() = default;

int64_t FolderBatcher::batches_per_epoch() const {
  return static_cast<int64_t>(items_.size()) / batch_size_;
}

void FolderBatcher::Start(int64_t epoch, int64_t b) {
  loader_.reset();  // joins the old threads first
  std::vector<BatchRequest> all =
      EpochBatches(items_, batch_size_, seed_, epoch, shuffle_, /*drop_last=*/true);
  std::vector<BatchRequest> rest(std::make_move_iterator(all.begin() + b),
                                 std::make_move_iterator(all.end()));
  loader_ = std::make_unique<ImageFolderLoader>(folder_, options_, std::move(rest));
  epoch_ = epoch;
  next_ = b;
  ++restarts_;
}

absl::Status FolderBatcher::Batch(int64_t epoch, int64_t b, torch::Tensor* x, torch::Tensor* y) {
  if (epoch < 0 || b < 0 || b >= batches_per_epoch()) {
    return absl::OutOfRangeError(absl::StrCat("batch ", b, " of epoch ", epoch, ": an epoch has ",
                                              batches_per_epoch(), " batches"));
  }
  if (loader_ == nullptr || epoch != epoch_ || b != next_) Start(epoch, b);
  absl::StatusOr<ImageBatch> batch = loader_->Next();
  ++next_;
  if (!batch.ok()) return batch.status();
  bad_files_ += static_cast<int64_t>(batch->skipped.size());
  const TransformOptions& t = options_.transform;
  const int64_t n = batch->n;
  if (options_.float_output) {
    torch::Tensor blob = torch::from_blob(
        batch->f32.data(), {n, t.channels, t.out_height, t.out_width}, torch::kFloat32);
    // One channel: ChannelsLastStrided only restrides, so the recycled buffer must be copied.
    *x = ChannelsLastStrided(t.channels == 1 ? blob.clone() : blob);
  } else {
    *x = torch::from_blob(batch->u8.data(), {n, t.channels, t.out_height, t.out_width},
                          torch::kUInt8)
             .clone();
  }
  *y = torch::from_blob(batch->labels.data(), {n}, torch::kInt64).clone();
  loader_->Recycle(std::move(*batch));
  return absl::OkStatus();
}

}  // namespace nas
