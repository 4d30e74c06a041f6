// nas: the local command line of the NAS service.
//
//   nas search   [--space fashion-mnist] [--out results/search] ...   a full ProxylessNAS search
//   nas train    --arch ARCH.json [--space ...] [--epochs 6]             train an architecture
//   nas eval     --arch ARCH.json --weights W.pt                        evaluate saved weights
//   nas profile  [--space ...] --table-out T.json                       profile layers here
//                [--calibration_networks 20]                            (+ network calibration)
//   nas spaces                                                          list presets
//   nas latency-check --latency-service H:P --device D --samples N      calibrate a service
//
// With --latency-service host:port, `search` takes its latencies from the latency service
// (one batch query for the space, kept for the job) and `profile --upload host:port` puts the
// profiled table into it. Flag names accept dashes for underscores (--latency-service).
//
// Flags only fill option structs; the work is in worker/search.h.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/latency_check.h"
#include "cli/launcher.h"
#include "coordinator/search_client.h"
#include "core/malloc_tuning.h"
#include "core/report_html.h"
#include "core/search_defaults.h"
#include "core/search_space.h"
#include "latency_service/latency_client.h"
#include "worker/search.h"

ABSL_FLAG(std::string, space, "fashion-mnist", "search space: preset name or JSON file");
ABSL_FLAG(std::string, print, "",
          "spaces: print this space's JSON (a preset's name or a file), to edit into a new space");
ABSL_FLAG(std::string, dataset, "fashion-mnist",
          "data set: fashion-mnist, mnist, cifar10 or folder (an image folder: --data_dir)");
ABSL_FLAG(std::string, data_dir, "",
          "data set directory (default: Debian's location); for folder: DIR/train + DIR/val, "
          "or one folder per class with optional train.txt/val.txt");
ABSL_FLAG(std::string, out, "", "result directory");
ABSL_FLAG(std::string, latency_table, "",
          "latency table (ours .json or ProxylessNAS .yaml); default: profile this machine");
ABSL_FLAG(std::string, cache_dir, "", "profiled-table cache (default $HOME/.cache/nas)");
ABSL_FLAG(std::string, device, "local-cpu", "device name recorded in profiled tables");
ABSL_FLAG(std::string, backend, "cpu", "where to profile: cpu or cuda");
ABSL_FLAG(int, profile_batch, 1, "batch size of profiled layers");
ABSL_FLAG(int, profile_repeats, 50, "timed runs per profiled layer");
ABSL_FLAG(int, calibration_networks, 20,
          "profile (and search when it profiles): sampled networks measured end to end to fit "
          "the table's whole-network calibration (0: none)");
ABSL_FLAG(int, profile_passes, 3,
          "profile, latency-check: passes over the layers and networks timed (each keeps its "
          "median pass)");
ABSL_FLAG(double, calibration_max_error, 50,
          "profile: keep the calibration only if it predicts every calibration network within "
          "this many percent");
ABSL_FLAG(std::string, loss, "add#linear", "hardware loss: mul#log, add#linear or none");
ABSL_FLAG(double, target_ms, 0, "target latency in ms (0: 0.9 x expected latency at start)");
ABSL_FLAG(double, loss_alpha, 0.2, "mul#log alpha");
ABSL_FLAG(double, loss_beta, 0.3, "mul#log beta");
ABSL_FLAG(double, loss_lambda, nas::defaults::kLossLambda, "add#linear lambda");
ABSL_FLAG(int, warmup_epochs, nas::defaults::kWarmupEpochs, "warm-up epochs (weights only)");
ABSL_FLAG(int, search_epochs, nas::defaults::kSearchEpochs, "joint search epochs");
ABSL_FLAG(int, train_epochs, nas::defaults::kTrainEpochs,
          "epochs to train the derived network (and baseline)");
