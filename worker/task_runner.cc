#include "worker/task_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/architecture.h"
#include "core/json_fields.h"
#include "core/param_names.h"
#include "core/status_macros.h"
#include "worker/job_data.h"
#include "worker/onnx_export.h"
#include "worker/ops.h"
#include "worker/profiler.h"
#include "worker/path_eval.h"
#include "worker/runtime.h"
#include "worker/tasks.h"
#include "worker/torch_status.h"

namespace nas {

absl::Status CheckDataDir(const std::string& dir, const std::vector<std::string>& roots) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(fs::absolute(dir, ec), ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("data_dir: '", dir, "' cannot be resolved: ", ec.message()));
  }
  for (const std::string& root : roots) {
    std::error_code rec;
    fs::path r = fs::weakly_canonical(fs::absolute(root, rec), rec);
    if (rec || r.empty()) continue;
    auto [ri, di] = std::mismatch(r.begin(), r.end(), resolved.begin(), resolved.end());
    // Every component of the root matches (a trailing empty component is a trailing slash).
    if (ri == r.end() || (std::next(ri) == r.end() && ri->empty())) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("data_dir: '", dir, "' (", resolved.string(),
                   ") is outside this worker's data roots (", absl::StrJoin(roots, ", "),
                   "); the worker's --data_roots names them"));
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& device, const std::string& field) {
  if (device == "cpu") return torch::Device(torch::kCPU);
  int index = -1;
  if (device != "cuda") {
    if (!absl::StartsWith(device, "cuda:") || device.size() > 9 ||
        !absl::SimpleAtoi(device.substr(5), &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", device.substr(0, 64), "\" is not cpu, cuda or cuda:N (N a GPU index)"));
    }
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ": ", device,
        " requested but LibTorch sees no CUDA device (a CPU-only LibTorch such as Debian's, no "
        "GPU, or no driver); run with cpu, or on a GPU machine with a build configured with "
        "-DNAS_TORCH_CUDA=ON (README)"));
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": ", device, " requested but only ",
                                                      count, " CUDA device(s) are visible"));
  }
  return index < 0 ? torch::Device(torch::kCUDA) : torch::Device(torch::kCUDA, index);
}

absl::Status CheckChoices(const SearchSpace& space, const std::vector<int>& choices,
                          const std::string& what) {
  if (static_cast<int>(choices.size()) != space.num_edges()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", choices.size(), " entries, the space has ", space.num_edges(), " edges"));
  }
  for (int e = 0; e < space.num_edges(); ++e) {
    int n = static_cast<int>(space.edges()[e].candidates.size());
    if (choices[e] < 0 || choices[e] >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "[", e, "] = ", choices[e], ": edge ", e, " has ", n, " candidates"));
    }
  }
  return absl::OkStatus();
}

absl::Status MapTensorSource::Ensure(const std::vector<const ListedTensor*>& refs,
                                     RunnerStats* stats) {
  for (const ListedTensor* r : refs) {
    if (tensors_.count(r->name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("no tensor ", r->name));
    }
    ++stats->cache_hits;
  }
  return absl::OkStatus();
}

