#include "worker/search.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/architecture.h"
#include "core/json_fields.h"
#include "core/latency_table.h"
#include "core/path_sample.h"
#include "core/report_html.h"
#include "core/search_driver.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "worker/data.h"
#include "worker/folder_data.h"
#include "worker/job_data.h"
#include "worker/onnx_export.h"
#include "worker/ops.h"
#include "worker/path_eval.h"
#include "worker/progress.h"
#include "worker/runtime.h"
#include "worker/tasks.h"
#include "worker/torch_status.h"
#include "worker/train.h"

namespace nas {

namespace fs = std::filesystem;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void SetThreads(int threads) { ConfigureCpuRuntime(threads); }

std::string DefaultCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/nas";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.cache/nas";
}

absl::Status MakeDir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  return absl::OkStatus();
}

// ", calibration +0.1900 ms per network (constant, 20 networks, RMSE 0.21 -> 0.02 ms)" or "".
std::string CalibrationSummary(const LatencyTable& t) {
  if (!t.info().calibration.has_value()) return "";
  const LatencyCalibration& c = *t.info().calibration;
  return absl::StrFormat(
      ", calibration %+.4f ms per network%s (%s, %d networks, %d outliers left out, RMSE "
      "%.3f -> %.3f ms)",
      c.overhead_ms,
      c.per_layer_ms != 0 ? absl::StrFormat(" %+.4f ms per layer", c.per_layer_ms) : "",
      c.model, c.networks, c.rejected, c.raw_rmse_ms, c.rmse_ms);
}

// Table for `space` on this machine: the given file, a cached profile with every key, or a
// fresh profile (then cached).
absl::StatusOr<LatencyTable> ObtainTable(const SearchSpace& space, const SearchOptions& o,
                                         ProgressBar& bar, double* profile_seconds) {
  std::vector<std::string> keys = space.AllLayerKeys();
  if (!o.latency_table.empty()) {
    NAS_ASSIGN_OR_RETURN(LatencyTable t, LatencyTable::Load(o.latency_table));
    for (const std::string& k : keys) {
      if (!t.Contains(k)) {
        return absl::NotFoundError(absl::StrCat(o.latency_table, ": device ", t.info().device,
                                                " has no latency for key '", k,
                                                "' of space ", space.name()));
      }
    }
    return t;
  }
  ProfileOptions po = o.profile;
  if (po.threads <= 0) po.threads = at::get_num_threads();
  std::string cache_dir = o.cache_dir.empty() ? DefaultCacheDir() : o.cache_dir;
  std::string cache = absl::StrCat(cache_dir, "/", space.name(), "-", po.device, "-b",
                                   po.batch_size, "-t", po.threads, ".json");
  if (fs::exists(cache)) {
    auto t = LatencyTable::Load(cache);
    // The method names the protocol, calibration included, and the runtime the threads and
    // OpenBLAS's idle setting: a table cached before calibration existed, by another protocol
    // or under another runtime setting is profiled again.
    bool complete = t.ok() && t->info().method == ProfileMethod(po) &&
                    t->info().runtime == RuntimeDescription(po) &&
                    t->info().calibration.has_value() == (po.calibration_networks > 0);
    if (complete) {
      for (const std::string& k : keys) complete = complete && t->Contains(k);
    }
    if (complete) {
      bar.Log(absl::StrCat("latency table: reusing ", cache, " (", t->size(), " entries)"));
      return t;
    }
    bar.Log(
        absl::StrCat("latency table: cached ", cache,
                     " is incomplete, unreadable or from another profiling protocol or runtime; "
                     "profiling again"));
  }
  auto t0 = std::chrono::steady_clock::now();
  bar.Start("profile", ProfileSteps(space, po));
  ProfileReport report;
  NAS_ASSIGN_OR_RETURN(LatencyTable t,
                       ProfileSpace(space, po, [&](int i, int, const std::string&) {
                         bar.Update(i, absl::StrCat("layers and networks on ", po.device));
                       }, &report));
  *profile_seconds = Seconds(t0);
  bar.Finish(absl::StrCat(t.size(), " layers timed", CalibrationSummary(t)));
  if (std::string w = ProfileWarning(report); !w.empty()) bar.Log("latency table: " + w);
  SetThreads(o.threads);
  if (MakeDir(cache_dir).ok()) {
    absl::Status s = t.Save(cache);
    if (!s.ok()) bar.Log(absl::StrCat("latency table: not cached: ", s.message()));
  }
  return t;
}

