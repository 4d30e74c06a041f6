#include "worker/folder_data.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace nas {

absl::StatusOr<DataSet> LoadFolderDataSet(const ImageFolder& folder,
                                          const std::vector<int64_t>& indices,
                                          TransformOptions transform, int threads,
                                          int64_t max_bytes, std::vector<std::string>* skipped) {
  if (indices.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(folder.root, ": no images to load"));
  }
  const int64_t sample = int64_t{transform.channels} * transform.out_height * transform.out_width;
  const int64_t n = static_cast<int64_t>(indices.size());
  if (sample > 0 && n > max_bytes / sample) {
    return absl::InvalidArgumentError(absl::StrCat(folder.root, ": ", n, " images of ", sample,
                                                   " bytes exceed the limit of ", max_bytes,
                                                   " bytes in memory (stream_images: true streams "
                                                   "the folder instead)"));
  }
  transform.mean.clear();
  transform.std.clear();
  LoaderOptions o;
  o.threads = threads;
  o.queue_depth = std::max(2, 2 * threads);
  o.transform = transform;
  o.float_output = false;
  o.skip_bad_files = skipped != nullptr;
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
    if (skipped != nullptr) {
      skipped->insert(skipped->end(), batch->skipped.begin(), batch->skipped.end());
    }
    loader.Recycle(std::move(*batch));
  }
  if (at == 0) {
    return absl::InvalidArgumentError(absl::StrCat(folder.root, ": every image was bad"));
  }
  if (at < n) {
    d.images = d.images.narrow(0, 0, at).contiguous();
    d.labels = d.labels.narrow(0, 0, at).contiguous();
  }
  torch::Tensor f = d.images.to(torch::kFloat32).div_(255.0);
  for (int c = 0; c < d.channels(); ++c) {
    torch::Tensor ch = f.select(1, c);
    d.mean.push_back(ch.mean().item<float>());
    d.std.push_back(std::max(ch.std().item<float>(), 1e-3f));
  }
  return d;
}

absl::StatusOr<FolderSets> ResolveImageFolder(const std::string& dir,
                                              const ImageFolderLimits& limits) {
  auto all_of = [](const ImageFolder& f) {
    std::vector<int64_t> all(f.size());
    std::iota(all.begin(), all.end(), 0);
    return all;
  };
  FolderSets sets;
  std::error_code ec;
  if (std::filesystem::is_directory(dir + "/train", ec)) {
    NAS_ASSIGN_OR_RETURN(ImageFolder train_folder, ScanImageFolder(dir + "/train", limits));
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
    sets.train = all_of(train_folder);
    sets.test = all_of(val);
    sets.train_folder = std::make_shared<const ImageFolder>(std::move(train_folder));
    sets.test_folder = std::make_shared<const ImageFolder>(std::move(val));
    return sets;
  }
  NAS_ASSIGN_OR_RETURN(ImageFolder folder, ScanImageFolder(dir, limits));
  const int64_t tenth = std::max<int64_t>(folder.num_classes(), folder.size() / 10);
  NAS_ASSIGN_OR_RETURN(ImageFolderSplit split, SplitImageFolder(folder, tenth, 0, limits));
  if (split.valid.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/val.txt: lists no image (the test set of the folder)"));
  }
  sets.train = std::move(split.train);
  sets.test = std::move(split.valid);
  sets.train_folder = std::make_shared<const ImageFolder>(std::move(folder));
  sets.test_folder = sets.train_folder;
  return sets;
}