const torch::Tensor* MapTensorSource::Get(const std::string& name) {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

namespace {

// Thrown from a training callback to stop a final task (TorchRun turns it into a status).
struct TaskInterrupted : std::runtime_error {
  TaskInterrupted() : std::runtime_error("task interrupted") {}
};

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int64_t TensorBytes(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}

// Parameters and buffers of a module by name.
std::map<std::string, torch::Tensor> ModuleTensors(torch::nn::Module& m, bool parameters,
                                                   bool buffers) {
  std::map<std::string, torch::Tensor> out;
  if (parameters) {
    for (const auto& p : m.named_parameters()) out.emplace(p.key(), p.value());
  }
  if (buffers) {
    for (const auto& b : m.named_buffers()) out.emplace(b.key(), b.value());
  }
  return out;
}

absl::Status CheckSearchData(const TaskData& d) {
  if (d.valid_size <= 0) {
    return absl::InvalidArgumentError("data.valid_size: must be positive for search tasks");
  }
  if (d.batch_size < 1) return absl::InvalidArgumentError("data.batch_size: must be >= 1");
  return absl::OkStatus();
}

bool Asked(const std::function<bool()>& f) { return f && f(); }

}  // namespace

// A job's data (worker/job_data.h) and the search's two sources, kept across tasks so that a
// streamed folder's loaders keep decoding ahead (consecutive batches are served from their
// prefetch queues).
struct TaskRunner::DataEntry {
  std::string key;
  std::shared_ptr<const JobData> data;
  std::string train_key, valid_key;  // the batch size, seed and augmentation of each source
  std::unique_ptr<BatchSource> train, valid;

  BatchSource& SearchTrain(const TaskData& d) {
    std::string k = absl::StrCat(d.batch_size, "/", d.train_seed, "/", d.augment_pad, "/",
                                 d.augment_hflip);
    if (train == nullptr || k != train_key) {
      train = data->SearchTrain(d.batch_size, d.train_seed, Augment{d.augment_pad, d.augment_hflip});
      train_key = k;
    }
    return *train;
  }
  BatchSource& SearchValid(const TaskData& d) {
    std::string k = absl::StrCat(d.batch_size, "/", d.valid_seed);
    if (valid == nullptr || k != valid_key) {
      valid = data->SearchValid(d.batch_size, d.valid_seed);
      valid_key = k;
    }
    return *valid;
  }
};

absl::StatusOr<std::unique_ptr<TaskRunner>> TaskRunner::Create(TaskRunnerOptions options) {
  NAS_ASSIGN_OR_RETURN(torch::Device device, ParseDevice(options.device, "device"));
  if (options.max_data_sets < 1) {
    return absl::InvalidArgumentError("max_data_sets: must be >= 1");
  }
  NAS_RETURN_IF_ERROR(JobData::CheckLoaderThreads(options.loader_threads));
  if (options.threads < 1) options.threads = 1;
  return std::unique_ptr<TaskRunner>(new TaskRunner(std::move(options), device));
}

torch::Tensor TaskRunner::ToHost(const torch::Tensor& t) const {
  if (!t.is_cuda()) return t.to(torch::kCPU);
  torch::Tensor host = torch::empty(
      t.sizes(), t.options().device(torch::kCPU).pinned_memory(true).memory_format(
                     t.suggest_memory_format()));
  host.copy_(t, /*non_blocking=*/true);
  return host;
}

void TaskRunner::SyncDevice() const {
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
}

absl::StatusOr<std::shared_ptr<TaskRunner::DataEntry>> TaskRunner::Data(
    const TaskData& d, const SearchSpace& space) {
  std::string dir = o_.data_dir.empty() ? d.data_dir : o_.data_dir;
  if (o_.data_dir.empty() && !d.data_dir.empty()) {
    NAS_RETURN_IF_ERROR(CheckDataDir(d.data_dir, o_.data_roots));
  }
  // The space's input size is part of the key: a folder is decoded at it.
  std::string key = absl::StrCat(d.dataset, "\n", dir, "\n", d.train_subset, "\n", d.test_subset,
                                 "\n", d.valid_size, "\n", d.split_seed, "\n", d.stream_images,
                                 "\n", d.skip_bad_files, "\n", space.input_height(), "x",
                                 space.input_width(), "x", space.input_channels());
  std::shared_ptr<DataEntry> entry;
  for (auto it = data_sets_.begin(); it != data_sets_.end(); ++it) {
    if ((*it)->key == key) {
      entry = *it;
      data_sets_.splice(data_sets_.end(), data_sets_, it);
      break;
    }
  }
  if (entry == nullptr) {
    auto t0 = std::chrono::steady_clock::now();
    JobDataOptions jo;
    jo.dataset = d.dataset;
    jo.dir = dir;
    jo.train_subset = d.train_subset;
    jo.test_subset = d.test_subset;
    jo.valid_size = d.valid_size;
    jo.split_seed = d.split_seed;
    jo.stream_images = d.stream_images;
    jo.skip_bad_files = d.skip_bad_files;
    jo.loader_threads = o_.loader_threads;
    jo.log = o_.log;
    entry = std::make_shared<DataEntry>();
    entry->key = key;
    NAS_ASSIGN_OR_RETURN(entry->data, JobData::Load(jo, space));
    Log(absl::StrCat("data: ", d.dataset, dir.empty() ? "" : absl::StrCat(" from ", dir), ": ",
                     entry->data->Describe(), ", loaded in ", SecondsSince(t0), " s"));
    data_sets_.push_back(entry);
    while (static_cast<int>(data_sets_.size()) > o_.max_data_sets) data_sets_.pop_front();
  }
  return entry;
}

// Loads the task's tensors into `net` (and momentum into `sgd` when given; arch tasks need
// none). Every parameter and buffer of `net` must be listed; momentum may be absent.
// A step of a chain (`chain` given: the tensors the chain's earlier steps left) loads those
// from there and skips listed tensors its path does not have (other steps use them).
absl::Status TaskRunner::LoadTensors(const RunnerTask& t, torch::nn::Module& net, PathSgd* sgd,
                                     TensorSource& source, RunnerStats* stats,
                                     const std::map<std::string, torch::Tensor>* chain) {
  std::map<std::string, torch::Tensor> module = ModuleTensors(net, true, true);
  std::set<std::string> params;
  for (const auto& p : net.named_parameters()) params.insert(p.key());
  std::vector<const ListedTensor*> needed;
  std::set<std::string> listed;
  for (const ListedTensor& r : t.tensors) {
    const std::string& name = r.name;
    if (!listed.insert(name).second) continue;
    if (absl::StartsWith(name, kMomentumPrefix)) {
      if (sgd == nullptr) continue;
      std::string p = name.substr(sizeof(kMomentumPrefix) - 1);
      if (params.count(p) == 0) {
        if (chain != nullptr) continue;
        return absl::InvalidArgumentError(absl::StrCat(
            "task lists ", name, " but ", p, " is not a parameter of the task's modules"));
      }
    } else if (module.count(name) == 0) {
      if (chain != nullptr) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("task lists ", name, ", which the task's modules do not have"));
    }
    needed.push_back(&r);
  }
  for (const auto& [name, tensor] : module) {
    if (listed.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task does not list ", name, " (every tensor of the materialised modules is needed)"));
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<const ListedTensor*> from_source;
  for (const ListedTensor* r : needed) {
    if (chain == nullptr || chain->count(r->name) == 0) from_source.push_back(r);
  }
  NAS_RETURN_IF_ERROR(source.Ensure(from_source, stats));

  torch::NoGradGuard no_grad;
  const bool async = device_.is_cuda();
  for (const ListedTensor* r : needed) {
    const std::string& name = r->name;
    const torch::Tensor* src = nullptr;
    if (chain != nullptr) {
      auto it = chain->find(name);
      if (it != chain->end()) src = &it->second;
    }
    if (src == nullptr) src = source.Get(name);
    if (src == nullptr) {
      return absl::InternalError(absl::StrCat(name, ": the tensor source did not provide it"));
    }
    bool momentum = absl::StartsWith(name, kMomentumPrefix);
    std::string target = momentum ? name.substr(sizeof(kMomentumPrefix) - 1) : name;
    const torch::Tensor& dst = module.at(target);
    if (src->sizes() != dst.sizes() || src->scalar_type() != dst.scalar_type()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": received ", c10::str(src->sizes()), " ", c10::toString(src->scalar_type()),
          ", the module has ", c10::str(dst.sizes()), " ", c10::toString(dst.scalar_type())));
    }
    if (momentum) {
      torch::Tensor m = torch::empty_like(dst);
      m.copy_(*src, async);
      sgd->mutable_momentum()[target] = std::move(m);
    } else {
      dst.copy_(*src, async);
    }
  }
  // Momentum an earlier step of the chain created is not in the store yet, so not listed.
  if (chain != nullptr && sgd != nullptr) {
    for (const std::string& p : params) {
      auto it = chain->find(kMomentumPrefix + p);
      if (it == chain->end() || listed.count(it->first) > 0) continue;
      const torch::Tensor& dst = module.at(p);
      if (it->second.sizes() != dst.sizes()) {
        return absl::InternalError(absl::StrCat(it->first, ": the chain left another shape"));
      }
      torch::Tensor m = torch::empty_like(dst);
      m.copy_(it->second, async);
      sgd->mutable_momentum()[p] = std::move(m);
    }
  }
  // The host tensors may be reused (the cache) once the copies are done.
  SyncDevice();
  stats->load_seconds += SecondsSince(t0);
  return absl::OkStatus();
}

