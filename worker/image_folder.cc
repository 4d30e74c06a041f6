#include "worker/image_folder.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <optional>
#include <unordered_map>
#include <system_error>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/rng.h"
#include "core/status_macros.h"

namespace nas {

namespace fs = std::filesystem;

namespace {

bool Hidden(const std::string& name) { return !name.empty() && name[0] == '.'; }

absl::Status ListClass(const std::string& root, const std::string& cls,
                       const ImageFolderLimits& limits, int64_t total,
                       std::vector<std::string>* files, int64_t* hidden) {
  std::error_code ec;
  const fs::path dir = fs::path(root) / cls;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  if (ec) return absl::NotFoundError(absl::StrCat(dir.string(), ": cannot list: ", ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec) {
      return absl::NotFoundError(absl::StrCat(dir.string(), ": cannot list: ", ec.message()));
    }
    const std::string name = it->path().filename().string();
    const bool is_dir = it->is_directory(ec) && !it->is_symlink(ec);
    if (Hidden(name)) {
      ++*hidden;
      if (is_dir) it.disable_recursion_pending();
      continue;
    }
    if (is_dir) {
      if (it.depth() + 1 >= limits.max_depth) {
        return absl::InvalidArgumentError(
            absl::StrCat(it->path().string(), ": folder nested deeper than the limit of ",
                         limits.max_depth, " levels below its class folder"));
      }
      continue;
    }
    std::string rel = absl::StrCat(cls, "/", it->path().lexically_relative(dir).string());
    if (static_cast<int64_t>(rel.size()) > limits.max_path_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(it->path().string(), ": path of ", rel.size(),
                                                     " bytes below the root exceeds the limit of ",
                                                     limits.max_path_bytes));
    }
    if (total + static_cast<int64_t>(files->size()) + 1 > limits.max_files) {
      return absl::InvalidArgumentError(
          absl::StrCat(root, ": more than the limit of ", limits.max_files, " files"));
    }
    files->push_back(std::move(rel));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> ReadList(
    const std::string& list_path, const std::unordered_map<std::string, int64_t>& by_path,
    const ImageFolderLimits& limits, std::unordered_set<int64_t>* seen) {
  ImageLimits file_limits;
  file_limits.max_file_bytes =
      std::min<int64_t>(int64_t{1} << 31, limits.max_files * (int64_t{limits.max_path_bytes} + 2));
  std::error_code ec;
  if (fs::is_regular_file(list_path, ec) && fs::file_size(list_path, ec) == 0 && !ec) {
    return std::vector<int64_t>{};  // an empty list
  }
  auto text = ReadImageFile(list_path, file_limits);
  if (!text.ok()) return text.status();
  std::vector<int64_t> out;
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(list_path, ":", line_no, ": ", why));
    };
    if (static_cast<int64_t>(line.size()) > limits.max_path_bytes) {
      return bad(absl::StrCat("path of ", line.size(), " bytes exceeds the limit of ",
                              limits.max_path_bytes));
    }
    if (line[0] == '/') return bad("absolute path (paths are relative to the folder)");
    for (absl::string_view part : absl::StrSplit(line, '/')) {
      if (part == "..") return bad("path leaves the folder (\"..\")");
    }
    auto it = by_path.find(std::string(line));
    if (it == by_path.end()) {
      return bad(absl::StrCat("\"", line, "\" is not a file in a class folder"));
    }
    if (!seen->insert(it->second).second) {
      return bad(absl::StrCat("\"", line, "\" is listed twice"));
    }
    out.push_back(it->second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

double Uniform(Rng& rng, double lo, double hi) { return lo + (hi - lo) * rng.Uniform(); }
int64_t PyRound(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

absl::Status CheckTransform(const TransformOptions& t) {
  if (t.channels != 1 && t.channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat("channels: ", t.channels, " is not 1 or 3"));
  }
  if (t.out_height < 1 || t.out_width < 1 || t.out_height > 4096 || t.out_width > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("output size: ", t.out_height, "x", t.out_width, " is outside 1..4096"));
  }
  if (!(t.scale_min > 0 && t.scale_min <= t.scale_max && t.scale_max <= 1)) {
    return absl::InvalidArgumentError("scale: need 0 < scale_min <= scale_max <= 1");
  }
  if (!(t.ratio_min > 0 && t.ratio_min <= t.ratio_max && std::isfinite(t.ratio_max))) {
    return absl::InvalidArgumentError("ratio: need 0 < ratio_min <= ratio_max (finite)");
  }
  if (!(t.eval_crop_fraction > 0 && t.eval_crop_fraction <= 1)) {
    return absl::InvalidArgumentError("eval_crop_fraction: must be in (0, 1]");
  }
  if (!t.mean.empty() || !t.std.empty()) {
    if (static_cast<int>(t.mean.size()) != t.channels ||
        static_cast<int>(t.std.size()) != t.channels) {
      return absl::InvalidArgumentError(
          absl::StrCat("mean/std: need ", t.channels, " values each"));
    }
    for (float s : t.std) {
      if (!(s > 0) || !std::isfinite(s)) {
        return absl::InvalidArgumentError("std: every value must be finite and > 0");
      }
    }
    for (float m : t.mean) {
      if (!std::isfinite(m)) return absl::InvalidArgumentError("mean: must be finite");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImageFolder> ScanImageFolder(const std::string& root,
                                            const ImageFolderLimits& limits) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(
        absl::StrCat(root, ": not a folder", ec ? absl::StrCat(" (", ec.message(), ")") : ""));
  }
  ImageFolder f;
  f.root = root;
  while (f.root.size() > 1 && f.root.back() == '/') f.root.pop_back();
  fs::directory_iterator it(root, ec), end;
  if (ec) return absl::NotFoundError(absl::StrCat(root, ": cannot list: ", ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec) return absl::NotFoundError(absl::StrCat(root, ": cannot list: ", ec.message()));
    std::string name = it->path().filename().string();
    if (!it->is_directory(ec)) continue;  // train.txt, val.txt, README, ...
    if (Hidden(name)) {
      ++f.hidden_skipped;
      continue;
    }
    if (static_cast<int64_t>(f.classes.size()) >= limits.max_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat(root, ": more than the limit of ", limits.max_classes, " class folders"));
    }
    f.classes.push_back(std::move(name));
  }
  if (f.classes.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(root, ": no class folders (expected one sub-folder per class)"));
  }
  std::sort(f.classes.begin(), f.classes.end());
  for (size_t c = 0; c < f.classes.size(); ++c) {
    std::vector<std::string> files;
    NAS_RETURN_IF_ERROR(
        ListClass(f.root, f.classes[c], limits, f.size(), &files, &f.hidden_skipped));
    std::sort(files.begin(), files.end());
    for (auto& p : files) {
      f.files.push_back(std::move(p));
      f.labels.push_back(static_cast<int32_t>(c));
    }
  }
  if (f.files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(root, ": the class folders hold no files"));
  }
  return f;
}