std::string Pct(double a) { return absl::StrFormat("%.1f%%", 100 * a); }

// Progress position after the round that ended phase `shown`: its whole length.
int64_t PhaseLength(const SearchDriver& d, SearchDriver::Phase shown, const SearchOptions& o) {
  int epochs = shown == SearchDriver::Phase::kWarmup ? o.warmup_epochs : o.search_epochs;
  return d.plan().train_batches * epochs;
}

absl::Status SaveModule(torch::nn::Module& m, const std::string& path) {
  return TorchRun(
      [&] {
        torch::serialize::OutputArchive archive;
        m.save(archive);
        archive.save_to(path);
      },
      "saving " + path);
}

absl::Status LoadModule(torch::nn::Module& m, const std::string& path) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (const auto& p : m.named_parameters()) expected[p.key()] = p.value().sizes().vec();
  for (const auto& b : m.named_buffers()) expected[b.key()] = b.value().sizes().vec();
  NAS_RETURN_IF_ERROR(TorchRun(
      [&] {
        torch::serialize::InputArchive archive;
        archive.load_from(path);
        m.load(archive);
      },
      "loading weights " + path));
  // LibTorch's load replaces tensors without checking shapes: do it here.
  auto check = [&](const std::string& name, const torch::Tensor& t) -> absl::Status {
    auto it = expected.find(name);
    if (it != expected.end() && it->second != t.sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "loading weights ", path, ": ", name, " has shape ", c10::str(t.sizes()),
          " but the architecture expects ", c10::str(c10::IntArrayRef(it->second)),
          " (weights of another network?)"));
    }
    return absl::OkStatus();
  };
  for (const auto& p : m.named_parameters()) NAS_RETURN_IF_ERROR(check(p.key(), p.value()));
  for (const auto& b : m.named_buffers()) NAS_RETURN_IF_ERROR(check(b.key(), b.value()));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const JobData>> LoadData(const std::string& dataset,
                                                        const std::string& dir,
                                                        int64_t train_subset, int64_t test_subset,
                                                        int64_t valid_size, uint64_t seed,
                                                        const ImageOptions& images,
                                                        const SearchSpace& space,
                                                        ProgressBar& bar) {
  JobDataOptions jo;
  jo.dataset = dataset;
  jo.dir = dir;
  jo.train_subset = train_subset;
  jo.test_subset = test_subset;
  jo.valid_size = valid_size;
  jo.split_seed = seed;
  jo.stream_images = images.stream_images;
  jo.skip_bad_files = images.skip_bad_files;
  jo.loader_threads = images.loader_threads;
  jo.log = [&bar](const std::string& line) { bar.Log(line); };
  return JobData::Load(jo, space);
}

// Trains `config` from scratch and fills the accuracy part of a report.
NetworkReport TrainAndEvaluate(const NetworkConfig& config, const std::string& label,
                               const JobData& data, const TrainOptions& to, ProgressBar& bar,
                               Network* out) {
  auto t0 = std::chrono::steady_clock::now();
  torch::manual_seed(to.seed);
  Network net(config);
  bar.Start(label, 0);
  int64_t last_total = 0;
  std::unique_ptr<BatchSource> train = data.FinalTrain(to.batch_size, to.seed, to.augment);
  TrainNetwork(net, *train, to, [&](const TrainProgress& p) {
    if (last_total == 0) {
      last_total = p.total_steps;
      bar.Start(label, p.total_steps);
    }
    bar.Update(p.step, absl::StrFormat("epoch %d/%d loss %.3f acc %s", p.epoch + 1, to.epochs,
                                       p.loss, Pct(p.accuracy)));
  });
  NetworkReport r;
  r.train_seconds = Seconds(t0);
  std::unique_ptr<BatchSource> test = data.Test(kEvalBatchSize);
  EvalResult ev = Evaluate([&](const torch::Tensor& x) { return net->forward(x); }, *test);
  r.test_accuracy = ev.accuracy;
  r.test_loss = ev.loss;
  r.parameters = CountParameters(*net);
  r.macs = config.Macs();
  bar.Finish(absl::StrFormat("test acc %s", Pct(ev.accuracy)));
  *out = net;
  return r;
}