absl::Status TaskRunner::RunInit(const RunnerTask& t, const InitSpec& s, const SearchSpace& space,
                                 RunnerResult* r) {
  NAS_RETURN_IF_ERROR(CheckSearchData(t.data));
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<DataEntry> data, Data(t.data, space));
  // Built (and seeded) on the CPU: the same tensors whatever the worker's device.
  torch::manual_seed(s.seed);
  SuperNet net(space);
  r->train_size = data->data->train_size();
  r->valid_size = data->data->valid_size();
  for (auto& [name, tensor] : ModuleTensors(*net, true, true)) {
    r->stats.resident_bytes += TensorBytes(tensor);
    r->tensors.emplace_back(name, tensor);
  }
  return absl::OkStatus();
}

// A weight task, or a chain of them: each runs on its own path, on what the ones before left;
// one path is materialised at a time.
absl::Status TaskRunner::RunWeight(const RunnerTask& t, const WeightChain& w,
                                   const SearchSpace& space, TensorSource& source,
                                   const TaskControl& control, RunnerResult* r) {
  NAS_RETURN_IF_ERROR(CheckSearchData(t.data));
  if (w.steps.empty()) return absl::InvalidArgumentError("weight: no path");
  for (size_t i = 0; i < w.steps.size(); ++i) {
    NAS_RETURN_IF_ERROR(CheckChoices(
        space, w.steps[i].path,
        i == 0 ? std::string("weight.path") : absl::StrCat("weight.chain[", i - 1, "].path")));
  }
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<DataEntry> data, Data(t.data, space));
  const TaskData& d = t.data;
  const bool chained = w.steps.size() > 1;
  // The tensors as the steps so far left them (each step's modules, then its momentum), in
  // host memory: the result.
  std::map<std::string, torch::Tensor> left;
  for (size_t i = 0; i < w.steps.size(); ++i) {
    SuperNet net(space, KeepForPath(space, w.steps[i].path));
    net->to(device_);
    PathSgd sgd(SgdOptions{});
    NAS_RETURN_IF_ERROR(
        LoadTensors(t, *net, &sgd, source, &r->stats, chained ? &left : nullptr));
    if (Asked(control.abandoned)) return absl::AbortedError("abandoned");
    BatchSource& train = data->SearchTrain(d);
    const double waited = train.wait_seconds();
    WeightTaskResult result = RunWeightTask(net, sgd, train, w.steps[i], w.label_smoothing, device_);
    r->stats.data_wait_seconds += train.wait_seconds() - waited;
    if (i == 0) {
      r->loss = result.loss;
      r->accuracy = result.accuracy;
    } else {
      r->chain_losses.push_back(result.loss);
      r->chain_accuracies.push_back(result.accuracy);
    }
    int64_t step_bytes = 0;
    for (auto& [name, tensor] : ModuleTensors(*net, true, true)) {
      step_bytes += TensorBytes(tensor);
      left[name] = ToHost(tensor);
    }
    for (const auto& [name, tensor] : sgd.momentum()) {
      step_bytes += TensorBytes(tensor);
      left[kMomentumPrefix + name] = ToHost(tensor);
    }
    SyncDevice();
    r->stats.resident_bytes = std::max(r->stats.resident_bytes, step_bytes);
  }
  if (chained) {  // every listed tensor belongs to some step's path
    for (const ListedTensor& ref : t.tensors) {
      absl::string_view name = ref.name;
      if (absl::StartsWith(name, kMomentumPrefix)) name.remove_prefix(sizeof(kMomentumPrefix) - 1);
      if (left.count(std::string(name)) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("task lists ", ref.name, ", which no path of the chain has"));
      }
    }
  }
  for (auto& [name, tensor] : left) {
    r->stats.held_bytes += TensorBytes(tensor);
    r->tensors.emplace_back(name, std::move(tensor));
  }
  return absl::OkStatus();
}

