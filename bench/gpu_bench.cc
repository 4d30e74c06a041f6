// The GPU checks' benchmarks that need no server (issue 21): LibTorch only, no gRPC, so that
// scripts/gpu_check.sh builds it on a GPU machine that has PyTorch but no gRPC. Parts
// (--parts, in this order):
//
//  search       One worker's search: the single-process search loop (core/search_driver.h:
//               warm-up, then weight steps with an arch step every k-th) with the supernet on
//               --device, weight and arch tasks through RunWeightTask / RunArchTask as a worker
//               runs them; images/s of the weight steps (arch steps' time included), and the
//               same search with the supernet on the CPU (--cpu_compare) for the ratio.
//  calibration  The latency predictor's calibration target on this machine's CPU cores: a table
//               of the space profiled here (layers + calibration networks), then --samples
//               networks sampled uniformly (another seed), predicted (layer sum + the table's
//               calibration) against measured end to end; the share within +-10% (target 95%).
//  cross_device The paper's cross-device finding: tables of the space profiled on the GPU and on
//               the CPU, then the same search (same seed, data, device) under each; the derived
//               networks' kernel sizes, expand ratios and depth per stage.
//
//   gpu_bench --parts=search,calibration,cross_device --device=cuda --data_dir=DIR
//             --out_dir=DIR   (tables and a results.md there; markdown on stdout)
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/arch_params.h"
#include "core/rng.h"
#include "core/search_driver.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "worker/data.h"
#include "worker/ops.h"
#include "worker/profiler.h"
#include "worker/runtime.h"
#include "worker/task_runner.h"
#include "worker/tasks.h"
#include "worker/torch_status.h"
#include "worker/train.h"

ABSL_FLAG(std::string, parts, "search,calibration,cross_device", "comma-separated parts to run");
ABSL_FLAG(std::string, device, "cuda", "where the search runs: cpu, cuda or cuda:N");
ABSL_FLAG(bool, cpu_compare, true, "search: also run the same search on the CPU");
ABSL_FLAG(std::string, space, "fashion-mnist", "search space (preset or JSON file)");
ABSL_FLAG(std::string, dataset, "fashion-mnist", "data set");
ABSL_FLAG(std::string, data_dir, "", "data directory (default: the data set's)");
ABSL_FLAG(int64_t, train_subset, 5000, "training images (class-balanced; 0: all)");
ABSL_FLAG(int64_t, valid_size, 1000, "held-out validation images");
ABSL_FLAG(int, batch, 128, "batch size");
ABSL_FLAG(int, warmup_epochs, 1, "search warm-up epochs");
ABSL_FLAG(int, search_epochs, 3, "search epochs");
ABSL_FLAG(int, arch_every, 5, "an arch step after every k-th weight step");
ABSL_FLAG(int, threads, 0, "intra-op threads (0: all cores)");
ABSL_FLAG(uint64_t, seed, 0, "seed of the searches");
ABSL_FLAG(int, samples, 40, "calibration: sampled networks measured");
ABSL_FLAG(int, repeats, 50, "profiling: timed runs per layer or network");
ABSL_FLAG(int, passes, 3, "profiling: interleaved passes");
ABSL_FLAG(int, calibration_networks, 20, "profiling: networks fitted for the calibration");
ABSL_FLAG(bool, deterministic, false, "cuDNN deterministic, no autotuning");
ABSL_FLAG(std::string, gpu_backend, "cuda",
          "cross_device: the backend of the 'GPU' table (cpu only for a dry run of the code)");
ABSL_FLAG(std::string, out_dir, "gpu_bench_out", "where tables and results.md go");