absl::StatusOr<DataSet> LoadImageFolderDataSet(const std::string& dir, bool train, int height,
                                               int width, int channels, int threads,
                                               const ImageFolderLimits& limits) {
  NAS_ASSIGN_OR_RETURN(FolderSets sets, ResolveImageFolder(dir, limits));
  const TransformOptions t = EvalTransform(height, width, channels, {}, {});
  return train ? LoadFolderDataSet(*sets.train_folder, sets.train, t, threads)
               : LoadFolderDataSet(*sets.test_folder, sets.test, t, threads);
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

namespace {

// One buffer pool for every loader a batcher starts, so that a restart reuses the buffers of the
// loader it drops (including the batches that loader decoded ahead) instead of faulting in new.
LoaderOptions WithBufferPool(LoaderOptions o) {
  if (o.buffers == nullptr) {
    o.buffers =
        std::make_shared<BatchBufferPool>(static_cast<size_t>(std::max(o.queue_depth, 0)) + 2);
  }
  return o;
}

}  // namespace

FolderBatcher::FolderBatcher(const ImageFolder& folder, std::vector<int64_t> items, int batch_size,
                             uint64_t seed, LoaderOptions options, bool shuffle, bool drop_last)
    : folder_(folder),
      items_(std::move(items)),
      batch_size_(std::max(1, batch_size)),
      seed_(seed),
      options_(WithBufferPool(std::move(options))),
      shuffle_(shuffle),
      drop_last_(drop_last) {}

FolderBatcher::~FolderBatcher() = default;

int64_t FolderBatcher::batches_per_epoch() const {
  const int64_t n = static_cast<int64_t>(items_.size());
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

const std::vector<BatchRequest>& FolderBatcher::EpochPlan(int64_t epoch) {
  auto it = orders_.find(epoch);
  if (it != orders_.end()) return it->second;
  if (orders_.size() >= 2) orders_.erase(orders_.begin());  // plans span two epochs at most
  return orders_[epoch] = EpochBatches(items_, batch_size_, seed_, epoch, shuffle_, drop_last_);
}

void FolderBatcher::Start(int64_t epoch, const std::vector<int64_t>& first) {
  loader_.reset();  // joins the old threads first
  plan_.clear();
  for (int64_t b : first) plan_.push_back({epoch, b});
  // Then on through this epoch and the next, at most kPlanAhead batches (copying an ImageNet
  // epoch's requests on every restart would cost 10 MB; running off the end of the plan is one
  // more restart).
  const int64_t per_epoch = batches_per_epoch();
  Planned next = plan_.empty() ? Planned{epoch, 0} : Planned{epoch, plan_.back().batch + 1};
  for (int64_t k = 0; k < kPlanAhead && next.epoch <= epoch + 1; ++k) {
    if (next.batch >= per_epoch) {
      next = {next.epoch + 1, 0};
      if (next.epoch > epoch + 1 || per_epoch == 0) break;
    }
    plan_.push_back(next);
    ++next.batch;
  }
  std::vector<BatchRequest> requests;
  requests.reserve(plan_.size());
  for (const Planned& p : plan_) requests.push_back(EpochPlan(p.epoch)[p.batch]);
  loader_ = std::make_unique<ImageFolderLoader>(folder_, options_, std::move(requests));
  taken_ = 0;
  ++restarts_;
}

void FolderBatcher::Expect(int64_t epoch, const std::vector<int64_t>& batches) {
  std::vector<int64_t> wanted;
  for (int64_t b : batches) {
    if (b >= 0 && b < batches_per_epoch()) wanted.push_back(b);
  }
  if (epoch < 0 || wanted.empty()) return;
  if (loader_ != nullptr && plan_.size() - taken_ >= wanted.size()) {
    bool coming = true;
    for (size_t k = 0; k < wanted.size() && coming; ++k) {
      coming = plan_[taken_ + k] == Planned{epoch, wanted[k]};
    }
    if (coming) return;
  }
  Start(epoch, wanted);
}

absl::Status FolderBatcher::Batch(int64_t epoch, int64_t b, torch::Tensor* x, torch::Tensor* y) {
  if (epoch < 0 || b < 0 || b >= batches_per_epoch()) {
    return BatchOutOfRange(epoch, b, batches_per_epoch());
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (loader_ == nullptr || taken_ >= plan_.size() || !(plan_[taken_] == Planned{epoch, b})) {
    Start(epoch, {b});
  }
  absl::StatusOr<ImageBatch> batch = loader_->Next();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++taken_;
  if (!batch.ok()) return batch.status();
  bad_files_ += static_cast<int64_t>(batch->skipped.size());
  if (on_skip_) {
    for (const std::string& why : batch->skipped) on_skip_(why);
  }
  const int64_t n = batch->n;
  if (n == 0) {
    absl::Status lost = absl::DataLossError(absl::StrCat(
        "batch ", b, " of epoch ", epoch, ": every file was bad: ",
        absl::StrJoin(batch->skipped, "; ")));
    loader_->Recycle(std::move(*batch));
    return lost;
  }
  const TransformOptions& t = options_.transform;
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