absl::Status TaskRunner::RunArch(const RunnerTask& t, const ArchSpec& spec,
                                 const SearchSpace& space, TensorSource& source,
                                 const TaskControl& control, RunnerResult* r) {
  NAS_RETURN_IF_ERROR(CheckSearchData(t.data));
  if (spec.rl) {
    NAS_RETURN_IF_ERROR(CheckChoices(space, spec.path, "arch.path"));
  } else {
    std::vector<int> active, other;
    for (const PairSample& p : spec.pairs) {
      active.push_back(p.active);
      other.push_back(p.other);
    }
    NAS_RETURN_IF_ERROR(CheckChoices(space, active, "arch.active"));
    NAS_RETURN_IF_ERROR(CheckChoices(space, other, "arch.other"));
  }
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<DataEntry> data, Data(t.data, space));

  SuperNet net(space, KeepForArchTask(space, spec));
  net->to(device_);
  NAS_RETURN_IF_ERROR(LoadTensors(t, *net, nullptr, source, &r->stats, nullptr));
  if (Asked(control.abandoned)) return absl::AbortedError("abandoned");
  BatchSource& valid = data->SearchValid(t.data);
  const double waited = valid.wait_seconds();
  ArchTaskResult result = RunArchTask(net, valid, spec, device_);
  r->stats.data_wait_seconds += valid.wait_seconds() - waited;
  r->loss = result.ce;
  r->accuracy = result.accuracy;
  for (const std::vector<double>& g : result.gate_grads) {
    for (double v : g) r->gate_grads.push_back(v);
  }
  for (const auto& [name, tensor] : ModuleTensors(*net, true, true)) {
    r->stats.resident_bytes += TensorBytes(tensor);
  }
  // The step ran BatchNorm in train mode: its running statistics changed.
  for (auto& [name, tensor] : ModuleTensors(*net, false, true)) {
    r->tensors.emplace_back(name, ToHost(tensor));
  }
  SyncDevice();
  return absl::OkStatus();
}

