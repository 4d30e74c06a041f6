#include "worker/profiler.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
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
  return absl::OkStatus();
}

// Times f; returns trimmed mean/var in ms.
LatencyEntry Time(const std::function<void()>& f, const ProfileOptions& o) {
  bool cuda = o.backend == "cuda";
  for (int i = 0; i < o.warmup; ++i) f();
  if (cuda) torch::cuda::synchronize();
  std::vector<double> ms;
  ms.reserve(o.repeats);
  for (int i = 0; i < o.repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    if (cuda) torch::cuda::synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
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

std::string ProfileMethod(const ProfileOptions& o) {
  return absl::StrCat("per-layer forward, inference mode, channels-last, ", o.warmup,
                      " warm-up + ", o.repeats, " timed runs, mean and variance of the middle 50%");
}

std::string RuntimeDescription(const ProfileOptions& o) {
  return absl::StrCat("libtorch-", o.backend, " ", TORCH_VERSION, ", ",
                      o.threads > 0 ? o.threads : at::get_num_threads(), " threads");
}

absl::StatusOr<LatencyTable> ProfileKeys(
    const std::vector<std::string>& keys, const ProfileOptions& o,
    const std::function<void(int, int, const std::string&)>& progress) {
  NAS_RETURN_IF_ERROR(CheckBackend(o));
  ConfigureCpuRuntime(o.threads > 0 ? o.threads : at::get_num_threads());
  LatencyTableInfo info;
  info.device = o.device;
  info.runtime = RuntimeDescription(o);
  info.batch_size = o.batch_size;
  info.threads = at::get_num_threads();
  info.profiled_at = NowIso8601();
  info.method = ProfileMethod(o);
  LatencyTable table(info);
  torch::manual_seed(o.seed);
  torch::Device dev = BackendDevice(o);
  for (size_t i = 0; i < keys.size(); ++i) {
    NAS_ASSIGN_OR_RETURN(LayerKey k, LayerKey::Parse(keys[i]));
    NAS_ASSIGN_OR_RETURN(KeyedLayer layer, BuildLayer(k));
    absl::StatusOr<LatencyEntry> e = TorchCall(
        [&] {
          torch::InferenceMode guard;
          layer.module->to(dev);
          layer.module->eval();
          std::vector<int64_t> shape = {o.batch_size};
          shape.insert(shape.end(), layer.input_shape.begin(), layer.input_shape.end());
          torch::Tensor x = torch::randn(shape, torch::TensorOptions().device(dev))
                                .contiguous(at::MemoryFormat::ChannelsLast);
          ToChannelsLast(*layer.module);
          return Time([&] { (void)layer.forward(x); }, o);
        },
        "profiling " + keys[i]);
    if (!e.ok()) return e.status();
    NAS_RETURN_IF_ERROR(table.Insert(keys[i], *e));
    if (progress) progress(static_cast<int>(i) + 1, static_cast<int>(keys.size()), keys[i]);
  }
  return table;
}

absl::StatusOr<LatencyEntry> MeasureNetwork(const NetworkConfig& net,
                                            const ProfileOptions& o) {
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
        torch::Tensor x = torch::randn(
            {o.batch_size, net.input_channels, net.input_height, net.input_width},
            torch::TensorOptions().device(dev)).contiguous(at::MemoryFormat::ChannelsLast);
        return Time([&] { (void)m->forward(x); }, o);
      },
      "measuring network latency");
}

}  // namespace nas