namespace nas {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string g_results;  // everything printed, also written to results.md

void Out(const std::string& text) {
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  g_results += text;
}

struct SearchRun {
  std::vector<int> choices;
  int64_t weight_steps = 0, arch_steps = 0;
  double seconds = 0;
  double images_per_s = 0;
  double expected_ms = 0, target_ms = 0;
};

struct Data {
  DataSplit split;
};

absl::StatusOr<Data> LoadSearchData(const SearchSpace& space) {
  Data d;
  NAS_ASSIGN_OR_RETURN(DataSet train, LoadDataSet(absl::GetFlag(FLAGS_dataset),
                                                  absl::GetFlag(FLAGS_data_dir), true));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (absl::GetFlag(FLAGS_train_subset) > 0) {
    train = BalancedSubset(train, absl::GetFlag(FLAGS_train_subset), seed);
  }
  NAS_ASSIGN_OR_RETURN(d.split, SplitValidation(train, absl::GetFlag(FLAGS_valid_size), seed));
  if (train.channels() != space.input_channels() || train.height() != space.input_height()) {
    return absl::InvalidArgumentError("the data set's images do not fit the space");
  }
  return d;
}

// The single-process search loop (worker/search.cc RunSearch, without the final training) with
// the supernet on `device`.
absl::StatusOr<SearchRun> Search(const SearchSpace& space, const LatencyTable& table,
                                 const Data& data, const torch::Device& device) {
  NAS_ASSIGN_OR_RETURN(LatencyModel latency, BuildLatencyModel(space, table));
  const int batch = absl::GetFlag(FLAGS_batch);
  SearchPlan plan = SearchPlan::ForSpace(space);
  plan.warmup_epochs = absl::GetFlag(FLAGS_warmup_epochs);
  plan.search_epochs = absl::GetFlag(FLAGS_search_epochs);
  plan.train_batches = data.split.train.size() / batch;
  plan.valid_batches = data.split.valid.size() / batch;
  plan.arch_every = absl::GetFlag(FLAGS_arch_every);
  plan.seed = absl::GetFlag(FLAGS_seed);
  plan.latency = latency;
  HardwareLossOptions loss{HardwareLossOptions::Type::kAddLinear};
  ArchParams uniform(space.CandidatesPerEdge());
  loss.target_ms = 0.9 * latency.Expected(uniform);
  plan.loss = loss;
  NAS_ASSIGN_OR_RETURN(SearchDriver driver, SearchDriver::Create(plan));
  SearchRun run;
  run.target_ms = loss.target_ms;
  absl::Status s = TorchRun(
      [&] {
        torch::manual_seed(plan.seed);
        SuperNet net(space);
        net->to(device);
        PathSgd sgd(SgdOptions{});
        Batcher train(data.split.train, batch, driver.train_seed(), Augment{2, true});
        Batcher valid(data.split.valid, batch, driver.valid_seed(), {});
        auto t0 = std::chrono::steady_clock::now();
        while (!driver.done()) {
          std::vector<WeightTaskResult> results;
          for (const WeightTaskSpec& t : driver.PlanWeightTasks(1)) {
            results.push_back(RunWeightTask(net, sgd, train, t, 0.1, device));
            run.weight_steps += static_cast<int64_t>(t.batches.size());
          }
          absl::Status applied = driver.ApplyWeightResults(results);
          TORCH_CHECK(applied.ok(), std::string(applied.message()));
          for (const ArchTaskSpec& a : driver.PlanArchTasks()) {
            ArchTaskResult r = RunArchTask(net, valid, a, device);
            TORCH_CHECK(driver.ApplyArchResult(a, r).ok(), "arch result");
            ++run.arch_steps;
          }
          driver.FinishRound();
        }
        if (device.is_cuda()) torch::cuda::synchronize();
        run.seconds = SecondsSince(t0);
      },
      "search");
  NAS_RETURN_IF_ERROR(s);
  run.choices = driver.alpha().Argmax();
  run.expected_ms = latency.Expected(driver.alpha());
  run.images_per_s = run.weight_steps * batch / std::max(run.seconds, 1e-9);
  return run;
}

// Kernel sizes / expand ratios per edge and depth per stage (edges grouped by stage: a stage
// starts where the channels change or the stride is not 1).
std::string Describe(const SearchSpace& space, const std::vector<int>& choices) {
  std::vector<std::string> blocks;
  std::vector<int> depths;
  int depth = 0;
  for (int e = 0; e < space.num_edges(); ++e) {
    const EdgeSpec& edge = space.edges()[e];
    if (e > 0 && !edge.shortcut) {
      depths.push_back(depth);
      depth = 0;
    }
    const Candidate& c = edge.candidates[choices[e]];
    if (c.zero) {
      blocks.push_back("skip");
    } else {
      ++depth;
      blocks.push_back(c.Name());
    }
  }
  depths.push_back(depth);
  return absl::StrCat(absl::StrJoin(blocks, " "), " | searchable depth per stage ",
                      absl::StrJoin(depths, "/"));
}

ProfileOptions Profiling(const std::string& backend) {
  ProfileOptions po;
  po.backend = backend;
  po.device = backend == "cuda" ? "" : "gpu-machine-cpu";
  po.threads = absl::GetFlag(FLAGS_threads);
  po.repeats = absl::GetFlag(FLAGS_repeats);
  po.passes = absl::GetFlag(FLAGS_passes);
  po.calibration_networks = absl::GetFlag(FLAGS_calibration_networks);
  po.seed = 1;
  return po;
}

absl::StatusOr<LatencyTable> Profile(const SearchSpace& space, const ProfileOptions& po,
                                     const std::string& path) {
  auto t0 = std::chrono::steady_clock::now();
  ProfileReport report;
  NAS_ASSIGN_OR_RETURN(LatencyTable table, ProfileSpace(space, po, nullptr, &report));
  NAS_RETURN_IF_ERROR(table.Save(path));
  Out(absl::StrFormat("profiled %s: device %s, %s, %d keys in %.1f s%s -> %s\n\n",
                      space.name(), table.info().device, table.info().runtime,
                      static_cast<int>(table.entries().size()), SecondsSince(t0),
                      ProfileWarning(report).empty() ? "" : " (" + ProfileWarning(report) + ")",
                      path));
  return table;
}

absl::Status SearchPart(const SearchSpace& space, const torch::Device& device,
                        const std::string& out_dir) {
  NAS_ASSIGN_OR_RETURN(Data data, LoadSearchData(space));
  ProfileOptions po = Profiling("cpu");
  po.repeats = std::min(po.repeats, 10);
  po.passes = 1;
  po.calibration_networks = 0;
  NAS_ASSIGN_OR_RETURN(LatencyTable table, Profile(space, po, out_dir + "/search_table.json"));
  Out(absl::StrFormat(
      "## One worker's search: images/s (space %s, %d train images, batch %d, %d+%d epochs)\n\n"
      "| device | weight steps | arch steps | seconds | images/s |\n|---|---|---|---|---|\n",
      space.name(), static_cast<int>(data.split.train.size()), absl::GetFlag(FLAGS_batch),
      absl::GetFlag(FLAGS_warmup_epochs), absl::GetFlag(FLAGS_search_epochs)));
  std::vector<torch::Device> devices = {device};
  if (device.is_cuda() && absl::GetFlag(FLAGS_cpu_compare)) devices.push_back(torch::kCPU);
  std::vector<SearchRun> runs;
  for (const torch::Device& d : devices) {
    NAS_ASSIGN_OR_RETURN(SearchRun r, Search(space, table, data, d));
    Out(absl::StrFormat("| %s | %d | %d | %.2f | %.0f |\n", DeviceDescription(d),
                        static_cast<int>(r.weight_steps), static_cast<int>(r.arch_steps),
                        r.seconds, r.images_per_s));
    runs.push_back(r);
  }
  if (runs.size() == 2) {
    Out(absl::StrFormat("\nGPU / CPU images/s: %.2fx; the same derived network: %s\n",
                        runs[0].images_per_s / runs[1].images_per_s,
                        runs[0].choices == runs[1].choices ? "yes" : "no"));
  }
  Out("\n");
  return absl::OkStatus();
}

absl::Status CalibrationPart(const SearchSpace& space, const std::string& out_dir) {
  ProfileOptions po = Profiling("cpu");
  NAS_ASSIGN_OR_RETURN(LatencyTable table, Profile(space, po, out_dir + "/cpu_table.json"));
  Rng rng(MixSeed(absl::GetFlag(FLAGS_seed), 0x5eed));
  std::vector<NetworkConfig> nets;
  std::vector<double> predicted;
  for (int i = 0; i < absl::GetFlag(FLAGS_samples); ++i) {
    std::vector<int> choices;
    for (int n : space.CandidatesPerEdge()) {
      choices.push_back(static_cast<int>(rng.Below(static_cast<uint64_t>(n))));
    }
    NAS_ASSIGN_OR_RETURN(NetworkConfig net, space.Derive(choices));
    NAS_ASSIGN_OR_RETURN(double ms, table.PredictNetwork(net.LayerKeys()));
    nets.push_back(net);
    predicted.push_back(ms);
  }
  std::vector<TimingReport> reports;
  NAS_ASSIGN_OR_RETURN(std::vector<LatencyEntry> measured, MeasureNetworks(nets, po, &reports));
  int within10 = 0, within5 = 0;
  double mape = 0;
  for (size_t i = 0; i < nets.size(); ++i) {
    double err = (predicted[i] - measured[i].mean_ms) / measured[i].mean_ms;
    within10 += std::abs(err) <= 0.10;
    within5 += std::abs(err) <= 0.05;
    mape += std::abs(err);
  }
  const double n = static_cast<double>(nets.size());
  Out(absl::StrFormat(
      "## Latency calibration on this machine's CPU (%s)\n\n"
      "| networks | within +-10%% | within +-5%% | MAPE | target |\n|---|---|---|---|---|\n"
      "| %d | %.1f%% | %.1f%% | %.2f%% | >= 95%% within +-10%%: %s |\n\n",
      table.info().runtime, static_cast<int>(nets.size()), 100 * within10 / n,
      100 * within5 / n, 100 * mape / n, within10 >= 0.95 * n ? "met" : "NOT met"));
  return absl::OkStatus();
}

absl::Status CrossDevicePart(const SearchSpace& space, const torch::Device& device,
                             const std::string& out_dir) {
  const std::string backend = absl::GetFlag(FLAGS_gpu_backend);
  if (backend == "cuda" && !device.is_cuda()) {
    Out("## Cross-device search\n\nskipped: --device is not CUDA (no GPU table to profile)\n\n");
    return absl::OkStatus();
  }
  ProfileOptions gpu_options = Profiling(backend);
  if (backend != "cuda") gpu_options.device = "dry-run-stand-in-for-a-gpu";
  NAS_ASSIGN_OR_RETURN(LatencyTable gpu, Profile(space, gpu_options, out_dir + "/gpu_table.json"));
  LatencyTable cpu;
  if (std::filesystem::exists(out_dir + "/cpu_table.json")) {
    NAS_ASSIGN_OR_RETURN(cpu, LatencyTable::Load(out_dir + "/cpu_table.json"));
  } else {
    NAS_ASSIGN_OR_RETURN(cpu, Profile(space, Profiling("cpu"), out_dir + "/cpu_table.json"));
  }
  NAS_ASSIGN_OR_RETURN(Data data, LoadSearchData(space));
  Out("## Cross-device search: the same search under a GPU table and a CPU table\n\n"
      "| table | target ms | final E[lat] ms | derived network |\n|---|---|---|---|\n");
  std::vector<std::vector<int>> picks;
  for (const LatencyTable* t : {&gpu, &cpu}) {
    NAS_ASSIGN_OR_RETURN(SearchRun r, Search(space, *t, data, device));
    Out(absl::StrFormat("| %s | %.4f | %.4f | %s |\n", t->info().device, r.target_ms,
                        r.expected_ms, Describe(space, r.choices)));
    picks.push_back(r.choices);
  }
  Out(absl::StrFormat("\nThe two tables derive %s networks.\n\n",
                      picks[0] == picks[1] ? "the SAME" : "different"));
  return absl::OkStatus();
}

}  // namespace
}  // namespace nas

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  nas::ConfigureCpuRuntime(absl::GetFlag(FLAGS_threads));
  nas::ConfigureDeviceRuntime(absl::GetFlag(FLAGS_deterministic));
  absl::StatusOr<torch::Device> device = nas::ParseDevice(absl::GetFlag(FLAGS_device), "--device");
  absl::StatusOr<nas::SearchSpace> space = nas::SearchSpace::Load(absl::GetFlag(FLAGS_space));
  if (!device.ok() || !space.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n",
                 (device.ok() ? space.status() : device.status()).ToString().c_str());
    return 2;
  }
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  std::filesystem::create_directories(out_dir);
  nas::Out(absl::StrFormat("# gpu_bench: %s; CPU %d threads; LibTorch %s\n\n",
                           nas::DeviceDescription(*device), at::get_num_threads(), TORCH_VERSION));
  int failed = 0;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_parts), ',')) {
    auto t0 = std::chrono::steady_clock::now();
    absl::Status s;
    if (part == "search") {
      s = nas::SearchPart(*space, *device, out_dir);
    } else if (part == "calibration") {
      s = nas::CalibrationPart(*space, out_dir);
    } else if (part == "cross_device") {
      s = nas::CrossDevicePart(*space, *device, out_dir);
    } else {
      s = absl::InvalidArgumentError(absl::StrCat("--parts: unknown part ", part));
    }
    if (!s.ok()) {
      ++failed;
      nas::Out(absl::StrCat("**", part, " failed**: ", s.ToString(), "\n\n"));
    }
    nas::Out(absl::StrFormat("(%s: %.1f s)\n\n", std::string(part), nas::SecondsSince(t0)));
  }
  std::ofstream(out_dir + "/results.md") << nas::g_results;
  return failed == 0 ? 0 : 1;
}
