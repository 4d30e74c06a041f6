// Benchmarks of the two units of search work (see bench/RESULTS.md for recorded numbers).
//
//  1. Weight step of the supernet on a sampled path vs a training step of the standalone
//     network of the same path (same batch, threads, optimizer): time ratio, target <= 1.05.
//  2. Arch step (binary gates over the sampled pair) relative to a weight step.
//  3. Peak bytes allocated by one weight step for 1..7 candidates per edge, against a
//     DARTS-style forward/backward that runs every candidate (weighted sum).
//
// Usage: step_bench [--space fashion-mnist] [--batch 128] [--threads 2] [--paths 6]
//                   [--steps 10] [--memory_space fashion-mnist] [--memory_batch 64]
//                   [--device cpu|cuda|cuda:N] [--timing_only] [--deterministic]
// On CUDA only the timings run (GPU memory: tests/worker/task_runner_cuda_test.cc).
// Prints markdown tables. Timings are medians over paths of the mean per-step time, with the
// two variants interleaved so that machine noise hits both alike.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/arch_params.h"
#include "core/json_fields.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "worker/data.h"
#include "worker/memory_meter.h"
#include "worker/ops.h"
#include "worker/runtime.h"
#include "worker/task_runner.h"
#include "worker/train.h"

ABSL_FLAG(std::string, space, "fashion-mnist", "space for the timing benchmarks");
ABSL_FLAG(int, batch, 128, "batch size for timings");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(int, paths, 6, "sampled paths to time");
ABSL_FLAG(int, steps, 10, "timed steps per path and variant");
ABSL_FLAG(std::string, memory_space, "fashion-mnist", "space for the memory benchmark");
ABSL_FLAG(int, memory_batch, 64, "batch size for the memory benchmark");
ABSL_FLAG(std::string, device, "cpu",
          "where the timed steps run: cpu, cuda or cuda:N (CUDA steps end with a synchronisation)");
ABSL_FLAG(bool, timing_only, false, "only the weight/arch step timings (no layout, no memory)");
ABSL_FLAG(bool, deterministic, false, "cuDNN: deterministic algorithms, no autotuning");

namespace nas {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Where the timed steps run (--device); CUDA timings synchronise before and after.
torch::Device g_device(torch::kCPU);

void Sync() {
  if (g_device.is_cuda()) torch::cuda::synchronize();
}

template <typename F>
double MeanMs(int steps, F&& f) {
  f();  // warm-up
  Sync();
  auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) f();
  Sync();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / steps;
}

// One SGD step of a standalone network (the comparison for a supernet weight step).
void StandaloneStep(Network& net, PathSgd& sgd, const torch::Tensor& x, const torch::Tensor& y) {
  net->train();
  ClearGradients(*net);
  SmoothedCrossEntropy(net->forward(x), y, 0.1).backward();
  sgd.Step(*net, 0.01);
}