namespace {

// Item indices per class, each class's list shuffled (Fisher-Yates) with `rng` in class order.
std::vector<std::vector<int64_t>> ShuffledByClass(const std::vector<int32_t>& labels,
                                                  int num_classes, Rng& rng) {
  std::vector<std::vector<int64_t>> by_class(std::max(0, num_classes));
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(static_cast<int64_t>(i));
  for (auto& v : by_class) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) {
      std::swap(v[i], v[rng.Below(i + 1)]);
    }
  }
  return by_class;
}

}  // namespace

std::vector<int64_t> BalancedSubsetIndices(const std::vector<int32_t>& labels, int num_classes,
                                           int64_t n, uint64_t seed) {
  std::vector<int64_t> pick;
  if (n >= static_cast<int64_t>(labels.size())) {
    pick.resize(labels.size());
    for (size_t i = 0; i < labels.size(); ++i) pick[i] = static_cast<int64_t>(i);
    return pick;
  }
  Rng rng(seed);
  std::vector<std::vector<int64_t>> by_class = ShuffledByClass(labels, num_classes, rng);
  for (size_t k = 0; static_cast<int64_t>(pick.size()) < n; ++k) {
    for (const std::vector<int64_t>& v : by_class) {
      if (k < v.size() && static_cast<int64_t>(pick.size()) < n) pick.push_back(v[k]);
    }
  }
  std::sort(pick.begin(), pick.end());
  return pick;
}

