// Image-folder loader throughput (issue 22): one epoch over a folder through ImageFolderLoader,
// images per second from the loader's creation to its last batch. bench/loader_compare.py runs
// it alternately with torchvision's ImageFolder + DataLoader on the same folder and transforms.
//
//   loader_bench --make_folder /tmp/folder [--count 2000 --width 400 --height 300]
//   loader_bench --folder /tmp/folder --size 96 --threads 2 [--eval] [--batch 64]
//   loader_bench --folder /tmp/folder --restarts 40 [--task_batches 3]
//
// --make_folder writes `count` JPEGs (quality 90) in 10 class folders from Fashion-MNIST's
// training images (Debian's dataset-fashion-mnist): three images as the red, green and blue
// planes, upscaled (bilinear) to width x height. A run prints one JSON line: images, seconds,
// images_per_s, bad_files, and a checksum of the pixels.
//
// --restarts N measures what a distributed worker's task pays instead: N times, the loader is
// dropped (joining its threads, mid-prefetch) and started at another batch of the epoch with the
// rest of the epoch planned after it (as FolderBatcher::Start does when a task's batches are not
// the ones coming, with one buffer pool for them all as FolderBatcher has), and `task_batches`
// batches are taken. It prints the median and mean time
// from dropping the old loader to the new one's first batch (restart_ms), and the images/s of
// the whole run.
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "worker/dataset_format.h"
#include "worker/image_folder.h"

ABSL_FLAG(std::string, make_folder, "", "write a benchmark folder here and exit");
ABSL_FLAG(int, count, 2000, "--make_folder: images");
ABSL_FLAG(int, width, 400, "--make_folder: image width");
ABSL_FLAG(int, height, 300, "--make_folder: image height");
ABSL_FLAG(std::string, folder, "", "the image folder to read");
ABSL_FLAG(int, size, 96, "output height and width");
ABSL_FLAG(bool, eval, false, "eval transform (resize + centre crop) instead of the training one");
ABSL_FLAG(int, threads, 2, "decoding threads");
ABSL_FLAG(int, queue_depth, 4, "batches decoded ahead");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(uint64_t, seed, 1, "seed of the order and the crops");
ABSL_FLAG(bool, scaled_decode, true, "libjpeg-turbo scaled decoding");
ABSL_FLAG(int, restarts, 0, "measure restarts: this many, at scattered batches");
ABSL_FLAG(int, task_batches, 3, "--restarts: batches taken after each restart");

namespace nas {
namespace {

using Clock = std::chrono::steady_clock;

std::string Gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, n);
  gzclose(f);
  return out;
}

int MakeFolder(const std::string& dir, int count, int width, int height) {
  const std::string src = "/usr/share/datasets/fashion-mnist/";
  std::string img = Gunzip(src + "train-images-idx3-ubyte.gz");
  std::string lab = Gunzip(src + "train-labels-idx1-ubyte.gz");
  auto layout = ParseIdx(img, lab, "train-images", "train-labels");
  if (!layout.ok()) {
    std::fprintf(stderr, "%s\n", std::string(layout.status().message()).c_str());
    return 1;
  }
  auto plane = [&](int64_t i) {
    Image g;
    g.width = g.height = 28;
    g.channels = 1;
    const char* p = img.data() + kIdxImagesHeaderBytes + i * 28 * 28;
    g.pixels.assign(p, p + 28 * 28);
    return g;
  };
  std::vector<float> up(static_cast<size_t>(width) * height);
  for (int k = 0; k < count; ++k) {
    const int64_t i = (3 * k) % (layout->count - 2);
    Image rgb;
    rgb.width = width;
    rgb.height = height;
    rgb.channels = 3;
    rgb.pixels.resize(static_cast<size_t>(width) * height * 3);
    for (int c = 0; c < 3; ++c) {
      Image g = plane(i + c);
      ResampleBox(g, 0, 0, 28, 28, width, height, false, up.data());
      for (size_t p = 0; p < up.size(); ++p) {
        rgb.pixels[p * 3 + c] = static_cast<uint8_t>(std::min(255.f, up[p] + 0.5f));
      }
    }
    const int label = static_cast<uint8_t>(lab[kIdxLabelsHeaderBytes + i]);
    auto jpeg = EncodeJpeg(rgb, 90);
    if (!jpeg.ok()) return 1;
    const std::string cls = absl::StrCat(dir, "/class", label);
    std::filesystem::create_directories(cls);
    std::ofstream(absl::StrCat(cls, "/img", k, ".jpg"), std::ios::binary) << *jpeg;
  }
  std::printf("{\"made\": %d, \"folder\": \"%s\"}\n", count, dir.c_str());
  return 0;
}