ABSL_FLAG(int, epochs, nas::defaults::kTrainEpochs, "train: epochs");
ABSL_FLAG(int, batch_size, nas::defaults::kBatchSize, "batch size");
ABSL_FLAG(double, search_lr, nas::defaults::kSearchLr, "weight learning rate during the search");
ABSL_FLAG(double, lr, nas::defaults::kTrainLr, "learning rate of final training");
ABSL_FLAG(int, arch_every, nas::defaults::kArchEvery, "an arch step after every k weight steps");
ABSL_FLAG(std::string, arch_algo, "gradient", "gradient (binary gates) or rl (REINFORCE)");
ABSL_FLAG(double, arch_lr, nas::defaults::kArchLr,
          "Adam learning rate of alpha (the reference uses 1e-3 over ~10^5 arch steps; the "
          "default search has ~170, so alpha gets a larger step)");
ABSL_FLAG(int64_t, valid_size, nas::defaults::kValidSize,
          "held-out validation images for arch steps");
ABSL_FLAG(int64_t, train_subset, 0, "use only this many training images (0: all)");
ABSL_FLAG(int64_t, test_subset, 0, "use only this many test images (0: all)");
ABSL_FLAG(bool, baseline, true, "also train the largest network for comparison");
ABSL_FLAG(bool, stream_images, false,
          "search, train, eval with --dataset folder: decode each batch as the steps ask for it "
          "(random resized crop + flip for training) instead of every image once into memory "
          "(bounded at 4 GiB of pixels); what a full ImageNet folder needs");
ABSL_FLAG(bool, skip_bad_files, false,
          "search, train, eval with --dataset folder: leave corrupt or unreadable image files out "
          "(named in the log, counted in report.json) instead of failing");
ABSL_FLAG(int, loader_threads, 2,
          "search, train, eval with --dataset folder: decoding threads of each image loader (1..64)");
ABSL_FLAG(int, threads, 0, "intra-op threads (0: all cores)");
ABSL_FLAG(uint64_t, seed, 0, "random seed");
ABSL_FLAG(bool, progress, true, "show a progress bar");
ABSL_FLAG(std::string, arch, "", "train/eval: architecture JSON or reference network config");
ABSL_FLAG(std::string, weights, "", "eval/export: weights file written by train or search");
ABSL_FLAG(bool, fold_bn, false, "export: fold BatchNorm into the convolutions");
ABSL_FLAG(std::string, table_out, "", "profile: where to write the table");
ABSL_FLAG(std::string, latency_service, "",
          "search, latency-check: latency service host:port (search: instead of a local table; "
          "--device names the table)");
ABSL_FLAG(std::string, upload, "", "profile: also upload the table to this latency service");
ABSL_FLAG(std::string, latency_token_file, "",
          "profile --upload: file holding a writer token of the latency service (default: "
          "$NAS_LATENCY_TOKEN, else the file $NAS_LATENCY_TOKEN_FILE names, else none)");
ABSL_FLAG(int, workers, 0,
          "search: run through the distributed service - a local latency service, coordinator "
          "and this many worker processes (0: the single-process search; -1: one per two "
          "cores, at least one)");
ABSL_FLAG(std::string, coordinator, "",
          "search: submit to this coordinator (host:port) and follow the job instead (default: "
          "$NAS_COORDINATOR when set and --workers is 0)");
ABSL_FLAG(std::string, token_file, "",
          "search with --coordinator: file holding your bearer token (default: $NAS_TOKEN, else "
          "the file $NAS_TOKEN_FILE names, else none)");
ABSL_FLAG(int, parallel_tasks, 0,
          "search with --workers/--coordinator: weight tasks per round "
          "(0: one per worker)");
ABSL_FLAG(bool, checkpoint_sync, true,
          "search with --workers: the local coordinator fsyncs every round's checkpoint "
          "(false: a round survives a coordinator crash but not a machine crash)");
ABSL_FLAG(bool, pipelined_commits, false,
          "search with --workers: the local coordinator writes a round's checkpoint while the "
          "next round runs (a coordinator crash re-runs up to two unwritten rounds, identically)");
