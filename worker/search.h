// The single-process ProxylessNAS search and the `nas` commands built on it. No LibTorch in
// this header: the CLI includes it.
//
// RunSearch: profile the space on this machine (or reuse a cached/given table), warm up the
// supernet on sampled paths, run the joint phase (weight steps; an arch step every k-th weight
// step from the second joint epoch on), derive argmax p, train the derived network and the
// baseline (every edge at its largest candidate) from scratch, evaluate both on the test set,
// measure their latency end to end, and write a result directory:
//   architecture.json  network.json (reference config format)  alpha_history.jsonl
//   derived.pt  baseline.pt  latency_table.json  search_space.json  report.json  report.md
//   derived.onnx  baseline.onnx (worker/onnx_export.h: the same networks for ONNX runtimes)
//
//   SearchOptions o;  o.out_dir = "results/run1";
//   absl::StatusOr<SearchReport> r = RunSearch(o);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/arch_params.h"
#include "core/search_defaults.h"
#include "core/search_driver.h"
#include "worker/profiler.h"

namespace nas {

// How an image folder (dataset "folder") is read (worker/job_data.h).
struct ImageOptions {
  // Decode batches as the steps ask for them (random resized crop + flip for training) instead
  // of once into memory: for folders beyond the in-memory limit (4 GiB of pixels). Default false.
  bool stream_images = false;
  // Leave bad image files out (named in the log, counted) instead of failing. Default false.
  bool skip_bad_files = false;
  // Decoding threads per loader. Default 2.
  int loader_threads = 2;
};

struct SearchOptions {
  // Search space: a preset name or a JSON file. Default "fashion-mnist".
  std::string space = "fashion-mnist";
  // Data set name (fashion-mnist, mnist, cifar10, folder) and optional directory (required for
  // folder). Default fashion-mnist.
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  ImageOptions images;
  // Result directory (created). Default "results/search".
  std::string out_dir = "results/search";

  // Latency table path; empty: profile this machine, cached in cache_dir. Default "".
  std::string latency_table;
  // Where profiled tables are cached. Default "$HOME/.cache/nas".
  std::string cache_dir;
  // Profiling settings (device name, batch size, threads, repeats).
  ProfileOptions profile;
  // Hardware loss; target_ms <= 0 picks target_fraction x the expected latency at uniform p.
  // Default add#linear (mul#log needs targets above 1 ms).
  HardwareLossOptions loss{HardwareLossOptions::Type::kAddLinear};
  // Default 0.9.
  double target_fraction = defaults::kTargetFraction;