int Restarts(const ImageFolder& folder, const LoaderOptions& o, const std::vector<int64_t>& all) {
  const std::vector<BatchRequest> epoch =
      EpochBatches(all, absl::GetFlag(FLAGS_batch), o.seed, 0, /*shuffle=*/true,
                   /*drop_last=*/true);
  const int64_t per_epoch = static_cast<int64_t>(epoch.size());
  const int restarts = absl::GetFlag(FLAGS_restarts);
  const int task = std::max(1, absl::GetFlag(FLAGS_task_batches));
  if (per_epoch < 1) return 1;
  std::unique_ptr<ImageFolderLoader> loader;
  LoaderOptions shared = o;  // as FolderBatcher does: one buffer pool for all its loaders
  shared.buffers = std::make_shared<BatchBufferPool>(static_cast<size_t>(o.queue_depth) + 2);
  std::vector<double> ms;
  int64_t images = 0;
  double checksum = 0;
  const auto t0 = Clock::now();
  for (int r = 0; r < restarts; ++r) {
    const int64_t at = (int64_t{r} * 7919) % per_epoch;  // scattered, the same in every run
    const auto start = Clock::now();
    loader.reset();
    loader = std::make_unique<ImageFolderLoader>(
        folder, shared, std::vector<BatchRequest>(epoch.begin() + at, epoch.end()));
    for (int k = 0; k < task && k < per_epoch - at; ++k) {
      auto b = loader->Next();
      if (!b.ok()) {
        std::fprintf(stderr, "%s\n", std::string(b.status().message()).c_str());
        return 1;
      }
      if (k == 0) {
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
      images += b->n;
      checksum += b->f32[b->f32.size() / 2];
      loader->Recycle(std::move(*b));
    }
  }
  loader.reset();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / ms.size();
  std::sort(ms.begin(), ms.end());
  std::printf(
      "{\"restarts\": %d, \"restart_ms_median\": %.2f, \"restart_ms_mean\": %.2f, "
      "\"images\": %lld, \"seconds\": %.4f, \"images_per_s\": %.1f, \"checksum\": %.4f}\n",
      restarts, ms[ms.size() / 2], mean, static_cast<long long>(images), s, images / s, checksum);
  return 0;
}

int Run() {
  auto folder = ScanImageFolder(absl::GetFlag(FLAGS_folder));
  if (!folder.ok()) {
    std::fprintf(stderr, "%s\n", std::string(folder.status().message()).c_str());
    return 1;
  }
  const int size = absl::GetFlag(FLAGS_size);
  LoaderOptions o;
  o.threads = absl::GetFlag(FLAGS_threads);
  o.queue_depth = absl::GetFlag(FLAGS_queue_depth);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.transform = absl::GetFlag(FLAGS_eval)
                    ? EvalTransform(size, size, 3, kImageNetMean, kImageNetStd)
                    : TrainTransform(size, size, 3, kImageNetMean, kImageNetStd);
  o.transform.scaled_decode = absl::GetFlag(FLAGS_scaled_decode);
  std::vector<int64_t> all(folder->size());
  std::iota(all.begin(), all.end(), 0);
  if (absl::GetFlag(FLAGS_restarts) > 0) return Restarts(*folder, o, all);
  const auto t0 = Clock::now();
  ImageFolderLoader loader(*folder, o,
                           EpochBatches(all, absl::GetFlag(FLAGS_batch), o.seed, 0,
                                        /*shuffle=*/true, /*drop_last=*/true));
  int64_t images = 0;
  double checksum = 0;
  while (true) {
    auto b = loader.Next();
    if (absl::IsOutOfRange(b.status())) break;
    if (!b.ok()) {
      std::fprintf(stderr, "%s\n", std::string(b.status().message()).c_str());
      return 1;
    }
    images += b->n;
    checksum += b->f32[b->f32.size() / 2];
    loader.Recycle(std::move(*b));
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "{\"images\": %lld, \"seconds\": %.4f, \"images_per_s\": %.1f, \"bad_files\": %lld, "
      "\"checksum\": %.4f}\n",
      static_cast<long long>(images), s, images / s, static_cast<long long>(loader.bad_files()),
      checksum);
  return 0;
}

}  // namespace
}  // namespace nas

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_make_folder).empty()) {
    return nas::MakeFolder(absl::GetFlag(FLAGS_make_folder), absl::GetFlag(FLAGS_count),
                           absl::GetFlag(FLAGS_width), absl::GetFlag(FLAGS_height));
  }
  return nas::Run();
}
