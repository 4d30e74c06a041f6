#include "worker/data.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "worker/dataset_format.h"
#include "worker/image_folder.h"

namespace nas {

absl::StatusOr<std::string> ReadMaybeGz(const std::string& path, int64_t max_bytes) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string out;
  char buf[1 << 16];
  while (true) {
    int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(f, &err);
      gzclose(f);
      return absl::DataLossError(absl::StrCat(path, ": corrupt gzip data: ", msg));
    }
    if (n == 0) break;
    if (static_cast<int64_t>(out.size()) + n > max_bytes) {
      gzclose(f);
      return absl::InvalidArgumentError(absl::StrCat(path, ": inflates beyond the limit of ",
                                                     max_bytes, " bytes for a data file"));
    }
    out.append(buf, n);
  }
  int rc = gzclose(f);
  if (rc != Z_OK && rc != Z_BUF_ERROR) {
    return absl::DataLossError(absl::StrCat(path, ": gzip stream did not close cleanly"));
  }
  return out;
}

namespace {

void ComputeStats(DataSet& d) {
  torch::Tensor f = d.images.to(torch::kFloat32).div_(255.0);
  d.mean.clear();
  d.std.clear();
  for (int c = 0; c < d.channels(); ++c) {
    torch::Tensor ch = f.select(1, c);
    d.mean.push_back(ch.mean().item<float>());
    d.std.push_back(ch.std().item<float>());
  }
}

}  // namespace

DataSet DataSet::Subset(const torch::Tensor& index) const {
  DataSet d = *this;
  d.images = images.index_select(0, index).contiguous();
  d.labels = labels.index_select(0, index).contiguous();
  return d;
}

absl::StatusOr<DataSet> LoadIdx(const std::string& images_path, const std::string& labels_path) {
  NAS_ASSIGN_OR_RETURN(std::string img, ReadMaybeGz(images_path));
  NAS_ASSIGN_OR_RETURN(std::string lab, ReadMaybeGz(labels_path));
  NAS_ASSIGN_OR_RETURN(IdxLayout layout, ParseIdx(img, lab, images_path, labels_path));
  const int64_t n = layout.count, h = layout.height, w = layout.width;
  DataSet d;
  d.images = torch::empty({n, 1, h, w}, torch::kUInt8);
  std::memcpy(d.images.data_ptr(), img.data() + kIdxImagesHeaderBytes, n * h * w);
  torch::Tensor l8 = torch::empty({n}, torch::kUInt8);
  std::memcpy(l8.data_ptr(), lab.data() + kIdxLabelsHeaderBytes, n);
  d.labels = l8.to(torch::kInt64);
  d.num_classes = layout.num_classes;
  ComputeStats(d);
  return d;
}

absl::StatusOr<DataSet> LoadCifar10(const std::string& dir, bool train) {
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) files.push_back(absl::StrCat(dir, "/data_batch_", i, ".bin"));
  } else {
    files.push_back(dir + "/test_batch.bin");
  }
  constexpr int64_t kRecord = kCifar10RecordBytes;
  std::vector<torch::Tensor> imgs, labs;
  for (const std::string& f : files) {
    NAS_ASSIGN_OR_RETURN(std::string raw, ReadMaybeGz(f));
    NAS_ASSIGN_OR_RETURN(int64_t n, ParseCifar10Batch(raw, f));
    torch::Tensor all = torch::from_blob(raw.data(), {n, kRecord}, torch::kUInt8).clone();
    torch::Tensor lab = all.select(1, 0).to(torch::kInt64);
    labs.push_back(lab);
    imgs.push_back(all.narrow(1, 1, kRecord - 1).reshape({n, 3, 32, 32}));
  }
  DataSet d;
  d.images = torch::cat(imgs).contiguous();
  d.labels = torch::cat(labs).contiguous();
  d.num_classes = 10;
  ComputeStats(d);
  return d;
}

std::string DefaultDataDir(const std::string& name) {
  if (name == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (name == "mnist") return "/usr/share/datasets/mnist";
  return "";
}

absl::StatusOr<DataSet> LoadDataSet(const std::string& name, const std::string& dir, bool train) {
  std::string d = dir.empty() ? DefaultDataDir(name) : dir;
  if (name == "fashion-mnist" || name == "mnist") {
    std::string prefix = train ? "train" : "t10k";
    std::string images = absl::StrCat(d, "/", prefix, "-images-idx3-ubyte");
    std::string labels = absl::StrCat(d, "/", prefix, "-labels-idx1-ubyte");
    auto gz_or_plain = [](const std::string& p) {
      FILE* f = std::fopen((p + ".gz").c_str(), "rb");
      if (f != nullptr) {
        std::fclose(f);
        return p + ".gz";
      }
      return p;
    };
    return LoadIdx(gz_or_plain(images), gz_or_plain(labels));
  }
  if (name == "cifar10") {
    if (d.empty()) {
      return absl::InvalidArgumentError(
          "data_dir: cifar10 needs --data-dir with the binary batches (data_batch_1.bin ...)");
    }
    return LoadCifar10(d, train);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dataset: \"", name, "\" is not one of fashion-mnist, mnist, cifar10, folder"));
}