ABSL_FLAG(int, steps_per_task, 1, "search with --workers/--coordinator: SGD steps per weight task");
ABSL_FLAG(int, chain_steps, 0,
          "search with --workers/--coordinator and one task per round: weight tasks a worker runs "
          "in a row as one task, each on its own path (one round trip and one checkpoint; the "
          "same trajectory), cut where an arch step is due (0: 8 with one task per round)");
ABSL_FLAG(int, sampled_paths, 0,
          "search: paths of the trained supernet evaluated with their inherited weights for "
          "report.html's accuracy-latency view, besides the derived and baseline paths (0: 16; "
          "-1: none)");
ABSL_FLAG(std::string, result_dir, "", "report: the result directory to write report.html into");
ABSL_FLAG(std::string, title, "", "report: the page's title (default: the directory)");
ABSL_FLAG(int, samples, 20, "latency-check: random architectures to predict and measure");
ABSL_FLAG(int, probe_layers, 8,
          "latency-check: table layers re-timed before and after the networks (the machine's "
          "speed against the table's; 0: none)");

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "nas: error: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

nas::ProfileOptions ProfileFromFlags() {
  nas::ProfileOptions p;
  p.device = absl::GetFlag(FLAGS_device);
  p.backend = absl::GetFlag(FLAGS_backend);
  p.batch_size = absl::GetFlag(FLAGS_profile_batch);
  p.repeats = absl::GetFlag(FLAGS_profile_repeats);
  p.calibration_networks = absl::GetFlag(FLAGS_calibration_networks);
  p.max_calibration_error_pct = absl::GetFlag(FLAGS_calibration_max_error);
  p.passes = absl::GetFlag(FLAGS_profile_passes);
  p.threads = absl::GetFlag(FLAGS_threads);
  return p;
}

// --latency_service: the job's table, fetched once (one batch query of every layer of the
// space) and written into the result directory; the search then reads it as a local table.
absl::StatusOr<std::string> TableFromService(const std::string& space_name,
                                             const std::string& out_dir) {
  if (!absl::GetFlag(FLAGS_latency_table).empty()) {
    return absl::InvalidArgumentError(
        "--latency_table: give a table or --latency_service, not both");
  }
  auto space = nas::SearchSpace::Load(space_name);
  if (!space.ok()) return space.status();
  auto client = nas::LatencyClient::Connect(absl::GetFlag(FLAGS_latency_service));
  if (!client.ok()) return client.status();
  auto table = nas::FetchLatencyTable(**client, absl::GetFlag(FLAGS_device), space->AllLayerKeys());
  if (!table.ok()) return table.status();
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  std::string path = out_dir + "/latency_service_table.json";
  absl::Status s = table->Save(path);
  if (!s.ok()) return s;
  std::printf("latency table: %zu layers from %s (%s)\n", table->size(),
              absl::GetFlag(FLAGS_latency_service).c_str(), table->info().method.c_str());
  return path;
}

// The same search as a job of the distributed service (cli/launcher.h).
nas::ImageOptions ImageFlags() {
  nas::ImageOptions images;
  images.stream_images = absl::GetFlag(FLAGS_stream_images);
  images.skip_bad_files = absl::GetFlag(FLAGS_skip_bad_files);
  images.loader_threads = absl::GetFlag(FLAGS_loader_threads);
  return images;
}