absl::StatusOr<ImageFolderSplit> BalancedValidationSplit(const std::vector<int32_t>& labels,
                                                         int num_classes, int64_t valid_size,
                                                         uint64_t seed) {
  const int64_t n = static_cast<int64_t>(labels.size());
  if (valid_size <= 0 || valid_size >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("valid_size: ", valid_size, " must be in (0, ", n, ")"));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("labels[", i, "]: ", labels[i],
                                                     " is outside 0..", num_classes - 1));
    }
  }
  Rng rng(seed);
  std::vector<std::vector<int64_t>> by_class = ShuffledByClass(labels, num_classes, rng);
  const int64_t per_class = valid_size / num_classes, extra = valid_size % num_classes;
  ImageFolderSplit s;
  s.source = "balanced";
  for (int c = 0; c < num_classes; ++c) {
    int64_t take = per_class + (c < extra ? 1 : 0);
    if (take > static_cast<int64_t>(by_class[c].size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("valid_size: class ", c, " has only ", by_class[c].size(), " images"));
    }
    s.valid.insert(s.valid.end(), by_class[c].begin(), by_class[c].begin() + take);
    s.train.insert(s.train.end(), by_class[c].begin() + take, by_class[c].end());
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.valid.begin(), s.valid.end());
  return s;
}

absl::StatusOr<ImageFolderSplit> SplitImageFolder(const ImageFolder& folder, int64_t valid_size,
                                                  uint64_t seed, const ImageFolderLimits& limits) {
  const std::string train_list = folder.root + "/train.txt";
  const std::string val_list = folder.root + "/val.txt";
  std::error_code ec;
  const bool has_train = fs::exists(train_list, ec), has_val = fs::exists(val_list, ec);
  if (!has_train && !has_val) {
    return BalancedValidationSplit(folder.labels, folder.num_classes(), valid_size, seed);
  }
  std::unordered_map<std::string, int64_t> by_path;
  by_path.reserve(folder.files.size());
  for (int64_t i = 0; i < folder.size(); ++i) by_path.emplace(folder.files[i], i);
  std::unordered_set<int64_t> seen;
  ImageFolderSplit s;
  s.source = "lists";
  if (has_train) {
    NAS_ASSIGN_OR_RETURN(s.train, ReadList(train_list, by_path, limits, &seen));
  }
  if (has_val) {
    NAS_ASSIGN_OR_RETURN(s.valid, ReadList(val_list, by_path, limits, &seen));
  }
  std::vector<int64_t>& rest = has_train ? s.valid : s.train;
  if (!has_train || !has_val) {
    for (int64_t i = 0; i < folder.size(); ++i) {
      if (!seen.count(i)) rest.push_back(i);
    }
  } else {
    s.unlisted = folder.size() - static_cast<int64_t>(seen.size());
  }
  if (s.train.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(folder.root, ": the split has no training files"));
  }
  return s;
}

TransformOptions TrainTransform(int height, int width, int channels, std::vector<float> mean,
                                std::vector<float> std) {
  TransformOptions t;
  t.out_height = height;
  t.out_width = width;
  t.channels = channels;
  t.train = true;
  t.mean = std::move(mean);
  t.std = std::move(std);
  return t;
}

TransformOptions EvalTransform(int height, int width, int channels, std::vector<float> mean,
                               std::vector<float> std) {
  TransformOptions t = TrainTransform(height, width, channels, std::move(mean), std::move(std));
  t.train = false;
  t.hflip = false;
  return t;
}