Json NetworkJson(const NetworkReport& r) {
  return {{"architecture", r.architecture},   {"test_accuracy", r.test_accuracy},
          {"test_loss", r.test_loss},         {"predicted_latency_ms", r.predicted_ms},
          {"measured_latency_ms", r.measured_ms}, {"measured_latency_std_ms", r.measured_std_ms},
          {"parameters", r.parameters},       {"macs", r.macs},
          {"train_seconds", r.train_seconds}};
}

}  // namespace


absl::StatusOr<std::string> EnsureLatencyTable(const SearchOptions& o) {
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Load(o.space));
  NAS_RETURN_IF_ERROR(MakeDir(o.out_dir));
  SetThreads(o.threads);
  ProgressBar bar(o.progress);
  double seconds = 0;
  NAS_ASSIGN_OR_RETURN(LatencyTable table, ObtainTable(space, o, bar, &seconds));
  std::string path = o.out_dir + "/profiled_table.json";
  NAS_RETURN_IF_ERROR(table.Save(path));
  return path;
}

absl::StatusOr<SearchReport> RunSearch(const SearchOptions& o) {
  auto t_start = std::chrono::steady_clock::now();
  if (o.warmup_epochs < 0 || o.search_epochs < 0 || o.train_epochs < 0) {
    return absl::InvalidArgumentError("epochs: must be >= 0");
  }
  if (o.batch_size < 1) return absl::InvalidArgumentError("batch_size: must be >= 1");
  if (o.arch_every < 1) return absl::InvalidArgumentError("arch_every: must be >= 1");
  if (o.arch_algo != "gradient" && o.arch_algo != "rl") {
    return absl::InvalidArgumentError(
        absl::StrCat("arch_algo: \"", o.arch_algo, "\" is not gradient or rl"));
  }
  if (o.valid_size <= 0) return absl::InvalidArgumentError("valid_size: must be positive");
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Load(o.space));
  NAS_RETURN_IF_ERROR(MakeDir(o.out_dir));
  SetThreads(o.threads);
  ProgressBar bar(o.progress);
  SearchReport report;
  report.out_dir = o.out_dir;

  // Latency: table and model.
  NAS_ASSIGN_OR_RETURN(LatencyTable table, ObtainTable(space, o, bar, &report.profile_seconds));
  NAS_ASSIGN_OR_RETURN(LatencyModel latency, BuildLatencyModel(space, table));
  HardwareLossOptions loss = o.loss;
  {
    ArchParams uniform(space.CandidatesPerEdge());
    if (loss.target_ms <= 0) loss.target_ms = o.target_fraction * latency.Expected(uniform);
    report.target_ms = loss.target_ms;
  }
  NAS_RETURN_IF_ERROR(loss.Validate());

  NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data,
                       LoadData(o.dataset, o.data_dir, o.train_subset, o.test_subset,
                                o.valid_size, o.seed, o.images, space, bar));
  bar.Log(absl::StrFormat("search: space %s (%d edges), %s: %s, target %.3f ms (%s), device %s",
                          space.name(), space.num_edges(), o.dataset, data->Describe(),
                          loss.target_ms, HardwareLossOptions::TypeName(loss.type),
                          table.info().device));

  NAS_RETURN_IF_ERROR(WriteFile(o.out_dir + "/search_space.json", space.ToJson()));
  NAS_RETURN_IF_ERROR(table.Save(o.out_dir + "/latency_table.json"));

  SearchPlan plan = SearchPlan::ForSpace(space);
  plan.warmup_epochs = o.warmup_epochs;
  plan.search_epochs = o.search_epochs;
  plan.train_batches = data->train_size() / o.batch_size;
  plan.valid_batches = data->valid_size() / o.batch_size;
  plan.arch_every = o.arch_every;
  plan.search_lr = o.search_lr;
  plan.arch_algo = o.arch_algo;
  plan.adam = o.arch_adam;
  plan.loss = loss;
  plan.latency = latency;
  plan.seed = o.seed;
  NAS_ASSIGN_OR_RETURN(SearchDriver driver, SearchDriver::Create(plan));
  torch::manual_seed(o.seed);

  auto t_search = std::chrono::steady_clock::now();
  std::vector<SampledPath> sampled;  // evaluated with inherited weights (report.html)
  std::vector<double> sampled_accuracy;
  double data_wait_seconds = 0;  // the search's steps waiting for a streamed folder's batches
  absl::Status search_status = TorchRun(
      [&] {
        SuperNet net(space);
        PathSgd sgd(SgdOptions{});
        std::unique_ptr<BatchSource> train_batches = data->SearchTrain(
            o.batch_size, driver.train_seed(), Augment{o.augment_pad, o.augment_hflip});
        std::unique_ptr<BatchSource> valid_batches =
            data->SearchValid(o.batch_size, driver.valid_seed());
        std::ofstream history(o.out_dir + "/alpha_history.jsonl");
        history << driver.HistoryLine("init", 0, 0) << "\n";
        SearchDriver::Phase shown = SearchDriver::Phase::kDone;
        while (!driver.done()) {
          if (driver.phase() != shown) {
            if (shown != SearchDriver::Phase::kDone) bar.Finish(absl::StrFormat(
                "loss %.3f acc %s", driver.ema_loss(), Pct(driver.ema_accuracy())));
            shown = driver.phase();
            bar.Start(SearchDriver::PhaseName(shown), driver.phase_total_steps());
          }
          int epochs = shown == SearchDriver::Phase::kWarmup ? o.warmup_epochs : o.search_epochs;
          int epoch = driver.epoch();
          std::vector<WeightTaskSpec> tasks = driver.PlanWeightTasks(1);
          std::vector<WeightTaskResult> results;
          for (const WeightTaskSpec& t : tasks) {
            results.push_back(RunWeightTask(net, sgd, *train_batches, t, o.label_smoothing));
          }
          report.weight_steps += static_cast<int64_t>(tasks.size());
          absl::Status applied = driver.ApplyWeightResults(results);
          TORCH_CHECK(applied.ok(), std::string(applied.message()));
          for (const ArchTaskSpec& a : driver.PlanArchTasks()) {
            ArchTaskResult r = RunArchTask(net, *valid_batches, a);
            absl::StatusOr<std::string> line = driver.ApplyArchResult(a, r);
            TORCH_CHECK(line.ok(), std::string(line.status().message()));
            history << *line << "\n";
            ++report.arch_steps;
          }
          driver.FinishRound();
          int64_t step = driver.phase() == shown ? driver.phase_steps()
                                                 : PhaseLength(driver, shown, o);
          if (shown == SearchDriver::Phase::kWarmup) {
            bar.Update(step, absl::StrFormat("epoch %d/%d loss %.3f acc %s", epoch + 1, epochs,
                                             driver.ema_loss(), Pct(driver.ema_accuracy())));
          } else {
            bar.Update(step, absl::StrFormat(
                                 "epoch %d/%d loss %.3f acc %s val %s E[lat] %.3fms H %.2f",
                                 epoch + 1, epochs, driver.ema_loss(),
                                 Pct(driver.ema_accuracy()),
                                 report.arch_steps > 0 ? Pct(driver.last_arch_accuracy())
                                                       : std::string("-"),
                                 driver.ExpectedLatency(), driver.alpha().MeanEntropy()));
          }
        }
        if (shown != SearchDriver::Phase::kDone) {
          bar.Finish(absl::StrFormat("E[lat] %.3fms H %.2f", driver.ExpectedLatency(),
                                     driver.alpha().MeanEntropy()));
        }
        history << driver.HistoryLine("final", driver.ema_loss(), driver.last_arch_accuracy())
                << "\n";
        // The search's time ends here (as the distributed search's ends with its last round):
        // evaluating the sampled paths is the report's, not the search's.
        report.search_seconds = Seconds(t_search);
        data_wait_seconds = train_batches->wait_seconds() + valid_batches->wait_seconds();
        if (o.sampled_paths >= 0) {
          sampled = PathsToEvaluate(space, driver.alpha(), o.sampled_paths, o.seed);
          std::vector<std::vector<int>> choices;
          for (const SampledPath& p : sampled) choices.push_back(p.choices);
          std::unique_ptr<BatchSource> valid_in_order = data->ValidInOrder(o.batch_size);
          sampled_accuracy = EvaluatePaths(net, choices, *valid_in_order, torch::kCPU);
        }
      },
      "search");
  NAS_RETURN_IF_ERROR(search_status);
  const ArchParams& alpha = driver.alpha();
  report.final_expected_ms = latency.Expected(alpha);
  report.final_entropy = alpha.MeanEntropy();

  // Derivation: argmax p per edge.
  Architecture arch{space.name(), alpha.Argmax()};
  report.choices = arch.choices;
  NAS_ASSIGN_OR_RETURN(NetworkConfig derived, space.Derive(arch.choices));
  NAS_RETURN_IF_ERROR(WriteFile(o.out_dir + "/architecture.json", arch.ToJson(space)));
  NAS_RETURN_IF_ERROR(WriteFile(o.out_dir + "/network.json", derived.ToReferenceJson()));
  bar.Log("derived: " + arch.ToString(space));

  TrainOptions to;
  to.epochs = o.train_epochs;
  to.batch_size = o.batch_size;
  to.lr = o.train_lr;
  to.label_smoothing = o.label_smoothing;
  to.augment = Augment{o.augment_pad, o.augment_hflip};
  to.seed = o.seed + 17;
  ProfileOptions po = o.profile;
  if (po.threads <= 0) po.threads = at::get_num_threads();

  auto finish_network = [&](const std::vector<int>& choices, const NetworkConfig& config,
                            const std::string& label, const std::string& weights_file,
                            NetworkReport* r) -> absl::Status {
    Network net(nullptr);
    absl::Status s = TorchRun(
        [&] {
          *r = TrainAndEvaluate(config, label, *data, to, bar, &net);
        },
        "training " + label);
    NAS_RETURN_IF_ERROR(s);
    r->architecture = Architecture{space.name(), choices}.ToString(space);
    r->predicted_ms = latency.PathLatency(choices);
    NAS_ASSIGN_OR_RETURN(LatencyEntry m, MeasureNetwork(config, po));
    SetThreads(o.threads);
    r->measured_ms = m.mean_ms;
    r->measured_std_ms = std::sqrt(m.var);
    NAS_RETURN_IF_ERROR(SaveModule(*net, o.out_dir + "/" + weights_file));
    // The same network as ONNX next to its weights (<label>.onnx), for other runtimes.
    OnnxExportOptions onnx;
    onnx.space = space.name();
    onnx.architecture = r->architecture;
    onnx.input_mean = data->mean();
    onnx.input_std = data->std();
    onnx.weights_source = weights_file;
    return WriteOnnxModel(config, *net, onnx, o.out_dir + "/" + label + ".onnx");
  };
  NAS_RETURN_IF_ERROR(
      finish_network(arch.choices, derived, "derived", "derived.pt", &report.derived));
  if (o.baseline) {
    std::vector<int> largest = space.LargestChoices();
    NAS_ASSIGN_OR_RETURN(NetworkConfig base, space.Derive(largest));
    NAS_RETURN_IF_ERROR(finish_network(largest, base, "baseline", "baseline.pt", &report.baseline));
    report.has_baseline = true;
  }
  report.total_seconds = Seconds(t_start);

  Json rj = {{"space", space.name()},
             {"dataset", o.dataset},
             {"device", table.info().device},
             {"runtime", table.info().runtime},
             {"loss", HardwareLossOptions::TypeName(loss.type)},
             {"target_latency_ms", report.target_ms},
             {"final_expected_latency_ms", report.final_expected_ms},
             {"final_entropy", report.final_entropy},
             {"final_probabilities", alpha.AllProbs()},
             {"weight_steps", report.weight_steps},
             {"arch_steps", report.arch_steps},
             {"arch_algo", o.arch_algo},
             {"seed", o.seed},
             {"epochs", {{"warmup", o.warmup_epochs}, {"search", o.search_epochs},
                         {"train", o.train_epochs}}},
             {"seconds", {{"profile", report.profile_seconds}, {"search", report.search_seconds},
                          {"total", report.total_seconds}, {"data_wait", data_wait_seconds}}},
             {"derived", NetworkJson(report.derived)}};
  if (report.has_baseline) rj["baseline"] = NetworkJson(report.baseline);
  rj["data"] = {{"train", data->train_size()},
                {"valid", data->valid_size()},
                {"test", data->test_size()},
                {"final_train", data->train_full_size()},
                {"streamed", data->streamed()},
                {"bad_files_skipped", data->bad_files()}};
  if (!sampled.empty()) {
    rj["sampled_paths"] = SampledPathsJson(space, latency, sampled, sampled_accuracy,
                                           data->valid_size(), o.batch_size);
  }
  NAS_RETURN_IF_ERROR(WriteFile(o.out_dir + "/report.json", rj.dump(2)));

  std::string md = absl::StrFormat(
      "# Search report\n\nspace `%s`, data `%s`, device `%s` (%s), loss %s, target %.3f ms, "
      "seed %d\n\n| network | test acc | predicted ms | measured ms | params | MACs |\n"
      "|---|---|---|---|---|---|\n",
      space.name(), o.dataset, table.info().device, table.info().runtime,
      HardwareLossOptions::TypeName(loss.type), report.target_ms, o.seed);
  auto row = [&](const std::string& name, const NetworkReport& r) {
    absl::StrAppendFormat(&md, "| %s | %.2f%% | %.3f | %.3f +/- %.3f | %d | %d |\n", name,
                          100 * r.test_accuracy, r.predicted_ms, r.measured_ms,
                          r.measured_std_ms, r.parameters, r.macs);
  };
  row("derived", report.derived);
  if (report.has_baseline) row("baseline (largest)", report.baseline);
  absl::StrAppendFormat(&md, "\nderived: %s\n\ntime: profile %s, search %s, total %s\n",
                        report.derived.architecture, FormatDuration(report.profile_seconds),
                        FormatDuration(report.search_seconds),
                        FormatDuration(report.total_seconds));
  NAS_RETURN_IF_ERROR(WriteFile(o.out_dir + "/report.md", md));
  NAS_RETURN_IF_ERROR(WriteReportHtml(o.out_dir, "local search"));
  bar.Log(md);
  return report;
}