int DistributedSearch(const nas::SearchOptions& o) {
  nas::JobSpec spec;
  spec.set_space(o.space);
  spec.set_dataset(o.dataset);
  spec.set_data_dir(o.data_dir);
  spec.set_target_latency_ms(o.loss.target_ms);
  spec.set_target_fraction(o.target_fraction);
  spec.set_loss(nas::HardwareLossOptions::TypeName(o.loss.type));
  spec.set_loss_lambda(o.loss.lambda);
  spec.set_warmup_epochs(o.warmup_epochs == 0 ? -1 : o.warmup_epochs);
  spec.set_search_epochs(o.search_epochs);
  spec.set_train_epochs(o.train_epochs == 0 ? -1 : o.train_epochs);
  spec.set_batch_size(o.batch_size);
  spec.set_search_lr(o.search_lr);
  spec.set_train_lr(o.train_lr);
  spec.set_arch_lr(o.arch_adam.lr);
  spec.set_arch_every(o.arch_every);
  spec.set_arch_algo(o.arch_algo);
  spec.set_valid_size(o.valid_size);
  spec.set_train_subset(o.train_subset);
  spec.set_test_subset(o.test_subset);
  spec.set_seed(o.seed);
  spec.set_no_baseline(!o.baseline);
  spec.set_label_smoothing(o.label_smoothing);
  int workers = absl::GetFlag(FLAGS_workers);
  if (workers < 0) workers = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2);
  int parallel = absl::GetFlag(FLAGS_parallel_tasks);
  spec.set_parallel_tasks(parallel > 0 ? parallel : std::max(1, workers));
  spec.set_steps_per_task(absl::GetFlag(FLAGS_steps_per_task));
  spec.set_chain_steps(absl::GetFlag(FLAGS_chain_steps));
  spec.set_sampled_paths(o.sampled_paths);
  spec.set_stream_images(o.images.stream_images);
  spec.set_skip_bad_files(o.images.skip_bad_files);
  absl::StatusOr<std::string> md;
  std::string coordinator = absl::GetFlag(FLAGS_coordinator);
  if (coordinator.empty() && workers == 0) {
    const char* env = std::getenv("NAS_COORDINATOR");
    if (env != nullptr && *env != '\0') coordinator = env;
  }
  if (!coordinator.empty()) {
    spec.set_device(o.profile.device);
    nas::SearchClientOptions client_options;
    auto token = nas::ClientToken(absl::GetFlag(FLAGS_token_file));
    if (!token.ok()) return Fail(token.status());
    client_options.token = *token;
    auto client = nas::SearchClient::Connect(coordinator, client_options);
    if (!client.ok()) return Fail(client.status());
    auto job = (*client)->Submit(spec);
    if (!job.ok()) return Fail(job.status());
    md = nas::FollowJob(coordinator, client_options, *job, o.out_dir, o.progress);
  } else {
    auto table = nas::EnsureLatencyTable(o);
    if (!table.ok()) return Fail(table.status());
    auto loaded = nas::LatencyTable::Load(*table);
    if (!loaded.ok()) return Fail(loaded.status());
    spec.set_device(loaded->info().device);
    nas::LaunchOptions lo;
    lo.spec = spec;
    lo.table_path = *table;
    lo.out_dir = o.out_dir;
    lo.workers = workers;
    lo.threads_per_worker = o.threads;
    lo.loader_threads = o.images.loader_threads;
    lo.progress = o.progress;
    lo.sync = absl::GetFlag(FLAGS_checkpoint_sync);
    lo.pipelined_commits = absl::GetFlag(FLAGS_pipelined_commits);
    md = nas::RunLocalService(lo);
  }
  if (!md.ok()) return Fail(md.status());
  std::printf("%s\nresults in %s (report.md, architecture.json, derived.pt)\n", md->c_str(),
              o.out_dir.c_str());
  return 0;
}