void TimingBenchmarks(const SearchSpace& space, int batch, int paths, int steps) {
  torch::manual_seed(0);
  SuperNet supernet(space);
  supernet->to(g_device);
  PathSgd sgd_super(SgdOptions{});
  torch::Tensor x = ChannelsLastStrided(
      torch::randn({batch, space.input_channels(), space.input_height(), space.input_width()},
                   torch::TensorOptions().device(g_device)));
  torch::Tensor y = torch::randint(0, space.num_classes(), {batch},
                                   torch::TensorOptions().dtype(torch::kInt64).device(g_device));
  Rng rng(1);
  ArchParams ap(space.CandidatesPerEdge());
  std::vector<double> ratio, super_ms, alone_ms, arch_ms, arch_ratio;
  std::printf("| path | supernet weight step ms | standalone step ms | ratio | arch step ms | arch/weight |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (int p = 0; p < paths; ++p) {
    std::vector<int> path = ap.SamplePath(rng);
    std::vector<PairSample> pairs = ap.SamplePairs(rng);
    auto config = space.Derive(path);
    Network alone(*config);
    alone->to(g_device);
    PathSgd sgd_alone(SgdOptions{});
    auto alone_step = [&] { StandaloneStep(alone, sgd_alone, x, y); };
    auto super_step = [&] { WeightStep(supernet, sgd_super, path, x, y, 0.01, 0.1); };
    auto arch_step = [&] { ArchStep(supernet, pairs, x, y); };
    // Interleave in rounds so that drift affects both equally.
    double s = 0, a = 0, g = 0;
    const int rounds = 3;
    for (int r = 0; r < rounds; ++r) {
      a += MeanMs(steps, alone_step);
      s += MeanMs(steps, super_step);
      g += MeanMs(steps, arch_step);
    }
    s /= rounds;
    a /= rounds;
    g /= rounds;
    super_ms.push_back(s);
    alone_ms.push_back(a);
    ratio.push_back(s / a);
    arch_ms.push_back(g);
    arch_ratio.push_back(g / s);
    std::string names;
    for (size_t e = 0; e < path.size(); ++e) {
      std::string n = space.edges()[e].candidates[path[e]].Name();
      names += (e ? " " : "") + absl::StrReplaceAll(n, {{"_MBConv", "e"}});
    }
    std::printf("| %s | %.2f | %.2f | %.3f | %.2f | %.2f |\n", names.c_str(), s, a, s / a, g,
                g / s);
  }
  std::printf("| **median** | %.2f | %.2f | **%.3f** | %.2f | **%.2f** |\n\n", Median(super_ms),
              Median(alone_ms), Median(ratio), Median(arch_ms), Median(arch_ratio));
}

// A training step of a standalone network on an input as the data pipeline made it before
// (`x.contiguous(ChannelsLast)`: for one channel a no-op that keeps NCHW strides, so LibTorch
// ran every convolution NCHW) against exact channels-last strides, in interleaved rounds.
void LayoutBenchmark(const SearchSpace& space, int batch, int steps) {
  torch::Tensor nchw =
      torch::randn({batch, space.input_channels(), space.input_height(), space.input_width()});
  torch::Tensor before = nchw.contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor after = ChannelsLastStrided(nchw);
  torch::Tensor y = torch::randint(0, space.num_classes(), {batch});
  std::printf(
      "| network | input strides before | step ms before | step ms after | before / after |\n");
  std::printf("|---|---|---|---|---|\n");
  std::vector<int> smallest(space.num_edges(), 0);  // 3x3_MBConv3 on every edge
  for (const auto& [name, choices] :
       {std::pair<std::string, std::vector<int>>{"baseline (largest)", space.LargestChoices()},
        {"every edge 3x3_MBConv3", smallest}}) {
    auto config = space.Derive(choices);
    if (!config.ok()) return;
    torch::manual_seed(0);
    Network net(*config);
    PathSgd sgd(SgdOptions{});
    auto step = [&](const torch::Tensor& x) { return [&, x] { StandaloneStep(net, sgd, x, y); }; };
    double b = 0, a = 0;
    const int rounds = 3;
    for (int r = 0; r < rounds; ++r) {
      b += MeanMs(steps, step(before));
      a += MeanMs(steps, step(after));
    }
    std::string strides = absl::StrJoin(before.strides(), ",");
    std::printf("| %s | (%s) | %.2f | %.2f | %.2f |\n", name.c_str(), strides.c_str(), b / rounds,
                a / rounds, b / a);
  }
  std::printf("\n");
}

absl::StatusOr<SearchSpace> WithCandidates(const SearchSpace& base, std::vector<int> kernels,
                                           std::vector<int> expands, bool zero) {
  NAS_ASSIGN_OR_RETURN(Json j, ParseJson(base.ToJson(), "space"));
  j["candidates"] = {{"kernels", kernels}, {"expands", expands}, {"zero", zero}};
  return SearchSpace::FromJson(j.dump());
}