namespace {

std::vector<int32_t> LabelVector(const DataSet& data) {
  torch::Tensor l = data.labels.to(torch::kInt32).contiguous();
  const int32_t* p = l.data_ptr<int32_t>();
  return std::vector<int32_t>(p, p + l.numel());
}

}  // namespace

absl::StatusOr<DataSplit> SplitValidation(const DataSet& data, int64_t valid_size, uint64_t seed) {
  NAS_ASSIGN_OR_RETURN(ImageFolderSplit s, BalancedValidationSplit(LabelVector(data),
                                                                   data.num_classes, valid_size,
                                                                   seed));
  return DataSplit{data.Subset(torch::tensor(s.train, torch::kInt64)),
                   data.Subset(torch::tensor(s.valid, torch::kInt64))};
}

DataSet BalancedSubset(const DataSet& data, int64_t n, uint64_t seed) {
  if (n >= data.size()) return data;
  std::vector<int64_t> pick = BalancedSubsetIndices(LabelVector(data), data.num_classes, n, seed);
  return data.Subset(torch::tensor(pick, torch::kInt64));
}

torch::Tensor Normalize(const torch::Tensor& images_u8, const std::vector<float>& mean,
                        const std::vector<float>& std) {
  torch::Tensor x = images_u8.to(torch::kFloat32).div_(255.0);
  int64_t c = x.size(1);
  torch::Tensor m = torch::tensor(mean).view({1, c, 1, 1});
  torch::Tensor s = torch::tensor(std).view({1, c, 1, 1});
  return ChannelsLastStrided(x.sub_(m).div_(s));
}

torch::Tensor ChannelsLastStrided(const torch::Tensor& x) {
  if (x.dim() != 4) return x;
  const std::vector<int64_t> strides = c10::get_channels_last_strides_2d(x.sizes());
  if (x.strides() == strides) return x;
  // Already laid out channels-last (e.g. one channel, NCHW strides): the same memory, restrided.
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return x.as_strided(x.sizes(), strides, x.storage_offset());
  }
  return torch::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::ChannelsLast))
      .copy_(x);
}

absl::Status BatchOutOfRange(int64_t epoch, int64_t b, int64_t batches_per_epoch) {
  return absl::OutOfRangeError(absl::StrCat("batch ", b, " of epoch ", epoch,
                                            " is outside the split (an epoch has ",
                                            batches_per_epoch, " batches)"));
}

Batcher::Batcher(const DataSet& data, int batch_size, uint64_t seed, Augment augment, bool shuffle,
                 bool drop_last)
    : data_(data),
      batch_size_(batch_size),
      seed_(seed),
      augment_(augment),
      shuffle_(shuffle),
      drop_last_(drop_last) {
  Reset();
}

int64_t Batcher::batches_per_epoch() const {
  int64_t n = data_.size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

void Batcher::Reset() {
  ++epoch_;
  next_ = 0;
}

void Batcher::Order(int64_t epoch) {
  if (order_epoch_ == epoch) return;
  int64_t n = data_.size();
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  if (shuffle_) {
    Rng rng(MixSeed(seed_, static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i) std::swap(idx[i], idx[rng.Below(i + 1)]);
  }
  order_ = torch::tensor(idx, torch::kInt64);
  order_epoch_ = epoch;
}

bool Batcher::Next(torch::Tensor* x, torch::Tensor* y) {
  if (!Batch(epoch_, next_, x, y).ok()) return false;
  ++next_;
  return true;
}

absl::Status Batcher::Batch(int64_t epoch, int64_t batch, torch::Tensor* x, torch::Tensor* y) {
  if (epoch < 0 || batch < 0 || batch >= batches_per_epoch()) {
    return BatchOutOfRange(epoch, batch, batches_per_epoch());
  }
  Order(epoch);
  int64_t n = data_.size();
  int64_t pos = batch * batch_size_;
  int64_t b = std::min<int64_t>(batch_size_, n - pos);
  torch::Tensor idx = order_.narrow(0, pos, b);
  torch::Tensor img = data_.images.index_select(0, idx);
  if (augment_.pad > 0 || augment_.hflip) {
    Rng rng(MixSeed(seed_, static_cast<uint64_t>(epoch), static_cast<uint64_t>(batch) + 1));
    int p = augment_.pad;
    int64_t h = img.size(2), w = img.size(3);
    torch::Tensor padded = p > 0 ? torch::constant_pad_nd(img, {p, p, p, p}, 0) : img;
    torch::Tensor out = torch::empty_like(img);
    for (int64_t i = 0; i < b; ++i) {
      int64_t dy = p > 0 ? static_cast<int64_t>(rng.Below(2 * p + 1)) : 0;
      int64_t dx = p > 0 ? static_cast<int64_t>(rng.Below(2 * p + 1)) : 0;
      torch::Tensor crop = padded[i].narrow(1, dy, h).narrow(2, dx, w);
      if (augment_.hflip && rng.Uniform() < 0.5) crop = crop.flip({2});
      out[i].copy_(crop);
    }
    img = out;
  }
  *x = Normalize(img, data_.mean, data_.std);
  *y = data_.labels.index_select(0, idx);
  return absl::OkStatus();
}

}  // namespace nas
