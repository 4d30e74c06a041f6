#include "worker/profiler.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/rng.h"
#include "core/search_driver.h"
#include "core/status_macros.h"
#include "worker/data.h"
#include "worker/ops.h"
#include "worker/runtime.h"
#include "worker/torch_status.h"

namespace nas {

namespace {

torch::Device BackendDevice(const ProfileOptions& o) {
  return o.backend == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

absl::Status CheckBackend(const ProfileOptions& o) {
  if (o.backend != "cpu" && o.backend != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend: \"", o.backend, "\" is not cpu or cuda"));
  }
  if (o.backend == "cuda" && !torch::cuda::is_available()) {
    return absl::FailedPreconditionError("backend: cuda requested but no CUDA device is present");
  }
  if (o.batch_size < 1) return absl::InvalidArgumentError("batch_size: must be >= 1");
  if (o.repeats < 3) return absl::InvalidArgumentError("repeats: must be >= 3");
  if (o.warmup < 0) return absl::InvalidArgumentError("warmup: must be >= 0");
  if (o.max_retimes < 0) return absl::InvalidArgumentError("max_retimes: must be >= 0");
  return absl::OkStatus();
}

// A timing whose middle-half mean exceeds this multiple of its fastest run is stall-dominated.
constexpr double kStallRatio = 1.5;

// Linux counters of how much of the machine other processes used: its busy CPU time
// (/proc/stat, steal included) minus this process's (/proc/self/stat), in clock ticks. Zeros
// where the files cannot be read.
struct CpuCounters {
  double busy_ticks = 0;
  double own_ticks = 0;
  std::chrono::steady_clock::time_point at;

  static CpuCounters Now() {
    CpuCounters c;
    c.at = std::chrono::steady_clock::now();
    std::ifstream stat("/proc/stat");
    std::string cpu;
    double v[8] = {0};  // user nice system idle iowait irq softirq steal
    if (stat >> cpu && cpu == "cpu") {
      for (double& x : v) stat >> x;
      c.busy_ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    }
    std::ifstream self("/proc/self/stat");
    std::string line;
    if (std::getline(self, line) && line.rfind(')') != std::string::npos) {
      // Fields after the ")" that ends the command name: state is field 3; utime, stime 14, 15.
      std::istringstream rest(line.substr(line.rfind(')') + 1));
      std::string field;
      double utime = 0, stime = 0;
      for (int f = 3; f <= 15 && rest >> field; ++f) {
        if (f == 14) utime = std::atof(field.c_str());
        if (f == 15) stime = std::atof(field.c_str());
      }
      c.own_ticks = utime + stime;
    }
    return c;
  }
};

void Account(const CpuCounters& a, const CpuCounters& b, TimingReport* r) {
  static const double ticks_per_s = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double s = std::chrono::duration<double>(b.at - a.at).count();
  r->window_ms = 1000 * s;
  const double others = (b.busy_ticks - a.busy_ticks) - (b.own_ticks - a.own_ticks);
  r->others_cpu = s > 0 && ticks_per_s > 0 ? std::max(0.0, others / ticks_per_s / s) : 0.0;
}

// One timing of f: `warmup` untimed runs, `repeats` timed runs; trimmed mean/var in ms, and the
// fastest run in *fastest; what the rest of the machine took meanwhile in *report.
LatencyEntry TimeOnce(const std::function<void()>& f, const ProfileOptions& o, double* fastest,
                      TimingReport* report) {
  bool cuda = o.backend == "cuda";
  for (int i = 0; i < o.warmup; ++i) f();
  if (cuda) torch::cuda::synchronize();
  std::vector<double> ms;
  ms.reserve(o.repeats);
  const CpuCounters before = CpuCounters::Now();
  for (int i = 0; i < o.repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    if (cuda) torch::cuda::synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count());
  }
  Account(before, CpuCounters::Now(), report);
  std::sort(ms.begin(), ms.end());
  *fastest = ms.front();
  size_t trim = ms.size() / 4;  // inter-quartile: robust to scheduler stalls on shared cores
  double sum = 0, sq = 0;
  size_t n = 0;
  for (size_t i = trim; i < ms.size() - trim; ++i, ++n) sum += ms[i];
  double mean = sum / n;
  for (size_t i = trim; i < ms.size() - trim; ++i) sq += (ms[i] - mean) * (ms[i] - mean);
  LatencyEntry e;
  e.count = static_cast<int64_t>(n);
  e.mean_ms = std::max(mean, 1e-6);
  e.var = n > 1 ? sq / (n - 1) : 0;
  return e;
}