absl::Status TaskRunner::RunFinal(const RunnerTask& t, const FinalSpec& f,
                                  const SearchSpace& space, const TaskControl& control,
                                  RunnerResult* r) {
  const TaskData& d = t.data;
  if (f.label.empty()) return absl::InvalidArgumentError("final.label: must not be empty");
  if (d.batch_size < 1) return absl::InvalidArgumentError("data.batch_size: must be >= 1");
  NAS_RETURN_IF_ERROR(CheckChoices(space, f.choices, "final.choices"));
  NAS_ASSIGN_OR_RETURN(NetworkConfig config, space.Derive(f.choices));
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<DataEntry> entry, Data(d, space));
  const JobData& data = *entry->data;

  auto t0 = std::chrono::steady_clock::now();
  torch::manual_seed(f.seed);
  Network net(config);
  net->to(device_);
  TrainOptions to;
  to.epochs = f.epochs;
  to.batch_size = d.batch_size;
  to.lr = f.lr;
  to.label_smoothing = f.label_smoothing;
  to.augment = Augment{d.augment_pad, d.augment_hflip};
  to.seed = f.seed;
  to.device = device_;
  std::unique_ptr<BatchSource> train = data.FinalTrain(d.batch_size, f.seed, to.augment);
  int logged_epoch = -1;
  bool interrupted = false;
  absl::Status trained = TorchRun(
      [&] {
        TrainNetwork(net, *train, to, [&](const TrainProgress& p) {
          if (Asked(control.interrupt)) {
            interrupted = true;
            throw TaskInterrupted();
          }
          if (p.epoch != logged_epoch && p.step > 0) {
            logged_epoch = p.epoch;
            Log(absl::StrCat("final ", f.label, ": epoch ", p.epoch + 1, "/", to.epochs, ", step ",
                             p.step, "/", p.total_steps, ", loss ", p.loss));
          }
        });
      },
      "final training");
  if (interrupted || Asked(control.abandoned)) return absl::AbortedError("abandoned");
  NAS_RETURN_IF_ERROR(trained);
  double train_seconds = SecondsSince(t0);
  const torch::Device dev = device_;
  std::unique_ptr<BatchSource> test = data.Test(kEvalBatchSize);
  EvalResult ev = Evaluate(
      [&](const torch::Tensor& x) { return net->forward(x.to(dev)).to(torch::kCPU); }, *test);
  r->stats.data_wait_seconds += train->wait_seconds() + test->wait_seconds();
  // The latency of the derived network is measured on the CPU (the job's latency device is a
  // CPU table unless the profile options say otherwise).
  net->to(torch::kCPU);

  ProfileOptions po;
  po.batch_size = f.profile_batch_size > 0 ? f.profile_batch_size : 1;
  po.threads = f.profile_threads > 0 ? f.profile_threads : at::get_num_threads();
  absl::StatusOr<LatencyEntry> measured = MeasureNetwork(config, po);
  ConfigureCpuRuntime(o_.threads);
  NAS_RETURN_IF_ERROR(measured.status());

  Json report = {{"label", f.label},
                 {"test_accuracy", ev.accuracy},
                 {"test_loss", ev.loss},
                 {"measured_latency_ms", measured->mean_ms},
                 {"measured_latency_std_ms", std::sqrt(measured->var)},
                 {"parameters", CountParameters(*net)},
                 {"macs", config.Macs()},
                 {"train_seconds", train_seconds}};
  r->report_json = report.dump();
  for (const auto& [name, tensor] : ModuleTensors(*net, true, true)) {
    r->stats.resident_bytes += TensorBytes(tensor);
  }
  torch::serialize::OutputArchive archive;
  net->save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  r->files.emplace_back(f.label + ".pt", bytes.str());
  // The same network as ONNX (worker/onnx_export.h): an artifact next to the weights.
  OnnxExportOptions onnx;
  onnx.space = space.name();
  onnx.architecture = Architecture{space.name(), f.choices}.ToString(space);
  onnx.input_mean = data.mean();
  onnx.input_std = data.std();
  onnx.weights_source = f.label + ".pt";
  NAS_ASSIGN_OR_RETURN(std::string model, OnnxFromModule(config, *net, onnx));
  r->files.emplace_back(f.label + ".onnx", std::move(model));
  return absl::OkStatus();
}