int Search() {
  nas::SearchOptions o;
  o.space = absl::GetFlag(FLAGS_space);
  o.dataset = absl::GetFlag(FLAGS_dataset);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.out_dir = absl::GetFlag(FLAGS_out).empty() ? "results/search" : absl::GetFlag(FLAGS_out);
  o.latency_table = absl::GetFlag(FLAGS_latency_table);
  o.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  o.profile = ProfileFromFlags();
  if (!absl::GetFlag(FLAGS_latency_service).empty()) {
    auto table = TableFromService(o.space, o.out_dir);
    if (!table.ok()) return Fail(table.status());
    o.latency_table = *table;
  }
  auto type = nas::HardwareLossOptions::ParseType(absl::GetFlag(FLAGS_loss));
  if (!type.ok()) return Fail(type.status());
  o.loss.type = *type;
  o.loss.target_ms = absl::GetFlag(FLAGS_target_ms);
  o.loss.alpha = absl::GetFlag(FLAGS_loss_alpha);
  o.loss.beta = absl::GetFlag(FLAGS_loss_beta);
  o.loss.lambda = absl::GetFlag(FLAGS_loss_lambda);
  o.warmup_epochs = absl::GetFlag(FLAGS_warmup_epochs);
  o.search_epochs = absl::GetFlag(FLAGS_search_epochs);
  o.train_epochs = absl::GetFlag(FLAGS_train_epochs);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.search_lr = absl::GetFlag(FLAGS_search_lr);
  o.train_lr = absl::GetFlag(FLAGS_lr);
  o.arch_every = absl::GetFlag(FLAGS_arch_every);
  o.arch_algo = absl::GetFlag(FLAGS_arch_algo);
  o.arch_adam.lr = absl::GetFlag(FLAGS_arch_lr);
  o.valid_size = absl::GetFlag(FLAGS_valid_size);
  o.train_subset = absl::GetFlag(FLAGS_train_subset);
  o.test_subset = absl::GetFlag(FLAGS_test_subset);
  o.baseline = absl::GetFlag(FLAGS_baseline);
  o.images = ImageFlags();
  if (absl::GetFlag(FLAGS_sampled_paths) != 0) o.sampled_paths = absl::GetFlag(FLAGS_sampled_paths);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.progress = absl::GetFlag(FLAGS_progress);
  const char* env_coordinator = std::getenv("NAS_COORDINATOR");
  if (absl::GetFlag(FLAGS_workers) != 0 || !absl::GetFlag(FLAGS_coordinator).empty() ||
      (env_coordinator != nullptr && *env_coordinator != '\0')) {
    return DistributedSearch(o);
  }
  auto r = nas::RunSearch(o);
  if (!r.ok()) return Fail(r.status());
  std::printf("results in %s (report.md, architecture.json, derived.pt)\n", r->out_dir.c_str());
  return 0;
}

void PrintNetwork(const nas::NetworkReport& r) {
  std::printf("architecture: %s\ntest accuracy: %.2f%%  loss %.4f\nparameters: %lld  MACs: %lld\n",
              r.architecture.c_str(), 100 * r.test_accuracy, r.test_loss,
              static_cast<long long>(r.parameters), static_cast<long long>(r.macs));
}

int Train() {
  nas::TrainCommandOptions o;
  o.space = absl::GetFlag(FLAGS_space);
  o.architecture = absl::GetFlag(FLAGS_arch);
  if (o.architecture.empty()) return Fail(absl::InvalidArgumentError("--arch: required"));
  o.dataset = absl::GetFlag(FLAGS_dataset);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.out_dir = absl::GetFlag(FLAGS_out).empty() ? "results/train" : absl::GetFlag(FLAGS_out);
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.lr = absl::GetFlag(FLAGS_lr);
  o.train_subset = absl::GetFlag(FLAGS_train_subset);
  o.test_subset = absl::GetFlag(FLAGS_test_subset);
  o.images = ImageFlags();
  o.threads = absl::GetFlag(FLAGS_threads);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.progress = absl::GetFlag(FLAGS_progress);
  auto r = nas::RunTrain(o);
  if (!r.ok()) return Fail(r.status());
  PrintNetwork(*r);
  std::printf("weights: %s/weights.pt\n", o.out_dir.c_str());
  return 0;
}