// Times f (see the header: re-timed while stalls dominate); *report of the kept timing, with
// the number of re-timings.
LatencyEntry Time(const std::function<void()>& f, const ProfileOptions& o,
                  TimingReport* report = nullptr) {
  TimingReport r, again_r;
  double fastest = 0;
  LatencyEntry best = TimeOnce(f, o, &fastest, &r);
  bool clean = best.mean_ms <= kStallRatio * fastest;
  int retimed = 0;
  for (int k = 0; k < o.max_retimes && !clean; ++k) {
    ++retimed;
    LatencyEntry again = TimeOnce(f, o, &fastest, &again_r);
    clean = again.mean_ms <= kStallRatio * fastest;
    if (clean || again.mean_ms < best.mean_ms) {
      best = again;
      r = again_r;
    }
  }
  r.retimed = retimed;
  if (report != nullptr) *report = r;
  return best;
}

// The order of pass `p` over n items: in order first, then shuffled (seeded), so that an item's
// passes fall at unrelated times and a slow or fast phase does not meet the same neighbours in
// every pass.
std::vector<int> PassOrder(int n, int p, uint64_t seed) {
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  if (p == 0) return order;
  Rng rng(seed ^ (0x7061737365730000ULL + static_cast<uint64_t>(p)));
  for (int i = n; i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
  return order;
}

// The timing of the median pass (by mean; the lower one of an even count).
LatencyEntry MedianPass(std::vector<LatencyEntry> passes) {
  std::sort(passes.begin(), passes.end(),
            [](const LatencyEntry& a, const LatencyEntry& b) { return a.mean_ms < b.mean_ms; });
  return passes[(passes.size() - 1) / 2];
}

// A layer rebuilt from its key, as a callable on an input tensor.
struct KeyedLayer {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  std::vector<int64_t> input_shape;  // without batch
};

absl::StatusOr<KeyedLayer> BuildLayer(const LayerKey& k) {
  KeyedLayer l;
  l.input_shape = {k.in_c, k.in_h, k.in_w};
  if (k.kind == "Conv" || k.kind == "Conv_1") {
    int kernel = k.kind == "Conv" ? 3 : 1;
    int stride = k.in_h == k.out_h ? 1 : (k.in_h + k.out_h - 1) / k.out_h;
    auto m = ConvBnAct(k.in_c, k.out_c, kernel, stride, 0.1, 1e-3);
    l.module = m.ptr();
    l.forward = [m](const torch::Tensor& x) mutable { return m->forward(x); };
  } else if (k.kind == "expanded_conv") {
    BlockConfig b;
    b.in_channels = k.in_c;
    b.out_channels = k.out_c;
    b.kernel = k.kernel;
    b.stride = k.stride;
    b.expand = k.expand;
    b.shortcut = k.idskip == 1;
    b.in_height = k.in_h;
    b.in_width = k.in_w;
    if (b.out_height() != k.out_h || b.out_width() != k.out_w) {
      return absl::InvalidArgumentError(absl::StrCat("layer key '", k.ToString(),
                                                     "': output size does not follow stride"));
    }
    auto m = MBConv(b, 0.1, 1e-3);
    l.module = m.ptr();
    bool skip = b.shortcut;
    l.forward = [m, skip](const torch::Tensor& x) mutable {
      torch::Tensor y = m->forward(x);
      return skip ? x + y : y;
    };
  } else if (k.kind == "Logits") {
    auto m = Classifier(k.in_c, k.out_c, 0.0);
    l.module = m.ptr();
    l.forward = [m](const torch::Tensor& x) mutable { return m->forward(x); };
  } else {
    return absl::InvalidArgumentError(absl::StrCat("layer kind ", k.kind, " cannot be profiled"));
  }
  return l;
}

std::string NowIso8601() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

void AddTiming(const TimingReport& t, TimingReport* sum) {
  const double window = sum->window_ms + t.window_ms;
  sum->others_cpu =
      window > 0 ? (sum->others_cpu * sum->window_ms + t.others_cpu * t.window_ms) / window : 0;
  sum->window_ms = window;
  sum->retimed += t.retimed;
}

std::string ProfileMethod(const ProfileOptions& o) {
  std::string m = absl::StrCat(
      "per-layer forward, inference mode, channels-last strided input, ", o.warmup, " warm-up + ",
      o.repeats, " timed runs, mean and variance of the middle 50%, re-timed up to ", o.max_retimes,
      " times when that mean exceeds ", kStallRatio, "x the fastest run; median of ", o.passes,
      " interleaved passes (the first in order, the others shuffled)");
  if (o.calibration_networks > 0) {
    absl::StrAppend(&m, "; calibration: ", o.calibration_networks,
                    " sampled networks end to end (same passes), least-squares overhead");
  }
  return m;
}

std::string ProfileDeviceName(const ProfileOptions& o) {
  if (o.backend != "cuda" || (!o.device.empty() && o.device != ProfileOptions().device)) {
    return o.device;
  }
  std::string gpu = CudaDeviceName(0);
  if (gpu.empty()) return "cuda";
  std::string name = "cuda-";
  for (char c : gpu) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    name += ok ? c : '-';
  }
  return name.substr(0, 64);
}