CropPlan PlanCrop(int width, int height, const TransformOptions& t, uint64_t seed, int64_t epoch,
                  int64_t index) {
  CropPlan p;
  if (!t.train) {
    // Resize(shorter side -> size) then CenterCrop(out), as one box in source pixels.
    const int size = static_cast<int>(
        std::floor(std::max(t.out_height, t.out_width) / t.eval_crop_fraction + 1e-6));
    int64_t rw, rh;
    if (width <= height) {
      rw = size;
      rh = static_cast<int64_t>(static_cast<double>(size) * height / width);
    } else {
      rh = size;
      rw = static_cast<int64_t>(static_cast<double>(size) * width / height);
    }
    rw = std::max<int64_t>(rw, t.out_width);
    rh = std::max<int64_t>(rh, t.out_height);
    const int64_t top = PyRound((rh - t.out_height) / 2.0);
    const int64_t left = PyRound((rw - t.out_width) / 2.0);
    const double sx = static_cast<double>(width) / rw, sy = static_cast<double>(height) / rh;
    p.x0 = left * sx;
    p.x1 = (left + t.out_width) * sx;
    p.y0 = top * sy;
    p.y1 = (top + t.out_height) * sy;
    return p;
  }
  Rng rng(MixSeed(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)));
  const double area = static_cast<double>(width) * height;
  const double lr0 = std::log(t.ratio_min), lr1 = std::log(t.ratio_max);
  bool found = false;
  int64_t w = 0, h = 0, i = 0, j = 0;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    const double target = area * Uniform(rng, t.scale_min, t.scale_max);
    const double aspect = std::exp(Uniform(rng, lr0, lr1));
    w = PyRound(std::sqrt(target * aspect));
    h = PyRound(std::sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      i = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(height - h + 1)));
      j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(width - w + 1)));
      found = true;
    }
  }
  if (!found) {
    const double in_ratio = static_cast<double>(width) / height;
    if (in_ratio < t.ratio_min) {
      w = width;
      h = std::max<int64_t>(1, PyRound(w / t.ratio_min));
    } else if (in_ratio > t.ratio_max) {
      h = height;
      w = std::max<int64_t>(1, PyRound(h * t.ratio_max));
    } else {
      w = width;
      h = height;
    }
    i = (height - h) / 2;
    j = (width - w) / 2;
  }
  p.x0 = static_cast<double>(j);
  p.y0 = static_cast<double>(i);
  p.x1 = static_cast<double>(j + w);
  p.y1 = static_cast<double>(i + h);
  p.flip = t.hflip && rng.Uniform() < 0.5;
  return p;
}