namespace {

// An architecture file: our {"space", "choices"} JSON, or a reference network config.
absl::StatusOr<std::pair<NetworkConfig, std::string>> LoadArchitecture(const SearchSpace& space,
                                                                       const std::string& path) {
  NAS_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(text, path));
  if (j.is_object() && j.contains("blocks")) {
    auto net = NetworkConfig::FromReferenceJson(text, space.input_height(), space.input_width());
    if (!net.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", net.status().message()));
    return std::make_pair(*net, std::string("reference config ") + path);
  }
  auto arch = Architecture::FromJson(text, space);
  if (!arch.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", arch.status().message()));
  NAS_ASSIGN_OR_RETURN(NetworkConfig net, space.Derive(arch->choices));
  return std::make_pair(net, arch->ToString(space));
}

}  // namespace

absl::StatusOr<NetworkReport> RunTrain(const TrainCommandOptions& o) {
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Load(o.space));
  NAS_ASSIGN_OR_RETURN(auto loaded, LoadArchitecture(space, o.architecture));
  NAS_RETURN_IF_ERROR(MakeDir(o.out_dir));
  SetThreads(o.threads);
  ProgressBar bar(o.progress);
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data,
                       LoadData(o.dataset, o.data_dir, o.train_subset, o.test_subset, 0, o.seed,
                                o.images, space, bar));
  TrainOptions to;
  to.epochs = o.epochs;
  to.batch_size = o.batch_size;
  to.lr = o.lr;
  to.augment = Augment{2, true};
  to.seed = o.seed;
  NetworkReport r;
  Network net(nullptr);
  NAS_RETURN_IF_ERROR(TorchRun(
      [&] { r = TrainAndEvaluate(loaded.first, "train", *data, to, bar, &net); },
      "training"));
  r.architecture = loaded.second;
  NAS_RETURN_IF_ERROR(SaveModule(*net, o.out_dir + "/weights.pt"));
  NAS_RETURN_IF_ERROR(WriteFile(o.out_dir + "/network.json", loaded.first.ToReferenceJson()));
  NAS_RETURN_IF_ERROR(WriteFile(o.out_dir + "/report.json", NetworkJson(r).dump(2)));
  return r;
}