std::string RuntimeDescription(const ProfileOptions& o) {
  std::string r = absl::StrCat("libtorch-", o.backend, " ", TORCH_VERSION, ", ",
                               o.threads > 0 ? o.threads : at::get_num_threads(), " threads");
  if (o.backend == "cuda") {
    const std::string gpu = CudaDeviceName(0);
    absl::StrAppend(&r, ", ", gpu.empty() ? "cuda" : gpu,
                    at::globalContext().benchmarkCuDNN() ? ", cudnn.benchmark" : "");
  }
  // OpenBLAS reads it once, when it loads: how long its idle threads spin before they sleep
  // changes how fast layers run beside LibTorch's threads, so a table records it (and a cached
  // table profiled under another setting is profiled again).
  const char* idle = std::getenv("OPENBLAS_THREAD_TIMEOUT");
  if (idle != nullptr && *idle != '\0') absl::StrAppend(&r, ", OPENBLAS_THREAD_TIMEOUT=", idle);
  return r;
}

absl::StatusOr<LatencyTable> ProfileKeys(
    const std::vector<std::string>& keys, const ProfileOptions& o,
    const std::function<void(int, int, const std::string&)>& progress, ProfileReport* report) {
  NAS_RETURN_IF_ERROR(CheckBackend(o));
  if (o.passes < 1) return absl::InvalidArgumentError("passes: must be >= 1");
  ConfigureCpuRuntime(o.threads > 0 ? o.threads : at::get_num_threads());
  LatencyTableInfo info;
  info.device = ProfileDeviceName(o);
  info.runtime = RuntimeDescription(o);
  info.batch_size = o.batch_size;
  info.threads = at::get_num_threads();
  info.profiled_at = NowIso8601();
  info.method = ProfileMethod(o);
  LatencyTable table(info);
  torch::manual_seed(o.seed);
  torch::Device dev = BackendDevice(o);
  const CpuCounters start = CpuCounters::Now();
  std::vector<LayerKey> parsed;
  for (const std::string& key : keys) {
    NAS_ASSIGN_OR_RETURN(LayerKey k, LayerKey::Parse(key));
    parsed.push_back(std::move(k));
  }
  const int n = static_cast<int>(keys.size());
  std::vector<std::vector<LatencyEntry>> passes(n);
  TimingReport timing;
  for (int p = 0; p < o.passes; ++p) {
    const std::vector<int> order = PassOrder(n, p, o.seed);
    for (int step = 0; step < n; ++step) {
      const int i = order[step];
      NAS_ASSIGN_OR_RETURN(KeyedLayer layer, BuildLayer(parsed[i]));
      absl::StatusOr<LatencyEntry> e = TorchCall(
          [&] {
            torch::InferenceMode guard;
            layer.module->to(dev);
            layer.module->eval();
            std::vector<int64_t> shape = {o.batch_size};
            shape.insert(shape.end(), layer.input_shape.begin(), layer.input_shape.end());
            torch::Tensor x =
                ChannelsLastStrided(torch::randn(shape, torch::TensorOptions().device(dev)));
            ToChannelsLast(*layer.module);
            return Time([&] { (void)layer.forward(x); }, o, &timing);
          },
          "profiling " + keys[i]);
      if (!e.ok()) return e.status();
      passes[i].push_back(*e);
      if (report != nullptr) report->retimed += timing.retimed;
      if (progress) progress(p * n + step + 1, n * o.passes, keys[i]);
    }
  }
  for (int i = 0; i < n; ++i) NAS_RETURN_IF_ERROR(table.Insert(keys[i], MedianPass(passes[i])));
  if (report != nullptr) {
    TimingReport all;
    Account(start, CpuCounters::Now(), &all);
    report->layers_others_cpu = all.others_cpu;
  }
  return table;
}