void MemoryBenchmark(const SearchSpace& base, int batch) {
  struct Set {
    std::vector<int> k, e;
    bool zero;
  };
  // 1..7 candidates per edge (on shortcut edges; the others lack Zero).
  const Set sets[] = {{{3}, {3}, false},       {{3}, {3}, true},          {{3, 5, 7}, {3}, false},
                      {{3, 5, 7}, {3}, true},  {{3, 5}, {3, 6}, true},    {{3, 5, 7}, {3, 6}, false},
                      {{3, 5, 7}, {3, 6}, true}};
  torch::Tensor x = ChannelsLastStrided(
      torch::randn({batch, base.input_channels(), base.input_height(), base.input_width()}));
  torch::Tensor y = torch::randint(0, base.num_classes(), {batch});
  std::printf("| candidates per shortcut edge | supernet params MB | ours: weight-step peak MB | DARTS-style peak MB | DARTS / ours |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const Set& s : sets) {
    auto space = WithCandidates(base, s.k, s.e, s.zero);
    if (!space.ok()) {
      std::printf("error: %s\n", std::string(space.status().message()).c_str());
      return;
    }
    int n = 0;
    for (int c : space->CandidatesPerEdge()) n = std::max(n, c);
    std::vector<int> path(space->num_edges(), 0);  // 3x3_MBConv3 in every set
    torch::manual_seed(0);
    SuperNet net(*space);
    double params_mb = CountParameters(*net) * 4 / 1e6;
    PathSgd sgd(SgdOptions{});
    WeightStep(net, sgd, path, x, y, 0.01, 0.1);
    MemoryMeter::Reset();
    WeightStep(net, sgd, path, x, y, 0.01, 0.1);
    double ours = (MemoryMeter::Peak() - MemoryMeter::AtReset()) / 1e6;
    std::vector<std::vector<double>> probs;
    for (int c : space->CandidatesPerEdge()) probs.emplace_back(c, 1.0 / c);
    ClearGradients(*net);
    MemoryMeter::Reset();
    SmoothedCrossEntropy(net->ForwardWeightedSum(x, probs), y, 0.1).backward();
    double darts = (MemoryMeter::Peak() - MemoryMeter::AtReset()) / 1e6;
    std::printf("| %d | %.2f | %.2f | %.2f | %.2f |\n", n, params_mb, ours, darts, darts / ours);
  }
  std::printf("\n");
}

}  // namespace
}  // namespace nas

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  nas::MemoryMeter::Install();
  nas::ConfigureCpuRuntime(absl::GetFlag(FLAGS_threads));
  nas::ConfigureDeviceRuntime(absl::GetFlag(FLAGS_deterministic));
  absl::StatusOr<torch::Device> device = nas::ParseDevice(absl::GetFlag(FLAGS_device), "--device");
  if (!device.ok()) {
    std::fprintf(stderr, "step_bench: %s\n", device.status().ToString().c_str());
    return 2;
  }
  nas::g_device = *device;
  auto space = nas::SearchSpace::Load(absl::GetFlag(FLAGS_space));
  auto mem_space = nas::SearchSpace::Load(absl::GetFlag(FLAGS_memory_space));
  if (!space.ok() || !mem_space.ok()) {
    std::fprintf(stderr, "step_bench: %s\n",
                 std::string((space.ok() ? mem_space.status() : space.status()).message()).c_str());
    return 2;
  }
  std::printf("## Weight step and arch step (space %s, batch %d, %s, LibTorch %s)\n\n",
              space->name().c_str(), absl::GetFlag(FLAGS_batch),
              nas::DeviceDescription(*device).c_str(), TORCH_VERSION);
  nas::TimingBenchmarks(*space, absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_paths),
                        absl::GetFlag(FLAGS_steps));
  if (absl::GetFlag(FLAGS_timing_only) || device->is_cuda()) return 0;
  std::printf("## Input layout: training step before and after exact channels-last strides\n\n");
  nas::LayoutBenchmark(*space, absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_steps));
  std::printf("## Peak memory of one weight step (space %s, batch %d)\n\n",
              mem_space->name().c_str(), absl::GetFlag(FLAGS_memory_batch));
  nas::MemoryBenchmark(*mem_space, absl::GetFlag(FLAGS_memory_batch));
  return 0;
}