absl::Status LoadSample(const ImageFolder& folder, int64_t index, int64_t epoch, uint64_t seed,
                        const TransformOptions& t, const ImageFolderLimits& limits, float* f32,
                        uint8_t* u8) {
  if (index < 0 || index >= folder.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("index: ", index, " is outside the folder's ", folder.size(), " files"));
  }
  const std::string path = folder.path(index);
  NAS_ASSIGN_OR_RETURN(std::string bytes, ReadImageFile(path, limits.image));
  NAS_ASSIGN_OR_RETURN(ImageInfo info, ProbeImage(bytes, path, limits.image));
  const CropPlan plan = PlanCrop(info.width, info.height, t, seed, epoch, index);
  int min_w = 0, min_h = 0;
  if (t.scaled_decode && info.format == ImageFormat::kJpeg) {
    min_w = static_cast<int>(
        std::ceil(static_cast<double>(t.out_width) * info.width / (plan.x1 - plan.x0) - 1e-9));
    min_h = static_cast<int>(
        std::ceil(static_cast<double>(t.out_height) * info.height / (plan.y1 - plan.y0) - 1e-9));
    min_w = std::max(min_w, 1);
    min_h = std::max(min_h, 1);
  }
  NAS_ASSIGN_OR_RETURN(Image img, DecodeImage(bytes, path, t.channels, limits.image, min_w, min_h));
  const double sx = static_cast<double>(img.width) / info.width;
  const double sy = static_cast<double>(img.height) / info.height;
  const int c = t.channels, oh = t.out_height, ow = t.out_width;
  thread_local std::vector<float> hwc;
  hwc.resize(static_cast<size_t>(oh) * ow * c);
  ResampleBox(img, plan.x0 * sx, plan.y0 * sy, plan.x1 * sx, plan.y1 * sy, ow, oh, plan.flip,
              hwc.data());
  const size_t plane = static_cast<size_t>(oh) * ow;
  for (int ch = 0; ch < c; ++ch) {
    const float m = t.mean.empty() ? 0.f : t.mean[ch];
    const float inv = t.std.empty() ? 1.f / 255.f : 1.f / (255.f * t.std[ch]);
    const float shift = t.std.empty() ? 0.f : m / t.std[ch];
    for (size_t i = 0; i < plane; ++i) {
      const float v = hwc[i * c + ch];
      if (f32 != nullptr) {
        f32[ch * plane + i] = v * inv - shift;
      } else {
        u8[ch * plane + i] = static_cast<uint8_t>(std::clamp(std::nearbyint(v), 0.f, 255.f));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<BatchRequest> EpochBatches(const std::vector<int64_t>& items, int batch_size,
                                       uint64_t seed, int64_t epoch, bool shuffle, bool drop_last) {
  const int64_t n = static_cast<int64_t>(items.size());
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  if (shuffle) {
    Rng rng(MixSeed(seed, static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i) std::swap(idx[i], idx[rng.Below(i + 1)]);
  }
  std::vector<BatchRequest> out;
  if (batch_size < 1) return out;
  for (int64_t pos = 0; pos < n; pos += batch_size) {
    const int64_t b = std::min<int64_t>(batch_size, n - pos);
    if (b < batch_size && drop_last) break;
    BatchRequest r;
    r.epoch = epoch;
    for (int64_t k = 0; k < b; ++k) r.indices.push_back(items[idx[pos + k]]);
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

template <typename T>
std::vector<T> PopOrEmpty(std::vector<std::vector<T>>& stack) {
  if (stack.empty()) return {};
  std::vector<T> v = std::move(stack.back());
  stack.pop_back();
  return v;
}

}  // namespace

std::vector<float> BatchBufferPool::TakeF32() {
  absl::MutexLock l(&mu_);
  return PopOrEmpty(f32_);
}

std::vector<uint8_t> BatchBufferPool::TakeU8() {
  absl::MutexLock l(&mu_);
  return PopOrEmpty(u8_);
}

void BatchBufferPool::Give(ImageBatch&& batch) {
  absl::MutexLock l(&mu_);
  if (batch.f32.capacity() > 0 && f32_.size() < keep_) f32_.push_back(std::move(batch.f32));
  if (batch.u8.capacity() > 0 && u8_.size() < keep_) u8_.push_back(std::move(batch.u8));
}

size_t BatchBufferPool::size() const {
  absl::MutexLock l(&mu_);
  return f32_.size() + u8_.size();
}

ImageFolderLoader::ImageFolderLoader(const ImageFolder& folder, LoaderOptions options,
                                     std::vector<BatchRequest> batches)
    : folder_(folder),
      options_(std::move(options)),
      batches_(std::move(batches)),
      buffers_(options_.buffers != nullptr
                   ? options_.buffers
                   : std::make_shared<BatchBufferPool>(
                         static_cast<size_t>(std::max(options_.queue_depth, 0)) + 1)) {
  invalid_ = CheckTransform(options_.transform);
  if (invalid_.ok() && (options_.threads < 1 || options_.threads > 256)) {
    invalid_ = absl::InvalidArgumentError(
        absl::StrCat("threads: ", options_.threads, " is outside 1..256"));
  }
  if (invalid_.ok() && (options_.nice < 0 || options_.nice > 19)) {
    invalid_ = absl::InvalidArgumentError(
        absl::StrCat("nice: ", options_.nice, " is outside 0..19"));
  }
  if (invalid_.ok() && (options_.queue_depth < 1 || options_.queue_depth > 4096)) {
    invalid_ = absl::InvalidArgumentError(
        absl::StrCat("queue_depth: ", options_.queue_depth, " is outside 1..4096"));
  }
  for (size_t b = 0; invalid_.ok() && b < batches_.size(); ++b) {
    for (int64_t i : batches_[b].indices) {
      if (i < 0 || i >= folder_.size()) {
        invalid_ = absl::InvalidArgumentError(absl::StrCat(
            "batch ", b, ": index ", i, " is outside the folder's ", folder_.size(), " files"));
        break;
      }
    }
  }
  if (!invalid_.ok()) return;
  try {
    for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Work(); });
  } catch (const std::system_error& e) {  // no more threads: stop those started, say so
    {
      absl::MutexLock l(&mu_);
      stop_ = true;
      can_start_.SignalAll();
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
    invalid_ = absl::ResourceExhaustedError(
        absl::StrCat("image loader: cannot start ", options_.threads, " threads: ", e.what()));
  }
}

ImageFolderLoader::~ImageFolderLoader() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    can_start_.SignalAll();
  }
  for (auto& t : threads_) t.join();
  // What was decoded ahead and never taken goes back to the pool, for the next loader.
  absl::MutexLock l(&mu_);
  for (auto& [b, batch] : done_) {
    if (batch.ok()) buffers_->Give(std::move(*batch));
  }
  for (auto& [b, pending] : pending_) buffers_->Give(std::move(pending.out));
}

void ImageFolderLoader::Recycle(ImageBatch&& batch) { buffers_->Give(std::move(batch)); }

int64_t ImageFolderLoader::bad_files() const {
  absl::MutexLock l(&mu_);
  return bad_files_;
}

void ImageFolderLoader::Work() {
  if (options_.nice > 0) {
    // Best effort: a refusal (a container without the capability is not one: raising one's own
    // niceness is always allowed) leaves the thread at the process's priority.
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), options_.nice);
  }
  const int64_t total = batches();
  while (true) {
    int64_t b, begin, end;
    Pending* p;
    {
      absl::MutexLock l(&mu_);
      while (!stop_ && next_to_start_ < total &&
             next_to_start_ >= next_to_take_ + options_.queue_depth) {
        can_start_.Wait(&mu_);
      }
      if (stop_ || next_to_start_ >= total) return;
      b = next_to_start_;
      const int64_t size = static_cast<int64_t>(batches_[b].indices.size());
      // Chunks of about a (2 x threads)th of the batch: every thread gets a share of the first
      // batch, and a slow file holds up at most a chunk's worth of the others.
      const int64_t parts = 2 * int64_t{options_.threads};
      const int64_t chunk = std::max<int64_t>(1, (size + parts - 1) / parts);
      p = &pending_[b];
      begin = p->claimed;
      end = std::min(size, begin + chunk);
      p->claimed = end;
      if (end == size) ++next_to_start_;
    }
    if (begin == 0) Allocate(p, b);  // the others wait for it below
    bool go;
    {
      absl::MutexLock l(&mu_);
      if (begin == 0) {
        p->ready = true;
        buffer_ready_.SignalAll();
      }
      while (!p->ready) buffer_ready_.Wait(&mu_);
      go = p->error.ok();
    }
    const int64_t threw = go ? DecodeRange(p, b, begin, end) : -1;
    std::optional<Pending> whole;
    {
      absl::MutexLock l(&mu_);
      if (threw >= 0 && (p->fatal_at < 0 || threw < p->fatal_at)) p->fatal_at = threw;
      p->finished += end - begin;
      if (p->finished < static_cast<int64_t>(batches_[b].indices.size())) continue;
      // This thread did the batch's last images: it assembles the batch.
      whole = std::move(pending_.extract(b).mapped());
    }
    absl::StatusOr<ImageBatch> r = Finish(b, std::move(*whole));
    absl::MutexLock l(&mu_);
    if (r.ok()) bad_files_ += static_cast<int64_t>(r->skipped.size());
    done_.emplace(b, std::move(r));
    if (b == next_to_take_) batch_done_.SignalAll();
  }
}