absl::StatusOr<LatencyEntry> MeasureNetwork(const NetworkConfig& net, const ProfileOptions& o,
                                            TimingReport* report) {
  NAS_RETURN_IF_ERROR(CheckBackend(o));
  NAS_RETURN_IF_ERROR(net.Validate());
  ConfigureCpuRuntime(o.threads > 0 ? o.threads : at::get_num_threads());
  torch::Device dev = BackendDevice(o);
  return TorchCall(
      [&] {
        torch::InferenceMode guard;
        torch::manual_seed(o.seed);
        Network m(net);
        m->to(dev);
        m->eval();
        torch::Tensor x = ChannelsLastStrided(
            torch::randn({o.batch_size, net.input_channels, net.input_height, net.input_width},
                         torch::TensorOptions().device(dev)));
        return Time([&] { (void)m->forward(x); }, o, report);
      },
      "measuring network latency");
}

absl::StatusOr<std::vector<LatencyEntry>> MeasureNetworks(
    const std::vector<NetworkConfig>& nets, const ProfileOptions& o,
    std::vector<TimingReport>* reports, const std::function<void(int, int)>& progress) {
  if (o.passes < 1) return absl::InvalidArgumentError("passes: must be >= 1");
  const int n = static_cast<int>(nets.size());
  std::vector<std::vector<LatencyEntry>> passes(n);
  std::vector<TimingReport> sums(n);
  for (int p = 0; p < o.passes; ++p) {
    const std::vector<int> order = PassOrder(n, p, o.seed);
    for (int step = 0; step < n; ++step) {
      const int i = order[step];
      TimingReport timing;
      NAS_ASSIGN_OR_RETURN(LatencyEntry e, MeasureNetwork(nets[i], o, &timing));
      passes[i].push_back(e);
      AddTiming(timing, &sums[i]);
      if (progress) progress(p * n + step + 1, n * o.passes);
    }
  }
  std::vector<LatencyEntry> out;
  out.reserve(n);
  for (std::vector<LatencyEntry>& v : passes) out.push_back(MedianPass(std::move(v)));
  if (reports != nullptr) *reports = std::move(sums);
  return out;
}

// Whole-network measurements are re-taken while the fit looks disturbed: networks left out as
// outliers, or one off its fit by more than 10% (an undisturbed machine fits within ~5%).
constexpr int kCalibrationAttempts = 3;

static bool SteadyCalibration(const LatencyCalibration& c) {
  return c.rejected == 0 && c.max_error_pct <= 10.0;
}