int Export() {
  nas::ExportCommandOptions o;
  o.space = absl::GetFlag(FLAGS_space);
  // A --space other than the default overrides the result directory's search_space.json.
  const absl::CommandLineFlag* space_flag = absl::FindCommandLineFlag("space");
  o.space_given = space_flag != nullptr && space_flag->CurrentValue() != space_flag->DefaultValue();
  o.architecture = absl::GetFlag(FLAGS_arch);
  o.weights = absl::GetFlag(FLAGS_weights);
  o.out = absl::GetFlag(FLAGS_out);
  o.fold_bn = absl::GetFlag(FLAGS_fold_bn);
  auto r = nas::RunExport(o);
  if (!r.ok()) return Fail(r.status());
  std::printf("wrote %s (%lld bytes): ONNX opset 13, space %s, %s, %lld parameters%s\n",
              r->out.c_str(), static_cast<long long>(r->bytes), r->space.c_str(),
              r->architecture.c_str(), static_cast<long long>(r->parameters),
              o.fold_bn ? ", BatchNorm folded" : "");
  return 0;
}

int Eval() {
  nas::EvalCommandOptions o;
  o.space = absl::GetFlag(FLAGS_space);
  o.architecture = absl::GetFlag(FLAGS_arch);
  o.weights = absl::GetFlag(FLAGS_weights);
  if (o.architecture.empty()) return Fail(absl::InvalidArgumentError("--arch: required"));
  if (o.weights.empty()) return Fail(absl::InvalidArgumentError("--weights: required"));
  o.dataset = absl::GetFlag(FLAGS_dataset);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  o.test_subset = absl::GetFlag(FLAGS_test_subset);
  o.images = ImageFlags();
  o.threads = absl::GetFlag(FLAGS_threads);
  auto r = nas::RunEval(o);
  if (!r.ok()) return Fail(r.status());
  PrintNetwork(*r);
  return 0;
}

int Profile() {
  std::string out = absl::GetFlag(FLAGS_table_out);
  if (out.empty()) return Fail(absl::InvalidArgumentError("--table_out: required"));
  auto r = nas::RunProfile(absl::GetFlag(FLAGS_space), ProfileFromFlags(), out);
  if (!r.ok()) return Fail(r.status());
  std::printf("table: %s\n", r->c_str());
  auto table = nas::LatencyTable::Load(out);
  if (!table.ok()) return Fail(table.status());
  if (table->info().calibration.has_value()) {
    const nas::LatencyCalibration& c = *table->info().calibration;
    std::printf(
        "calibration: network = layer sum %+.4f ms %+.4f ms x layers (%s; %d networks of "
        "%d-%d layers, %d outliers left out: layer-sum RMSE %.4f ms, calibrated %.4f ms, "
        "leave-one-out %.4f ms, worst %.1f%%)\n",
        c.overhead_ms, c.per_layer_ms, c.model.c_str(), c.networks, c.min_layers, c.max_layers,
        c.rejected, c.raw_rmse_ms, c.rmse_ms, c.loo_rmse_ms, c.max_error_pct);
  }
  const std::string upload = absl::GetFlag(FLAGS_upload);
  if (!upload.empty()) {
    auto token = nas::LatencyWriterToken(absl::GetFlag(FLAGS_latency_token_file));
    if (!token.ok()) return Fail(token.status());
    nas::LatencyClientOptions client_options;
    client_options.token = *token;
    auto client = nas::LatencyClient::Connect(upload, client_options);
    if (!client.ok()) return Fail(client.status());
    auto put = (*client)->PutTableJson(table->ToJson(), /*merge=*/false);
    if (!put.ok()) return Fail(put.status());
    std::printf(
        "uploaded to %s: device %s, version %llu, %lld entries, predictor held-out "
        "MAPE %.2f%%\n",
        upload.c_str(), put->name.c_str(), static_cast<unsigned long long>(put->version),
        static_cast<long long>(put->entries), put->predictor.holdout_mape);
  }
  return 0;
}