void ImageFolderLoader::Allocate(Pending* p, int64_t b) {
  const TransformOptions& t = options_.transform;
  const size_t n = batches_[b].indices.size();
  ImageBatch& out = p->out;
  out.channels = t.channels;
  out.height = t.out_height;
  out.width = t.out_width;
  try {
    if (n == 0) return;  // an empty batch needs no buffer
    if (options_.float_output) {
      out.f32 = buffers_->TakeF32();
    } else {
      out.u8 = buffers_->TakeU8();
    }
    const size_t sample = static_cast<size_t>(t.channels) * t.out_height * t.out_width;
    if (options_.float_output) {
      out.f32.resize(sample * n);
    } else {
      out.u8.resize(sample * n);
    }
    p->status.resize(n);
  } catch (const std::exception& e) {
    p->error = absl::ResourceExhaustedError(absl::StrCat("batch ", b, ": ", e.what()));
  }
}

int64_t ImageFolderLoader::DecodeRange(Pending* p, int64_t b, int64_t begin, int64_t end) {
  const TransformOptions& t = options_.transform;
  const BatchRequest& req = batches_[b];
  const size_t sample = static_cast<size_t>(t.channels) * t.out_height * t.out_width;
  int64_t k = begin;
  try {
    for (; k < end && !stop_.load(std::memory_order_relaxed); ++k) {
      float* f = options_.float_output ? p->out.f32.data() + k * sample : nullptr;
      uint8_t* u = options_.float_output ? nullptr : p->out.u8.data() + k * sample;
      p->status[k] =
          LoadSample(folder_, req.indices[k], req.epoch, options_.seed, t, options_.limits, f, u);
    }
    return -1;
  } catch (const std::exception& e) {
    p->status[k] = absl::ResourceExhaustedError(
        absl::StrCat("batch ", b, ": ", folder_.path(req.indices[k]), ": ", e.what()));
    return k;
  }
}