absl::Status CalibrateTable(const SearchSpace& space, const ProfileOptions& o,
                            LatencyTable* table, const std::function<void(int, int)>& progress,
                            ProfileReport* report) {
  if (o.calibration_networks < 1) {
    return absl::InvalidArgumentError("calibration_networks: must be >= 1 to calibrate");
  }
  // Not `nas latency-check`'s stream (Rng(seed)): the networks that score the calibration are
  // other networks than the ones it was fitted on.
  Rng rng(o.seed ^ 0x63616c6962726174ULL);
  // Edges that may be skipped, and each edge's non-Zero candidates.
  std::vector<int> skippable;
  std::vector<std::vector<int>> blocks(space.edges().size());
  std::vector<int> zero_of(space.edges().size(), -1);
  for (size_t e = 0; e < space.edges().size(); ++e) {
    const EdgeSpec& edge = space.edges()[e];
    for (size_t i = 0; i < edge.candidates.size(); ++i) {
      if (edge.candidates[i].zero) {
        zero_of[e] = static_cast<int>(i);
      } else {
        blocks[e].push_back(static_cast<int>(i));
      }
    }
    if (zero_of[e] >= 0) skippable.push_back(static_cast<int>(e));
  }
  std::vector<NetworkConfig> nets;
  for (int s = 0; s < o.calibration_networks; ++s) {
    // Network s skips s mod (skippable + 1) edges, chosen at random, so the networks span the
    // space's layer counts evenly (uniform sampling rarely draws the small networks a latency
    // target drives a search to, and a per-layer term needs the spread to be identified).
    std::vector<int> order = skippable;
    for (size_t i = order.size(); i > 1; --i) {
      std::swap(order[i - 1], order[rng.Below(i)]);
    }
    std::vector<bool> skip(space.edges().size(), false);
    const size_t k = static_cast<size_t>(s) % (skippable.size() + 1);
    for (size_t i = 0; i < k; ++i) skip[order[i]] = true;
    std::vector<int> choices;
    for (size_t e = 0; e < space.edges().size(); ++e) {
      choices.push_back(skip[e] ? zero_of[e] : blocks[e][rng.Below(blocks[e].size())]);
    }
    NAS_ASSIGN_OR_RETURN(NetworkConfig net, space.Derive(choices));
    nets.push_back(std::move(net));
  }
  // Measures every network and fits; repeated (up to kCalibrationAttempts in all) while the fit
  // is unsteady, keeping the steadiest fit.
  std::optional<LatencyCalibration> best;
  TimingReport all;  // every attempt's timings
  int attempts = 0;
  while (attempts < kCalibrationAttempts && !(best.has_value() && SteadyCalibration(*best))) {
    ++attempts;
    std::vector<TimingReport> timings;
    NAS_ASSIGN_OR_RETURN(std::vector<LatencyEntry> measured,
                         MeasureNetworks(nets, o, &timings, [&](int i, int n) {
                           if (progress && attempts == 1) progress(i, n);
                         }));
    std::vector<CalibrationSample> samples;
    for (size_t s = 0; s < nets.size(); ++s) {
      const std::vector<std::string> keys = nets[s].LayerKeys();
      CalibrationSample sample;
      NAS_ASSIGN_OR_RETURN(sample.layer_sum_ms, table->SumMeans(keys));
      sample.layers = static_cast<int>(keys.size());
      sample.measured_ms = measured[s].mean_ms;
      samples.push_back(sample);
      AddTiming(timings[s], &all);
    }
    NAS_ASSIGN_OR_RETURN(LatencyCalibration fit, FitCalibration(samples));
    auto steadier = [](const LatencyCalibration& a, const LatencyCalibration& b) {
      if (a.rejected != b.rejected) return a.rejected < b.rejected;
      return a.max_error_pct < b.max_error_pct;
    };
    if (!best.has_value() || steadier(fit, *best)) best = fit;
  }
  if (report != nullptr) {
    report->networks_others_cpu = all.others_cpu;
    report->retimed += all.retimed;
    report->calibration_attempts = attempts;
    report->calibration_steady = SteadyCalibration(*best);
  }
  // A fit that misses some network by more than half is no correction: the table keeps the
  // plain layer sums (and the caller warns that the machine was unsteady).
  // So is one that predicts no time for some network of the space (layers timed while the
  // machine was busier than when the networks were): a search would refuse the table.
  bool keep = best->max_error_pct <= o.max_calibration_error_pct;
  if (keep) {
    table->mutable_info().calibration = *best;
    keep = BuildLatencyModel(space, *table).ok();
    if (!keep) table->mutable_info().calibration.reset();
  }
  if (!keep && report != nullptr) report->calibration_steady = false;
  return absl::OkStatus();
}

int ProfileSteps(const SearchSpace& space, const ProfileOptions& o) {
  return (static_cast<int>(space.AllLayerKeys().size()) + std::max(0, o.calibration_networks)) *
         std::max(1, o.passes);
}

absl::StatusOr<LatencyTable> ProfileSpace(
    const SearchSpace& space, const ProfileOptions& o,
    const std::function<void(int, int, const std::string&)>& progress, ProfileReport* report) {
  const std::vector<std::string> keys = space.AllLayerKeys();
  const int layers = static_cast<int>(keys.size()) * std::max(1, o.passes);
  const int total = ProfileSteps(space, o);
  NAS_ASSIGN_OR_RETURN(LatencyTable t,
                       ProfileKeys(keys, o, [&](int i, int, const std::string& key) {
                         if (progress) progress(i, total, key);
                       }, report));
  if (o.calibration_networks > 0) {
    NAS_RETURN_IF_ERROR(CalibrateTable(space, o, &t, [&](int i, int n) {
      if (progress) progress(layers + i, total, absl::StrCat("network ", i, " of ", n));
    }, report));
  }
  return t;
}

std::string ProfileWarning(const ProfileReport& r) {
  std::string w;
  if (r.layers_others_cpu > kBusyMachineCores || r.networks_others_cpu > kBusyMachineCores) {
    w = absl::StrFormat(
        "warning: other processes used %.2f cores while the layers were timed and %.2f while "
        "the calibration networks were (%d timings repeated for stalls): the table may read "
        "slow; profile again on a quiet machine",
        r.layers_others_cpu, r.networks_others_cpu, r.retimed);
  }
  if (r.calibration_attempts > 0 && !r.calibration_steady) {
    absl::StrAppend(&w, w.empty() ? "" : "\n",
                    absl::StrFormat("warning: the calibration networks measured unsteadily in "
                                    "all %d attempts (outliers, or a network off the fit by over "
                                    "10%%): the machine's speed changed while profiling; "
                                    "profile again",
                                    r.calibration_attempts));
  }
  return w;
}

}  // namespace nas