  // Schedule (epochs over the training split). Defaults 1 / 3 / 10 (core/search_defaults.h).
  int warmup_epochs = defaults::kWarmupEpochs;
  int search_epochs = defaults::kSearchEpochs;
  int train_epochs = defaults::kTrainEpochs;
  // Batch size of weight steps, arch steps and training. Default 128.
  int batch_size = defaults::kBatchSize;
  // Weight learning rate of the search (cosine per batch) and of final training. Defaults
  // 0.05 and 0.1.
  double search_lr = defaults::kSearchLr;
  double train_lr = defaults::kTrainLr;
  // An arch step after every k-th weight step (from the second joint epoch on). Default 5.
  int arch_every = defaults::kArchEvery;
  // "gradient" (binary gates, 'two' mode) or "rl" (REINFORCE). Default "gradient".
  std::string arch_algo = "gradient";
  // Adam on alpha. Default lr 0.015 (defaults::kArchLr), betas (0, 0.999), eps 1e-8.
  ArchAdamOptions arch_adam{defaults::kArchLr};
  // Label smoothing of weight steps. Default 0.1.
  double label_smoothing = 0.1;
  // Training augmentation: random shift (pixels) and horizontal flip. Defaults 2, true.
  int augment_pad = 2;
  bool augment_hflip = true;
  // Held-out validation images (class-balanced) for arch steps. Default 5000.
  int64_t valid_size = defaults::kValidSize;
  // Use only this many training / test images (class-balanced); 0 = all. Default 0.
  int64_t train_subset = 0;
  int64_t test_subset = 0;
  // Train and report the baseline network too. Default true.
  bool baseline = true;
  // Paths of the trained supernet evaluated with inherited weights for report.html's
  // accuracy-latency view, besides the derived and baseline paths (core/path_sample.h); -1:
  // none. Default 16.
  int sampled_paths = 16;
  // Intra-op threads; 0 = all cores. Default 0.
  int threads = 0;
  uint64_t seed = 0;
  // Progress bar on stderr. Default true.
  bool progress = true;
};

struct NetworkReport {
  std::string architecture;  // candidate names
  double test_accuracy = 0;
  double test_loss = 0;
  double predicted_ms = 0;
  double measured_ms = 0;
  double measured_std_ms = 0;
  int64_t parameters = 0;
  int64_t macs = 0;
  double train_seconds = 0;
};

struct SearchReport {
  std::string out_dir;
  std::vector<int> choices;
  double target_ms = 0;
  double final_expected_ms = 0;
  double final_entropy = 0;
  int64_t weight_steps = 0;
  int64_t arch_steps = 0;
  double profile_seconds = 0, search_seconds = 0, total_seconds = 0;
  NetworkReport derived;
  NetworkReport baseline;  // empty when options.baseline is false
  bool has_baseline = false;
};

absl::StatusOr<SearchReport> RunSearch(const SearchOptions& options);

// The latency table a search of options.space on this machine uses - options.latency_table, a
// cached profile with every key, or a fresh profile (then cached) - saved as
// <out_dir>/profiled_table.json; returns that path. What the local service uploads.
absl::StatusOr<std::string> EnsureLatencyTable(const SearchOptions& options);

// `nas train`: trains an architecture (our JSON against a space, or a reference config JSON)
// from scratch, evaluates it and saves weights and a report in out_dir.
struct TrainCommandOptions {
  std::string space = "fashion-mnist";
  std::string architecture;  // path: {"space", "choices"} or a reference network config
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  ImageOptions images;
  std::string out_dir = "results/train";
  int epochs = 6;
  int batch_size = defaults::kBatchSize;
  double lr = 0.1;
  int64_t train_subset = 0;
  int64_t test_subset = 0;
  int threads = 0;
  uint64_t seed = 0;
  bool progress = true;
};
absl::StatusOr<NetworkReport> RunTrain(const TrainCommandOptions& options);

// `nas eval`: loads weights saved by train/search and evaluates them on the test set.
struct EvalCommandOptions {
  std::string space = "fashion-mnist";
  std::string architecture;
  std::string weights;
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  // As the search or training read the folder: the test images are normalised with the training
  // images' statistics, so those are loaded too (streamed: a 1,000-image sample).
  ImageOptions images;
  int64_t test_subset = 0;
  int threads = 0;
};
absl::StatusOr<NetworkReport> RunEval(const EvalCommandOptions& options);

// `nas export`: an architecture (our JSON against a space, or a reference network config) with
// weights saved by search/train (derived.pt, weights.pt) as an ONNX model (worker/onnx_export.h).
// Errors name the file and the problem (a missing or misshapen tensor, non-finite values, an
// architecture of another space).
struct ExportCommandOptions {
  // The space: a preset name or a search_space.json. Unless space_given, a search_space.json
  // next to the architecture file (a result directory) is used instead. Default fashion-mnist.
  std::string space = "fashion-mnist";
  bool space_given = false;
  std::string architecture;  // path (required)
  std::string weights;       // path (required)
  std::string out;           // path of the .onnx file (required)
  // Fold BatchNorm into the convolutions. Default false.
  bool fold_bn = false;
};
struct ExportReport {
  std::string out;
  std::string space;
  std::string architecture;
  int64_t bytes = 0;
  int64_t parameters = 0;
};
absl::StatusOr<ExportReport> RunExport(const ExportCommandOptions& options);

// `nas profile`: times every layer of a space and writes a table.
absl::StatusOr<std::string> RunProfile(const std::string& space, const ProfileOptions& options,
                                       const std::string& out_path);

}  // namespace nas