absl::Status TaskRunner::RunEval(const RunnerTask& t, const EvalSpec& s,
                                 const SearchSpace& space, TensorSource& source,
                                 const TaskControl& control, RunnerResult* r) {
  NAS_RETURN_IF_ERROR(CheckSearchData(t.data));
  if (s.paths.empty()) return absl::InvalidArgumentError("eval.paths: must not be empty");
  constexpr size_t kMaxPaths = 256;
  if (s.paths.size() > kMaxPaths) {
    return absl::InvalidArgumentError(absl::StrCat("eval.paths: ", s.paths.size(),
                                                   " paths, more than the limit of ", kMaxPaths));
  }
  if (s.batch_size < 0) return absl::InvalidArgumentError("eval.batch_size: must be >= 0");
  for (size_t i = 0; i < s.paths.size(); ++i) {
    NAS_RETURN_IF_ERROR(CheckChoices(space, s.paths[i], absl::StrCat("eval.paths[", i, "]")));
  }
  NAS_ASSIGN_OR_RETURN(std::shared_ptr<DataEntry> data, Data(t.data, space));
  SuperNet net(space, KeepForPaths(space, s.paths));
  net->to(device_);
  NAS_RETURN_IF_ERROR(LoadTensors(t, *net, nullptr, source, &r->stats, nullptr));
  if (Asked(control.abandoned)) return absl::AbortedError("abandoned");
  std::unique_ptr<BatchSource> valid =
      data->data->ValidInOrder(s.batch_size > 0 ? s.batch_size : t.data.batch_size);
  r->path_accuracies = EvaluatePaths(net, s.paths, *valid, device_);
  r->stats.data_wait_seconds += valid->wait_seconds();
  for (const auto& [name, tensor] : ModuleTensors(*net, true, true)) {
    r->stats.resident_bytes += TensorBytes(tensor);
  }
  return absl::OkStatus();
}

absl::Status TaskRunner::Run(const RunnerTask& t, TensorSource& source,
                             const TaskControl& control, RunnerResult* r) {
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::FromJson(t.space_json));
  absl::Status inner;
  absl::Status outer = TorchRun(
      [&] {
        inner = std::visit(
            [&](const auto& spec) -> absl::Status {
              using S = std::decay_t<decltype(spec)>;
              if constexpr (std::is_same_v<S, InitSpec>) {
                return RunInit(t, spec, space, r);
              } else if constexpr (std::is_same_v<S, WeightChain>) {
                return RunWeight(t, spec, space, source, control, r);
              } else if constexpr (std::is_same_v<S, ArchSpec>) {
                return RunArch(t, spec, space, source, control, r);
              } else if constexpr (std::is_same_v<S, FinalSpec>) {
                return RunFinal(t, spec, space, control, r);
              } else if constexpr (std::is_same_v<S, EvalSpec>) {
                return RunEval(t, spec, space, source, control, r);
              } else {
                static_assert(sizeof(S) == 0, "TaskRunner::Run: a task kind without a Run...");
              }
            },
            t.spec);
      },
      absl::StrCat(t.label.empty() ? "" : t.label + " ", "task"));
  return outer.ok() ? inner : outer;
}

}  // namespace nas
