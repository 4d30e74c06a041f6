// The task runner: one search task (init, weight, arch, final, eval) in, its result out, on the
// worker's device. LibTorch only: no gRPC, no protobuf, no coordinator. The gRPC worker loop
// (remote_worker.h) converts the wire's Task into a RunnerTask, hands it its input tensors
// through a TensorSource (its tensor cache, fetching what is stale) and sends the result; tests
// and benchmarks (tests/worker/task_runner_test.cc, the GPU checks) call it directly with a
// MapTensorSource.
//
//   NAS_ASSIGN_OR_RETURN(std::unique_ptr<TaskRunner> runner, TaskRunner::Create({.device = "cuda"}));
//   RunnerTask task;  task.space_json = space.ToJson().dump();  task.data = ...;
//   task.kind = WeightChain{{spec}, /*label_smoothing=*/0.1};
//   task.tensors = {{"stem.conv.weight", 3}, ...};      // what the coordinator lists
//   MapTensorSource source(tensors);                     // name -> host tensor
//   RunnerResult r;
//   NAS_RETURN_IF_ERROR(runner->Run(task, source, TaskControl{}, &r));
//   // r.loss, r.tensors (host memory: what goes on the wire)
//
// Devices: modules, optimizer state and batches live on options.device ("cpu", "cuda",
// "cuda:N"). Input tensors are copied from host memory into the modules once per task; result
// tensors are copied back into host memory (pinned, with non-blocking copies and one
// synchronisation, on CUDA) - the only crossings. On CUDA the next training batch is prepared on
// a helper thread while the current step runs.
//
// Adding a kind of task: a spec struct (below, next to InitSpec), an entry in TaskSpec, a
// `Run...` member in task_runner.cc that fills a RunnerResult, and its case in Run (the
// std::visit there does not compile until it has one); the worker loop's proto conversion
// (remote_worker.cc TaskFromProto) and ResultToProto then carry it.
//
// Thread-safety: one Run at a time per TaskRunner (it keeps the loaded data sets).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/search_driver.h"
#include "core/search_space.h"
#include "worker/data.h"
#include "worker/train.h"

namespace nas {

// OK when `dir` resolves (symbolic links followed, ".." removed) to one of `roots` or below;
// else PermissionDenied naming the data_dir, what it resolves to and the roots.
absl::Status CheckDataDir(const std::string& dir, const std::vector<std::string>& roots);

// "cpu", "cuda" or "cuda:N" as a device; InvalidArgument naming the field otherwise, and
// FailedPrecondition for CUDA where LibTorch sees no GPU (or not GPU N).
absl::StatusOr<torch::Device> ParseDevice(const std::string& device, const std::string& field);

// The data a task reads (proto DataSpec).
struct TaskData {
  std::string dataset;
  std::string data_dir;  // "" = the data set's default directory
  int64_t train_subset = 0;
  int64_t test_subset = 0;
  int64_t valid_size = 0;
  uint64_t split_seed = 0;
  int batch_size = 0;
  uint64_t train_seed = 0;
  uint64_t valid_seed = 0;
  int augment_pad = 0;
  bool augment_hflip = false;
  bool stream_images = false;  // folder: decode batches as tasks ask (worker/job_data.h)
  bool skip_bad_files = false;  // folder: leave bad image files out (named in the log, counted)
};

// Build the supernet (torch seed = seed) and return every tensor; the split sizes.
struct InitSpec {
  uint64_t seed = 0;
};
// k SGD steps on a path, or a chain of such tasks, each on what the ones before left.
struct WeightChain {
  std::vector<WeightTaskSpec> steps;  // at least one
  double label_smoothing = 0;
};
// The binary-gate arch step (or rl: the path's accuracy) on one validation batch.
using ArchSpec = ArchTaskSpec;
// Train a derived network on the full training set, evaluate it and measure its latency.
struct FinalSpec {
  std::string label;
  std::vector<int> choices;
  int epochs = 0;
  double lr = 0;
  double label_smoothing = 0;
  uint64_t seed = 0;
  int profile_batch_size = 0;  // 0: 1
  int profile_threads = 0;     // 0: the worker's threads
};
// Paths of the trained supernet evaluated with their inherited weights (the report's accuracy-
// latency view): each path's accuracy on the validation split (worker/path_eval.h).
struct EvalSpec {
  std::vector<std::vector<int>> paths;  // at least one
  int batch_size = 0;                   // 0: the data's batch size
};
using TaskSpec = std::variant<InitSpec, WeightChain, ArchSpec, FinalSpec, EvalSpec>;

// A tensor the task lists, at the coordinator's version.
struct ListedTensor {
  std::string name;
  uint64_t version = 0;
};

struct RunnerTask {
  std::string space_json;
  TaskData data;
  std::vector<ListedTensor> tensors;  // what the task needs (a weight chain: every path's)
  TaskSpec spec;
  std::string label;  // for messages: "weight", "arch", ... Default "".
};

// What a task cost (the worker's stats line and TaskOutcome's accounting).
struct RunnerStats {
  int64_t fetched_bytes = 0;  // by the TensorSource
  int64_t tensors_fetched = 0;
  int64_t cache_hits = 0;
  // The most tensor bytes a step of the task materialised (one path; the step's modules and
  // momentum), and what the task held for its result (a chain: every path's tensors).
  int64_t resident_bytes = 0;
  int64_t held_bytes = 0;
  double load_seconds = 0;  // fetching and loading input tensors
  // Waiting for batches a streamed image folder had not decoded yet (BatchSource::wait_seconds).
  double data_wait_seconds = 0;
};

// Where a task's input tensors come from: host tensors by name, at the versions the task lists.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Makes `refs` available to Get, fetching those not at hand at the listed version (and
  // counting into `stats`). A non-OK status ends the task with it (Aborted: abandoned).
  virtual absl::Status Ensure(const std::vector<const ListedTensor*>& refs,
                              RunnerStats* stats) = 0;
  // A tensor Ensure made available (nullptr if none).
  virtual const torch::Tensor* Get(const std::string& name) = 0;
};

