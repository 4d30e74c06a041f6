// What streaming an image folder costs the search step (issue 22): weight steps of a supernet
// (the search's WeightStep, random paths) at 96x96 fed (A) from the folder's images decoded once
// into memory (LoadFolderDataSet + Batcher with flips: the in-memory array) and (B) from
// FolderBatcher (random resized crop + flip decoded on threads while the step runs), alternated.
//
//   folder_step_bench --folder /tmp/loader_folder [--size 96] [--batch 64] [--steps 10]
//                     [--rounds 3] [--threads 2] [--decode_threads 2]
//
// The space: the cifar10 preset at size x size input with a stride-2 stem; both variants run the
// same sequence of random paths. Prints a markdown table of images/s per round and the median
// ratio B/A.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "core/rng.h"
#include "core/search_space.h"
#include "worker/folder_data.h"
#include "worker/runtime.h"
#include "worker/train.h"

ABSL_FLAG(std::string, folder, "", "the image folder (loader_bench --make_folder)");
ABSL_FLAG(int, size, 96, "input height and width");
ABSL_FLAG(int, batch, 64, "batch size");
ABSL_FLAG(int, steps, 10, "weight steps per measurement");
ABSL_FLAG(int, rounds, 3, "A/B rounds");
ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads");
ABSL_FLAG(int, decode_threads, 2, "the folder loader's threads");

namespace nas {
namespace {

using Clock = std::chrono::steady_clock;

int Run() {
  ConfigureCpuRuntime(absl::GetFlag(FLAGS_threads));
  const int size = absl::GetFlag(FLAGS_size), batch = absl::GetFlag(FLAGS_batch);
  const int steps = absl::GetFlag(FLAGS_steps);
  auto preset = SearchSpace::Preset("cifar10");
  nlohmann::json j = nlohmann::json::parse(preset->ToJson());
  j["name"] = "folder-bench";
  j["input"]["height"] = size;
  j["input"]["width"] = size;
  j["stem"]["stride"] = 2;
  auto space = SearchSpace::FromJson(j.dump());
  if (!space.ok()) {
    std::fprintf(stderr, "%s\n", std::string(space.status().message()).c_str());
    return 1;
  }
  auto folder = ScanImageFolder(absl::GetFlag(FLAGS_folder));
  if (!folder.ok()) {
    std::fprintf(stderr, "%s\n", std::string(folder.status().message()).c_str());
    return 1;
  }
  std::vector<int64_t> all(folder->size());
  std::iota(all.begin(), all.end(), 0);
  auto t0 = Clock::now();
  auto memory = LoadFolderDataSet(*folder, all, EvalTransform(size, size, 3, {}, {}),
                                  absl::GetFlag(FLAGS_decode_threads));
  if (!memory.ok()) {
    std::fprintf(stderr, "%s\n", std::string(memory.status().message()).c_str());
    return 1;
  }
  const double decode_s = std::chrono::duration<double>(Clock::now() - t0).count();
  LoaderOptions o;
  o.threads = absl::GetFlag(FLAGS_decode_threads);
  o.transform = TrainTransform(size, size, 3, memory->mean, memory->std);
  FolderBatcher streamed(*folder, all, batch, 1, o);
  Batcher in_memory(*memory, batch, 1, Augment{.pad = 0, .hflip = true});

  torch::manual_seed(0);
  SuperNet net(*space);
  PathSgd sgd(SgdOptions{});
  Rng rng(7);
  auto path = [&] {
    std::vector<int> p;
    for (const EdgeSpec& e : space->edges())
      p.push_back(static_cast<int>(rng.Below(e.candidates.size())));
    return p;
  };
  int64_t next_a = 0, next_b = 0;  // batches of epoch 0, then on
  auto measure = [&](bool stream, int n) {
    rng = Rng(7);  // both variants run the same sequence of paths
    auto start = Clock::now();
    for (int s = 0; s < n; ++s) {
      torch::Tensor x, y;
      int64_t& k = stream ? next_b : next_a;
      const int64_t per_epoch =
          stream ? streamed.batches_per_epoch() : in_memory.batches_per_epoch();
      const int64_t epoch = k / per_epoch, b = k % per_epoch;
      ++k;
      absl::Status st = stream ? streamed.Batch(epoch, b, &x, &y) : in_memory.Batch(epoch, b, &x, &y);
      if (!st.ok()) {
        std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
        std::exit(1);
      }
      WeightStep(net, sgd, path(), x, y, 0.05, 0.1);
    }
    return n * batch / std::chrono::duration<double>(Clock::now() - start).count();
  };
  // Warm-up: every path of the sequence once (oneDNN creates its primitives on first use), and
  // the first touch of both data paths.
  measure(false, steps);
  measure(true, 1);
  std::printf(
      "space: cifar10 preset at %dx%dx3, stem stride 2; batch %d, %d steps per cell, %d "
      "LibTorch threads, %d decode threads; folder %s (%lld images) decoded into memory "
      "in %.1f s\n\n",
      size, size, batch, steps, absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_decode_threads),
      absl::GetFlag(FLAGS_folder).c_str(), static_cast<long long>(folder->size()), decode_s);
  std::printf("| round | in memory images/s | streamed from the folder images/s | ratio |\n");
  std::printf("|---|---:|---:|---:|\n");
  std::vector<double> ratios;
  for (int r = 0; r < absl::GetFlag(FLAGS_rounds); ++r) {
    double a, b;
    if (r % 2 == 0) {
      a = measure(false, steps);
      b = measure(true, steps);
    } else {
      b = measure(true, steps);
      a = measure(false, steps);
    }
    ratios.push_back(b / a);
    std::printf("| %d | %.1f | %.1f | %.3f |\n", r + 1, a, b, b / a);
    std::fflush(stdout);
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf("\nmedian streamed / in memory: %.3f\n", ratios[ratios.size() / 2]);
  return 0;
}

}  // namespace
}  // namespace nas

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return nas::Run();
}