absl::StatusOr<NetworkReport> RunEval(const EvalCommandOptions& o) {
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Load(o.space));
  NAS_ASSIGN_OR_RETURN(auto loaded, LoadArchitecture(space, o.architecture));
  SetThreads(o.threads);
  ProgressBar bar(false);
  // The test set normalised as the network's training data was (search.cc's LoadData).
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data,
                       LoadData(o.dataset, o.data_dir, 0, o.test_subset, 0, 0, o.images, space,
                                bar));
  Network net(loaded.first);
  NAS_RETURN_IF_ERROR(LoadModule(*net, o.weights));
  NetworkReport r;
  NAS_RETURN_IF_ERROR(TorchRun(
      [&] {
        net->eval();
        std::unique_ptr<BatchSource> test = data->Test(kEvalBatchSize);
        EvalResult ev = Evaluate([&](const torch::Tensor& x) { return net->forward(x); }, *test);
        r.test_accuracy = ev.accuracy;
        r.test_loss = ev.loss;
        r.parameters = CountParameters(*net);
      },
      "evaluation"));
  r.architecture = loaded.second;
  r.macs = loaded.first.Macs();
  return r;
}

absl::StatusOr<ExportReport> RunExport(const ExportCommandOptions& o) {
  if (o.architecture.empty()) return absl::InvalidArgumentError("--arch: required");
  if (o.weights.empty()) return absl::InvalidArgumentError("--weights: required");
  if (o.out.empty()) return absl::InvalidArgumentError("--out: required");
  std::string space_source = o.space;
  if (!o.space_given) {
    // A result directory keeps the space it was searched in next to its architecture.
    fs::path beside = fs::path(o.architecture).parent_path() / "search_space.json";
    std::error_code ec;
    if (fs::is_regular_file(beside, ec)) space_source = beside.string();
  }
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Load(space_source));
  NAS_ASSIGN_OR_RETURN(auto loaded, LoadArchitecture(space, o.architecture));
  OnnxExportOptions eo;
  eo.fold_bn = o.fold_bn;
  eo.space = space.name();
  eo.architecture = loaded.second;
  eo.weights_source = fs::path(o.weights).filename().string();
  NAS_ASSIGN_OR_RETURN(std::string bytes, OnnxFromWeightsFile(loaded.first, o.weights, eo));
  NAS_RETURN_IF_ERROR(WriteOnnxBytes(bytes, o.out));
  ExportReport r;
  r.out = o.out;
  r.architecture = loaded.second;
  r.space = space.name();
  r.bytes = static_cast<int64_t>(bytes.size());
  r.parameters = loaded.first.ParameterCount();
  return r;
}

absl::StatusOr<std::string> RunProfile(const std::string& space_name, const ProfileOptions& po,
                                       const std::string& out_path) {
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::Load(space_name));
  ProgressBar bar(true);
  bar.Start("profile", ProfileSteps(space, po));
  ProfileReport report;
  NAS_ASSIGN_OR_RETURN(LatencyTable t, ProfileSpace(space, po, [&](int i, int, const std::string&) {
                         bar.Update(i, "layers, then networks");
                       }, &report));
  bar.Finish(absl::StrCat(t.size(), " layers", CalibrationSummary(t)));
  if (std::string w = ProfileWarning(report); !w.empty()) bar.Log(w);
  NAS_RETURN_IF_ERROR(t.Save(out_path));
  return out_path;
}

}  // namespace nas