absl::StatusOr<ImageBatch> ImageFolderLoader::Finish(int64_t b, Pending p) const {
  auto fail = [&](absl::Status s) {
    buffers_->Give(std::move(p.out));
    return s;
  };
  if (!p.error.ok()) return fail(p.error);
  try {
    const TransformOptions& t = options_.transform;
    const BatchRequest& req = batches_[b];
    const size_t sample = static_cast<size_t>(t.channels) * t.out_height * t.out_width;
    ImageBatch& out = p.out;
    int64_t k = 0;
    for (size_t i = 0; i < req.indices.size(); ++i) {
      if (!p.status[i].ok()) {
        // A file's error, in the request's order; a failure to decode (memory) is never skipped.
        if (!options_.skip_bad_files || static_cast<int64_t>(i) == p.fatal_at) {
          return fail(p.status[i]);
        }
        out.skipped.push_back(std::string(p.status[i].message()));
        continue;
      }
      if (static_cast<size_t>(k) != i) {  // close the gap a skipped file left
        if (options_.float_output) {
          std::copy_n(out.f32.data() + i * sample, sample, out.f32.data() + k * sample);
        } else {
          std::copy_n(out.u8.data() + i * sample, sample, out.u8.data() + k * sample);
        }
      }
      out.labels.push_back(folder_.labels[req.indices[i]]);
      out.indices.push_back(req.indices[i]);
      ++k;
    }
    out.n = k;
    if (options_.float_output) {
      out.f32.resize(sample * k);
    } else {
      out.u8.resize(sample * k);
    }
    return std::move(out);
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("batch ", b, ": ", e.what()));
  }
}

absl::StatusOr<ImageBatch> ImageFolderLoader::Next() {
  if (!invalid_.ok()) return invalid_;
  absl::MutexLock l(&mu_);
  if (next_to_take_ >= batches()) {
    return absl::OutOfRangeError(absl::StrCat("all ", batches(), " batches were returned"));
  }
  const int64_t want = next_to_take_;
  while (done_.count(want) == 0) batch_done_.Wait(&mu_);
  auto node = done_.extract(want);
  ++next_to_take_;
  can_start_.SignalAll();
  return std::move(node.mapped());
}

}  // namespace nas