// Tensors held in a map (tests, benchmarks): versions are not checked; a name it lacks is
// InvalidArgument.
class MapTensorSource : public TensorSource {
 public:
  explicit MapTensorSource(std::map<std::string, torch::Tensor> tensors)
      : tensors_(std::move(tensors)) {}
  absl::Status Ensure(const std::vector<const ListedTensor*>& refs, RunnerStats* stats) override;
  const torch::Tensor* Get(const std::string& name) override;

 private:
  std::map<std::string, torch::Tensor> tensors_;
};

// How the caller stops a task. Either may be empty (never).
struct TaskControl {
  // True once the task's result is no longer wanted: checked after its tensors are loaded.
  std::function<bool()> abandoned;
  // True when a long task (final) must stop between batches.
  std::function<bool()> interrupt;
};

// What a task produced. Tensors are in host memory (what goes on the wire), in the order sent.
struct RunnerResult {
  double loss = 0;      // weight: mean loss of the (first) task; arch: CE
  double accuracy = 0;
  std::vector<double> chain_losses;  // weight chain: one per further task
  std::vector<double> chain_accuracies;
  std::vector<double> gate_grads;  // arch: two per edge (active, other)
  int64_t train_size = 0;          // init: images in the training / validation split
  int64_t valid_size = 0;
  std::string report_json;  // final
  std::vector<double> path_accuracies;  // eval: one per path, in order
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<std::pair<std::string, std::string>> files;  // final: name, bytes (weights)
  RunnerStats stats;
};

struct TaskRunnerOptions {
  // Where modules, optimizer state and batches live: "cpu", "cuda" or "cuda:N". Default "cpu".
  std::string device = "cpu";
  // Overrides the data directory of every task (the operator's; not checked). Default "".
  std::string data_dir;
  // The folders a task's data_dir may name (see CheckDataDir). Default {"/usr/share/datasets"}.
  std::vector<std::string> data_roots = {"/usr/share/datasets"};
  // Intra-op threads to restore after a final task's latency measurement. Default 1.
  int threads = 1;
  // Data sets kept loaded (most recently used). Default 2.
  int max_data_sets = 2;
  // Decoding threads of each image-folder loader (a streamed job has one for its training and
  // one for its validation batches). Default 2.
  int loader_threads = 2;
  // Progress lines (data loading, final training epochs). Default: none.
  std::function<void(const std::string&)> log;
};

class TaskRunner {
 public:
  // InvalidArgument / FailedPrecondition: a bad or unavailable device (ParseDevice).
  static absl::StatusOr<std::unique_ptr<TaskRunner>> Create(TaskRunnerOptions options);

  // Runs `task` with its tensors from `source`. OK: `result` holds the outcome and tensors.
  // InvalidArgument: the task is malformed (names the field); Aborted: abandoned or
  // interrupted through `control`; the source's errors; Internal: LibTorch failed.
  absl::Status Run(const RunnerTask& task, TensorSource& source, const TaskControl& control,
                   RunnerResult* result);

  const torch::Device& device() const { return device_; }

 private:
  struct DataEntry;
  TaskRunner(TaskRunnerOptions options, torch::Device device)
      : o_(std::move(options)), device_(device) {}
  absl::StatusOr<std::shared_ptr<DataEntry>> Data(const TaskData& d, const SearchSpace& space);
  absl::Status LoadTensors(const RunnerTask& t, torch::nn::Module& net, PathSgd* sgd,
                           TensorSource& source, RunnerStats* stats,
                           const std::map<std::string, torch::Tensor>* chain);
  absl::Status RunInit(const RunnerTask& t, const InitSpec& s, const SearchSpace& space,
                       RunnerResult* r);
  absl::Status RunWeight(const RunnerTask& t, const WeightChain& s, const SearchSpace& space,
                         TensorSource& source, const TaskControl& control, RunnerResult* r);
  absl::Status RunArch(const RunnerTask& t, const ArchSpec& s, const SearchSpace& space,
                       TensorSource& source, const TaskControl& control, RunnerResult* r);
  absl::Status RunFinal(const RunnerTask& t, const FinalSpec& s, const SearchSpace& space,
                        const TaskControl& control, RunnerResult* r);
  absl::Status RunEval(const RunnerTask& t, const EvalSpec& s, const SearchSpace& space,
                       TensorSource& source, const TaskControl& control, RunnerResult* r);
  void Log(const std::string& line) const {
    if (o_.log) o_.log(line);
  }
  // A host copy of a device tensor (pinned and non-blocking on CUDA: call SyncDevice before
  // reading it).
  torch::Tensor ToHost(const torch::Tensor& t) const;
  void SyncDevice() const;

  TaskRunnerOptions o_;
  torch::Device device_;
  std::list<std::shared_ptr<DataEntry>> data_sets_;  // most recently used last
};

// Checks that `choices` has one valid candidate per edge of `space`; InvalidArgument naming
// `what` otherwise.
absl::Status CheckChoices(const SearchSpace& space, const std::vector<int>& choices,
                          const std::string& what);

}  // namespace nas