int LatencyCheck() {
  nas::LatencyCheckOptions o;
  o.latency_service = absl::GetFlag(FLAGS_latency_service);
  o.device = absl::GetFlag(FLAGS_device);
  o.space = absl::GetFlag(FLAGS_space);
  o.samples = absl::GetFlag(FLAGS_samples);
  o.probe_layers = absl::GetFlag(FLAGS_probe_layers);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.profile = ProfileFromFlags();
  auto r = nas::RunLatencyCheck(o);
  if (!r.ok()) return Fail(r.status());
  std::printf("%s", nas::FormatLatencyCheck(*r).c_str());
  return 0;
}

int Report() {
  std::string dir = absl::GetFlag(FLAGS_result_dir);
  if (dir.empty()) return Fail(absl::InvalidArgumentError("--result_dir: required"));
  absl::Status s = nas::WriteReportHtml(dir, absl::GetFlag(FLAGS_title).empty()
                                                 ? dir
                                                 : absl::GetFlag(FLAGS_title));
  if (!s.ok()) return Fail(s);
  std::printf("wrote %s/report.html\n", dir.c_str());
  return 0;
}

int Spaces() {
  if (std::string name = absl::GetFlag(FLAGS_print); !name.empty()) {
    auto s = nas::SearchSpace::Load(name);
    if (!s.ok()) return Fail(s.status());
    std::printf("%s\n", s->ToJson().c_str());
    return 0;
  }
  for (const std::string& name : nas::SearchSpace::PresetNames()) {
    auto s = nas::SearchSpace::Preset(name);
    if (!s.ok()) return Fail(s.status());
    std::printf("%-20s %dx%dx%d, %d classes, %d edges, %zu layer keys\n", name.c_str(),
                s->input_height(), s->input_width(), s->input_channels(), s->num_classes(),
                s->num_edges(), s->AllLayerKeys().size());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any tensor: LibTorch's step buffers stay in the heap between steps
  // (core/malloc_tuning.h; MALLOC_*_ or GLIBC_TUNABLES in the environment keep glibc's own).
  nas::TuneMallocForTensors();
  absl::SetProgramUsageMessage(
      "nas <search|train|eval|export|profile|spaces> [flags]\n"
      "  search   profile, search, derive, train and report (the embedded default)\n"
      "  train    train an architecture (--arch) from scratch\n"
      "  eval     evaluate saved weights (--arch, --weights)\n"
      "  export   write --arch with --weights as an ONNX model to --out [--fold_bn]\n"
      "  profile  time every layer of --space, calibrate on whole networks, write --table_out\n"
      "  spaces   list the preset search spaces (--print NAME: one space's JSON)\n"
      "  report   (re)write --result_dir's report.html from its report.json and history\n"
      "  latency-check  predict (--latency_service, --device) and measure --samples networks");
  // --latency-service is --latency_service: dashes in a flag's name read as underscores.
  std::vector<std::string> normalized(argv, argv + argc);
  for (std::string& a : normalized) {
    if (a.rfind("--", 0) != 0) continue;
    for (size_t i = 2; i < a.size() && a[i] != '='; ++i) {
      if (a[i] == '-') a[i] = '_';
    }
  }
  std::vector<char*> normalized_argv;
  for (std::string& a : normalized) normalized_argv.push_back(a.data());
  std::vector<char*> args = absl::ParseCommandLine(argc, normalized_argv.data());
  if (args.size() != 2) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage().data());
    return 2;
  }
  std::string cmd = args[1];
  if (cmd == "search") return Search();
  if (cmd == "train") return Train();
  if (cmd == "eval") return Eval();
  if (cmd == "export") return Export();
  if (cmd == "profile") return Profile();
  if (cmd == "spaces") return Spaces();
  if (cmd == "report") return Report();
  if (cmd == "latency-check") return LatencyCheck();
  std::fprintf(stderr, "nas: unknown command \"%s\"\n%s\n", cmd.c_str(),
               absl::ProgramUsageMessage().data());
  return 2;
}
