#include "worker/remote_worker.h"

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/json_fields.h"
#include "latency_service/grpc_tls.h"
#include "core/param_names.h"
#include "core/search_driver.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "nas/common.pb.h"
#include "nas/worker.grpc.pb.h"
#include "proto/task_label.h"
#include "worker/data.h"
#include "worker/ops.h"
#include "worker/profiler.h"
#include "worker/runtime.h"
#include "worker/task_tensors.h"
#include "worker/tasks.h"
#include "worker/tensor_blob.h"
#include "worker/torch_status.h"
#include "worker/train.h"

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

namespace {

void Log(const std::string& message) {
  std::string when = absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::Now(), absl::LocalTimeZone());
  std::fprintf(stderr, "%s nas_worker: %s\n", when.c_str(), message.c_str());
  std::fflush(stderr);
}

std::string GrpcText(const grpc::Status& s) {
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())), ": ",
                      s.error_message());
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// 100 ms, 200 ms, ... up to the max; Reset() after a success.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max) : initial_(initial), max_(max) {}
  absl::Duration Next() {
    absl::Duration d = next_ == absl::ZeroDuration() ? initial_ : next_;
    next_ = std::min(d * 2, max_);
    return std::min(d, max_);
  }
  void Reset() { next_ = absl::ZeroDuration(); }

 private:
  absl::Duration initial_, max_;
  absl::Duration next_ = absl::ZeroDuration();
};

// Thrown from a training callback to stop a final task whose lease is gone (TorchRun turns it
// into a status; the caller then sees the abandon flag).
struct TaskAbandoned : std::runtime_error {
  TaskAbandoned() : std::runtime_error("task abandoned") {}
};

// Runs f, turning LibTorch exceptions into a status.
absl::Status Guarded(const std::function<absl::Status()>& f, const std::string& what) {
  absl::Status inner;
  absl::Status outer = TorchRun([&] { inner = f(); }, what);
  return outer.ok() ? inner : outer;
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

// The data of a job, as the single-process search builds it (worker/search.cc LoadData).
struct JobData {
  DataSet train_full;  // after the subset, before the validation split (final training)
  DataSplit split;     // the search's training and validation splits
  DataSet test;
};

// What a task produced: the outcome and the tensors to send.
struct TaskResult {
  TaskOutcome outcome;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<TensorBlob> raw;  // opaque blobs (a final task's weights)
};

// Accounting of one task (stats line and outcome).
struct TaskStats {
  int64_t fetched_bytes = 0;
  // The most tensor bytes a step of the task materialised (one path; the step's modules and
  // momentum), and what the task held for its result (a chain: every path's tensors).
  int64_t resident_bytes = 0;
  int64_t held_bytes = 0;
  int64_t tensors_fetched = 0;
  int64_t cache_hits = 0;
  // Where the task's time went (the stats line): waiting in AcquireTask for it, fetching and
  // loading its tensors, the step itself, and uploading the result (CompleteTask, which returns
  // once the coordinator applied it).
  double acquire_seconds = 0;
  double load_seconds = 0;
  double run_seconds = 0;
  double send_seconds = 0;
};

// A fetched tensor at the version the coordinator listed, as a contiguous CPU tensor.
struct CachedTensor {
  uint64_t version = 0;
  torch::Tensor tensor;
  uint64_t last_used = 0;  // the task (RemoteWorker::Impl::cache_clock) that last listed it
};

constexpr int kMaxDataSets = 2;

}  // namespace

struct RemoteWorker::Impl {
  RemoteWorkerOptions o;

  // A call's deadline and the worker's credential.
  void Prepare(grpc::ClientContext* context, absl::Duration timeout) const {
    SetDeadline(context, timeout);
    if (!o.token.empty()) context->AddMetadata("authorization", "Bearer " + o.token);
  }
  std::unique_ptr<WorkerGateway::Stub> stub;
  int threads = 1;  // effective intra-op threads
  std::atomic<int64_t> tasks_done{0};
  std::thread heartbeat_thread;

  absl::Mutex mu;
  std::string worker_id ABSL_GUARDED_BY(mu);
  int heartbeat_ms ABSL_GUARDED_BY(mu) = 1000;
  int lease_ms ABSL_GUARDED_BY(mu) = 10000;
  // The lease of the running task ("" when idle) and whether it must be dropped.
  std::string lease ABSL_GUARDED_BY(mu);
  bool abandoned ABSL_GUARDED_BY(mu) = false;
  bool sending ABSL_GUARDED_BY(mu) = false;  // the result is being uploaded
  std::string abandon_reason ABSL_GUARDED_BY(mu);
  // The task was abandoned because the worker is stopping, its lease still current: it is
  // handed back (ReleaseTask) so that the coordinator re-issues it at once.
  bool hand_back ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool reachable ABSL_GUARDED_BY(mu) = true;  // for logging state changes only
  // Set by a re-registration (the coordinator may have restarted): the main thread drops its
  // tensor cache before the next task.
  bool drop_cache ABSL_GUARDED_BY(mu) = false;
  grpc::ClientContext* poll ABSL_GUARDED_BY(mu) = nullptr;  // AcquireTask in flight

  // Serialises re-registration between the main and heartbeat threads.
  absl::Mutex register_mu;

  // Main thread only. Tensor cache of the current job: name -> version and tensor; after each
  // task it holds that task's tensors and, within o.cache_bytes, the most recently used others.
  std::string cache_job;
  std::map<std::string, CachedTensor> cache;
  uint64_t cache_clock = 0;  // tasks handled, for the cache's recency
  // Loaded data sets, most recently used last.
  std::list<std::pair<std::string, std::shared_ptr<const JobData>>> data_sets;

  // --- state helpers ---

  bool Stopping() {
    absl::MutexLock l(&mu);
    return stopping;
  }
  // Sleeps for d; returns true (early) when stopping.
  bool SleepUnlessStopping(absl::Duration d) {
    bool stop = mu.LockWhenWithTimeout(absl::Condition(&stopping), d);
    mu.Unlock();
    return stop;
  }
  std::string WorkerId() {
    absl::MutexLock l(&mu);
    return worker_id;
  }
  bool Abandoned() {
    absl::MutexLock l(&mu);
    return abandoned;
  }
  void Abandon(const std::string& reason, bool stopping_worker = false) {
    absl::MutexLock l(&mu);
    if (abandoned) return;
    abandoned = true;
    abandon_reason = reason;
    hand_back = stopping_worker;
    Log(absl::StrCat("abandoning the task of lease ", lease, ": ", reason));
  }
  void NoteCall(bool ok, const std::string& what, const grpc::Status& s) {
    absl::MutexLock l(&mu);
    if (ok && !reachable) Log("coordinator reachable again");
    if (!ok && reachable) {
      Log(absl::StrCat("coordinator: ", what, " failed (", GrpcText(s), "); retrying every ",
                       absl::FormatDuration(o.backoff_initial), " .. ",
                       absl::FormatDuration(o.backoff_max), " until it answers"));
    }
    reachable = ok;
  }

  // --- registration and heartbeats ---

  // Registers, retrying until it succeeds; false when stopped first.
  bool RegisterWithRetry() {
    Backoff backoff(o.backoff_initial, o.backoff_max);
    while (!Stopping()) {
      RegisterWorkerRequest request;
      request.set_name(o.name);
      request.set_device(o.device);
      request.set_threads(threads);
      for (const std::string& d : o.latency_devices) request.add_latency_devices(d);
      RegisterWorkerReply reply;
      grpc::ClientContext context;
      Prepare(&context, o.rpc_timeout);
      grpc::Status s = stub->RegisterWorker(&context, request, &reply);
      if (s.ok() && !reply.worker_id().empty()) {
        NoteCall(true, "RegisterWorker", s);
        absl::MutexLock l(&mu);
        bool again = !worker_id.empty();
        worker_id = reply.worker_id();
        heartbeat_ms = reply.heartbeat_ms() > 0 ? reply.heartbeat_ms() : 1000;
        lease_ms = reply.lease_ms() > 0 ? reply.lease_ms() : 10 * heartbeat_ms;
        if (again) drop_cache = true;
        Log(absl::StrCat(again ? "registered again as " : "registered as ", worker_id, " (", o.name,
                         ", ", o.device, ", ", threads, " threads; heartbeat ", heartbeat_ms,
                         " ms, lease ", lease_ms, " ms)"));
        return true;
      }
      if (s.ok()) s = grpc::Status(grpc::StatusCode::INTERNAL, "empty worker_id in the reply");
      NoteCall(false, "RegisterWorker", s);
      if (SleepUnlessStopping(backoff.Next())) return false;
    }
    return false;
  }

  // Registers again unless another thread already did since `stale` was current.
  bool Reregister(const std::string& stale) {
    absl::MutexLock r(&register_mu);
    if (WorkerId() != stale) return true;
    Log(absl::StrCat("the coordinator does not know worker ", stale,
                     " (restarted?); registering again"));
    return RegisterWithRetry();
  }

  // Hands a lease back (the worker is stopping and will not complete it), so that the
  // coordinator re-issues its task now rather than when the lease expires. One try: if it fails
  // the lease expires as it would have.
  void ReleaseLease(const std::string& lease_id, const std::string& reason) {
    ReleaseTaskRequest request;
    request.set_worker_id(WorkerId());
    request.set_lease_id(lease_id);
    request.set_reason(reason);
    ReleaseTaskReply reply;
    grpc::ClientContext context;
    Prepare(&context, std::min(o.rpc_timeout, absl::Seconds(5)));
    grpc::Status s = stub->ReleaseTask(&context, request, &reply);
    Log(s.ok() ? absl::StrCat("handed lease ", lease_id, " back: the coordinator re-issues it now")
               : absl::StrCat("could not hand lease ", lease_id, " back (", GrpcText(s),
                              "): it is re-issued when it expires"));
  }

  void HeartbeatLoop() {
    Backoff backoff(o.backoff_initial, o.backoff_max);
    bool failing = false;
    while (true) {
      absl::Duration wait;
      {
        absl::MutexLock l(&mu);
        wait = absl::Milliseconds(heartbeat_ms);
      }
      if (failing) wait = std::min(wait, backoff.Next());
      if (SleepUnlessStopping(wait)) return;
      std::string id, held;
      {
        absl::MutexLock l(&mu);
        id = worker_id;
        held = lease;
      }
      HeartbeatRequest request;
      request.set_worker_id(id);
      request.set_lease_id(held);
      HeartbeatReply reply;
      grpc::ClientContext context;
      Prepare(&context, o.rpc_timeout);
      grpc::Status s = stub->Heartbeat(&context, request, &reply);
      if (s.ok()) {
        NoteCall(true, "Heartbeat", s);
        failing = false;
        backoff.Reset();
        if (!held.empty() && !reply.lease_valid()) {
          bool same;
          {
            absl::MutexLock l(&mu);
            same = lease == held && !sending;
          }
          if (same) Abandon("the coordinator says the lease is no longer valid");
        }
      } else if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        NoteCall(true, "Heartbeat", s);
        if (!Reregister(id)) return;
      } else {
        NoteCall(false, "Heartbeat", s);
        failing = true;
      }
    }
  }

  // --- data ---

  absl::StatusOr<std::shared_ptr<const JobData>> Data(const DataSpec& d, const SearchSpace& space) {
    std::string dir = o.data_dir.empty() ? d.data_dir() : o.data_dir;
    if (o.data_dir.empty() && !d.data_dir().empty()) {
      NAS_RETURN_IF_ERROR(CheckDataDir(d.data_dir(), o.data_roots));
    }
    std::string key = absl::StrCat(d.dataset(), "\n", dir, "\n", d.train_subset(), "\n",
                                   d.test_subset(), "\n", d.valid_size(), "\n", d.split_seed());
    std::shared_ptr<const JobData> data;
    for (auto it = data_sets.begin(); it != data_sets.end(); ++it) {
      if (it->first == key) {
        data = it->second;
        data_sets.splice(data_sets.end(), data_sets, it);
        break;
      }
    }
    if (data == nullptr) {
      auto t0 = std::chrono::steady_clock::now();
      auto loaded = std::make_shared<JobData>();
      NAS_ASSIGN_OR_RETURN(loaded->train_full, LoadDataSet(d.dataset(), dir, true));
      NAS_ASSIGN_OR_RETURN(loaded->test, LoadDataSet(d.dataset(), dir, false));
      uint64_t seed = d.split_seed();
      if (d.train_subset() > 0) {
        loaded->train_full = BalancedSubset(loaded->train_full, d.train_subset(), seed);
      }
      if (d.test_subset() > 0) {
        loaded->test = BalancedSubset(loaded->test, d.test_subset(), seed + 1);
      }
      if (d.valid_size() > 0) {
        NAS_ASSIGN_OR_RETURN(loaded->split,
                             SplitValidation(loaded->train_full, d.valid_size(), seed));
      }
      Log(absl::StrCat("data: ", d.dataset(), dir.empty() ? "" : absl::StrCat(" from ", dir), ": ",
                       loaded->split.train.size(), " train / ", loaded->split.valid.size(),
                       " valid / ", loaded->test.size(), " test (", loaded->train_full.size(),
                       " for final training), loaded in ", SecondsSince(t0), " s"));
      data = loaded;
      data_sets.emplace_back(key, data);
      while (data_sets.size() > kMaxDataSets) data_sets.pop_front();
    }
    const DataSet& t = data->train_full;
    if (t.channels() != space.input_channels() || t.height() != space.input_height() ||
        t.width() != space.input_width()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: ", d.dataset(), " images are ", t.height(), "x", t.width(), "x",
                       t.channels(), " but space ", space.name(), " expects ", space.input_height(),
                       "x", space.input_width(), "x", space.input_channels()));
    }
    if (t.num_classes > space.num_classes()) {
      return absl::InvalidArgumentError(absl::StrCat("dataset: ", d.dataset(), " has ",
                                                     t.num_classes, " classes, space ",
                                                     space.name(), " only ", space.num_classes()));
    }
    return data;
  }

  static absl::Status CheckSearchData(const DataSpec& d) {
    if (d.valid_size() <= 0) {
      return absl::InvalidArgumentError("data.valid_size: must be positive for search tasks");
    }
    if (d.batch_size() < 1) return absl::InvalidArgumentError("data.batch_size: must be >= 1");
    return absl::OkStatus();
  }

  // --- tensors in ---

  // Fetches `refs` into the cache. A refused lease abandons the task (Aborted); an unreachable
  // coordinator is retried until the lease is known lost or the worker stops. Malformed data
  // and INVALID_ARGUMENT are task errors.
  absl::Status Fetch(const std::string& lease_id, const std::vector<const TensorRef*>& refs,
                     TaskStats* stats) {
    if (refs.empty()) return absl::OkStatus();
    Backoff backoff(o.backoff_initial, o.backoff_max);
    int other_failures = 0;
    while (true) {
      if (Abandoned()) return absl::AbortedError("abandoned");
      if (Stopping()) {
        Abandon("stopping while waiting for the coordinator", /*stopping_worker=*/true);
        return absl::AbortedError("abandoned");
      }
      FetchTensorsRequest request;
      request.set_lease_id(lease_id);
      for (const TensorRef* r : refs) request.add_names(r->name());
      grpc::ClientContext context;
      Prepare(&context, o.stream_timeout);
      std::unique_ptr<grpc::ClientReader<TensorBlob>> reader =
          stub->FetchTensors(&context, request);
      TaskTensorAssembler in(static_cast<int64_t>(refs.size()));
      absl::Status bad;
      TensorBlob blob;
      while (reader->Read(&blob)) {
        bad = in.Add(std::move(blob));
        blob.Clear();
        if (!bad.ok()) {
          context.TryCancel();
          break;
        }
      }
      grpc::Status s = reader->Finish();
      if (!bad.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("FetchTensors: ", bad.message()));
      }
      if (s.ok()) {
        NoteCall(true, "FetchTensors", s);
        int64_t bytes = in.bytes();
        absl::StatusOr<std::map<std::string, TensorBlob>> got = std::move(in).Finish();
        if (!got.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("FetchTensors: ", got.status().message()));
        }
        for (const TensorRef* r : refs) {
          auto it = got->find(r->name());
          if (it == got->end()) {
            return absl::InvalidArgumentError(
                absl::StrCat("FetchTensors: the coordinator did not send ", r->name()));
          }
          NAS_ASSIGN_OR_RETURN(torch::Tensor t, FromWire(it->second));
          std::string().swap(*it->second.mutable_data());
          cache[r->name()] = CachedTensor{r->version(), std::move(t), cache_clock};
        }
        if (got->size() != refs.size()) {
          for (const auto& [name, w] : *got) {
            bool asked = std::any_of(refs.begin(), refs.end(),
                                     [&](const TensorRef* r) { return r->name() == name; });
            if (!asked) {
              return absl::InvalidArgumentError(
                  absl::StrCat("FetchTensors: the coordinator sent ", name, ", not asked for"));
            }
          }
        }
        stats->fetched_bytes += bytes;
        stats->tensors_fetched += static_cast<int64_t>(refs.size());
        return absl::OkStatus();
      }
      if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
          s.error_code() == grpc::StatusCode::NOT_FOUND) {
        NoteCall(true, "FetchTensors", s);
        Abandon(absl::StrCat("FetchTensors refused: ", GrpcText(s)));
        return absl::AbortedError("abandoned");
      }
      if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {  // we asked for bad names
        return absl::InvalidArgumentError(absl::StrCat("FetchTensors: ", s.error_message()));
      }
      NoteCall(false, "FetchTensors", s);
      // Not this task's fault: retry while unreachable; a few times for anything else, then
      // give the lease back (it is re-issued) instead of reporting a spurious task error.
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE && ++other_failures >= 3) {
        Abandon(absl::StrCat("FetchTensors keeps failing: ", GrpcText(s)));
        return absl::AbortedError("abandoned");
      }
      SleepUnlessStopping(backoff.Next());
    }
  }

  // Loads the task's tensors into `net` (and momentum into `sgd` when given; arch tasks need
  // none). Every parameter and buffer of `net` must be listed; momentum may be absent.
  // A step of a chain (`chain` given: the tensors the chain's earlier steps left) loads those
  // from there and skips listed tensors its path does not have (other steps use them).
  absl::Status LoadTaskTensors(const Task& t, torch::nn::Module& net, PathSgd* sgd,
                               TaskStats* stats,
                               const std::map<std::string, torch::Tensor>* chain = nullptr) {
    std::map<std::string, torch::Tensor> module = ModuleTensors(net, true, true);
    std::set<std::string> params;
    for (const auto& p : net.named_parameters()) params.insert(p.key());
    std::vector<const TensorRef*> needed;
    std::set<std::string> listed;
    for (const TensorRef& r : t.tensors()) {
      const std::string& name = r.name();
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
    std::vector<const TensorRef*> missing;
    for (const TensorRef* r : needed) {
      if (chain != nullptr && chain->count(r->name()) > 0) continue;
      auto it = cache.find(r->name());
      if (it != cache.end() && it->second.version == r->version()) {
        ++stats->cache_hits;
      } else {
        missing.push_back(r);
      }
    }
    NAS_RETURN_IF_ERROR(Fetch(t.lease_id(), missing, stats));

    torch::NoGradGuard no_grad;
    for (const TensorRef* r : needed) {
      const std::string& name = r->name();
      const torch::Tensor* left = nullptr;  // by an earlier step of the chain
      if (chain != nullptr) {
        auto it = chain->find(name);
        if (it != chain->end()) left = &it->second;
      }
      const torch::Tensor& src = left != nullptr ? *left : cache.at(name).tensor;
      bool momentum = absl::StartsWith(name, kMomentumPrefix);
      std::string target = momentum ? name.substr(sizeof(kMomentumPrefix) - 1) : name;
      const torch::Tensor& dst = module.at(target);
      if (src.sizes() != dst.sizes() || src.scalar_type() != dst.scalar_type()) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": received ", c10::str(src.sizes()), " ", c10::toString(src.scalar_type()),
            ", the module has ", c10::str(dst.sizes()), " ", c10::toString(dst.scalar_type())));
      }
      if (momentum) {
        torch::Tensor m = torch::empty_like(dst);
        m.copy_(src);
        sgd->mutable_momentum()[target] = std::move(m);
      } else {
        dst.copy_(src);
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
        m.copy_(it->second);
        sgd->mutable_momentum()[p] = std::move(m);
      }
    }
    stats->load_seconds += SecondsSince(t0);
    return absl::OkStatus();
  }

  // --- the tasks ---

  absl::Status RunInit(const Task& t, const SearchSpace& space, TaskResult* r, TaskStats* stats) {
    NAS_RETURN_IF_ERROR(CheckSearchData(t.data()));
    NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data, Data(t.data(), space));
    torch::manual_seed(t.init().seed());
    SuperNet net(space);
    r->outcome.set_train_size(data->split.train.size());
    r->outcome.set_valid_size(data->split.valid.size());
    for (auto& [name, tensor] : ModuleTensors(*net, true, true)) {
      stats->resident_bytes += TensorBytes(tensor);
      r->tensors.emplace_back(name, tensor);
    }
    return absl::OkStatus();
  }

  // A weight task, or a chain of them (WeightTask.chain): each runs on its own path, on what
  // the ones before left; one path is materialised at a time.
  absl::Status RunWeight(const Task& t, const SearchSpace& space, TaskResult* r, TaskStats* stats) {
    const WeightTask& w = t.weight();
    NAS_RETURN_IF_ERROR(CheckSearchData(t.data()));
    std::vector<WeightTaskSpec> specs(1 + w.chain_size());
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto& path = i == 0 ? w.path() : w.chain(i - 1).path();
      const auto& batches = i == 0 ? w.batches() : w.chain(i - 1).batches();
      const auto& lrs = i == 0 ? w.lrs() : w.chain(i - 1).lrs();
      specs[i].path.assign(path.begin(), path.end());
      specs[i].data_epoch = w.data_epoch();
      specs[i].batches.assign(batches.begin(), batches.end());
      specs[i].lrs.assign(lrs.begin(), lrs.end());
      NAS_RETURN_IF_ERROR(CheckChoices(
          space, specs[i].path,
          i == 0 ? std::string("weight.path") : absl::StrCat("weight.chain[", i - 1, "].path")));
    }
    NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data, Data(t.data(), space));
    const DataSpec& d = t.data();
    const bool chained = specs.size() > 1;
    // The tensors as the steps so far left them (each step's modules, then its momentum), in
    // host memory: the result.
    std::map<std::string, torch::Tensor> left;
    for (size_t i = 0; i < specs.size(); ++i) {
      SuperNet net(space, KeepForPath(space, specs[i].path));
      PathSgd sgd(SgdOptions{});
      NAS_RETURN_IF_ERROR(LoadTaskTensors(t, *net, &sgd, stats, chained ? &left : nullptr));
      if (Abandoned()) return absl::AbortedError("abandoned");
      Batcher train(data->split.train, d.batch_size(), d.train_seed(),
                    Augment{d.augment_pad(), d.augment_hflip()});
      WeightTaskResult result = RunWeightTask(net, sgd, train, specs[i], w.label_smoothing());
      if (i == 0) {
        r->outcome.set_loss(result.loss);
        r->outcome.set_accuracy(result.accuracy);
      } else {
        r->outcome.add_chain_losses(result.loss);
        r->outcome.add_chain_accuracies(result.accuracy);
      }
      int64_t step_bytes = 0;
      for (auto& [name, tensor] : ModuleTensors(*net, true, true)) {
        step_bytes += TensorBytes(tensor);
        left[name] = tensor.to(torch::kCPU);
      }
      for (const auto& [name, tensor] : sgd.momentum()) {
        step_bytes += TensorBytes(tensor);
        left[kMomentumPrefix + name] = tensor.to(torch::kCPU);
      }
      stats->resident_bytes = std::max(stats->resident_bytes, step_bytes);
    }
    if (chained) {  // every listed tensor belongs to some step's path
      for (const TensorRef& ref : t.tensors()) {
        absl::string_view name = ref.name();
        if (absl::StartsWith(name, kMomentumPrefix))
          name.remove_prefix(sizeof(kMomentumPrefix) - 1);
        if (left.count(std::string(name)) == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("task lists ", ref.name(), ", which no path of the chain has"));
        }
      }
    }
    for (auto& [name, tensor] : left) {
      stats->held_bytes += TensorBytes(tensor);
      r->tensors.emplace_back(name, std::move(tensor));
    }
    return absl::OkStatus();
  }

  absl::Status RunArch(const Task& t, const SearchSpace& space, TaskResult* r, TaskStats* stats) {
    const ArchTask& a = t.arch();
    NAS_RETURN_IF_ERROR(CheckSearchData(t.data()));
    ArchTaskSpec spec;
    spec.rl = a.rl();
    spec.valid_epoch = a.valid_epoch();
    spec.valid_batch = a.valid_batch();
    if (spec.rl) {
      spec.path.assign(a.path().begin(), a.path().end());
      NAS_RETURN_IF_ERROR(CheckChoices(space, spec.path, "arch.path"));
    } else {
      std::vector<int> active(a.active().begin(), a.active().end());
      std::vector<int> other(a.other().begin(), a.other().end());
      NAS_RETURN_IF_ERROR(CheckChoices(space, active, "arch.active"));
      NAS_RETURN_IF_ERROR(CheckChoices(space, other, "arch.other"));
      for (size_t e = 0; e < active.size(); ++e) spec.pairs.push_back({active[e], other[e]});
    }
    NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data, Data(t.data(), space));

    SuperNet net(space, KeepForArchTask(space, spec));
    NAS_RETURN_IF_ERROR(LoadTaskTensors(t, *net, nullptr, stats));
    if (Abandoned()) return absl::AbortedError("abandoned");
    const DataSpec& d = t.data();
    Batcher valid(data->split.valid, d.batch_size(), d.valid_seed(), {});
    ArchTaskResult result = RunArchTask(net, valid, spec);
    r->outcome.set_loss(result.ce);
    r->outcome.set_accuracy(result.accuracy);
    for (const std::vector<double>& g : result.gate_grads) {
      for (double v : g) r->outcome.add_gate_grads(v);
    }
    for (const auto& [name, tensor] : ModuleTensors(*net, true, true)) {
      stats->resident_bytes += TensorBytes(tensor);
    }
    // The step ran BatchNorm in train mode: its running statistics changed.
    for (auto& [name, tensor] : ModuleTensors(*net, false, true)) {
      r->tensors.emplace_back(name, tensor);
    }
    return absl::OkStatus();
  }

  absl::Status RunFinal(const Task& t, const SearchSpace& space, TaskResult* r, TaskStats* stats) {
    const FinalTask& f = t.final();
    const DataSpec& d = t.data();
    if (f.label().empty()) return absl::InvalidArgumentError("final.label: must not be empty");
    if (d.batch_size() < 1) return absl::InvalidArgumentError("data.batch_size: must be >= 1");
    std::vector<int> choices(f.choices().begin(), f.choices().end());
    NAS_RETURN_IF_ERROR(CheckChoices(space, choices, "final.choices"));
    NAS_ASSIGN_OR_RETURN(NetworkConfig config, space.Derive(choices));
    NAS_ASSIGN_OR_RETURN(std::shared_ptr<const JobData> data, Data(d, space));

    auto t0 = std::chrono::steady_clock::now();
    torch::manual_seed(f.seed());
    Network net(config);
    TrainOptions to;
    to.epochs = f.epochs();
    to.batch_size = d.batch_size();
    to.lr = f.lr();
    to.label_smoothing = f.label_smoothing();
    to.augment = Augment{d.augment_pad(), d.augment_hflip()};
    to.seed = f.seed();
    int logged_epoch = -1;
    TrainNetwork(net, data->train_full, to, [&](const TrainProgress& p) {
      bool drop, stop;
      {
        absl::MutexLock l(&mu);
        drop = abandoned;
        stop = stopping;
      }
      if (stop && !drop) {
        Abandon("the worker is stopping (a final task is not finished)", /*stopping_worker=*/true);
      }
      if (drop || stop) throw TaskAbandoned();
      if (p.epoch != logged_epoch && p.step > 0) {
        logged_epoch = p.epoch;
        Log(absl::StrCat("final ", f.label(), ": epoch ", p.epoch + 1, "/", to.epochs, ", step ",
                         p.step, "/", p.total_steps, ", loss ", p.loss));
      }
    });
    double train_seconds = SecondsSince(t0);
    if (Abandoned()) return absl::AbortedError("abandoned");
    EvalResult ev = Evaluate([&](const torch::Tensor& x) { return net->forward(x); }, data->test);

    ProfileOptions po;
    po.batch_size = f.profile_batch_size() > 0 ? f.profile_batch_size() : 1;
    po.threads = f.profile_threads() > 0 ? f.profile_threads() : at::get_num_threads();
    absl::StatusOr<LatencyEntry> measured = MeasureNetwork(config, po);
    ConfigureCpuRuntime(threads);
    NAS_RETURN_IF_ERROR(measured.status());

    Json report = {{"label", f.label()},
                   {"test_accuracy", ev.accuracy},
                   {"test_loss", ev.loss},
                   {"measured_latency_ms", measured->mean_ms},
                   {"measured_latency_std_ms", std::sqrt(measured->var)},
                   {"parameters", CountParameters(*net)},
                   {"macs", config.Macs()},
                   {"train_seconds", train_seconds}};
    r->outcome.set_report_json(report.dump());
    for (const auto& [name, tensor] : ModuleTensors(*net, true, true)) {
      stats->resident_bytes += TensorBytes(tensor);
    }
    torch::serialize::OutputArchive archive;
    net->save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    r->raw.push_back(BytesToWire(f.label() + ".pt", bytes.str()));
    return absl::OkStatus();
  }

  absl::Status RunTask(const Task& t, TaskResult* r, TaskStats* stats) {
    NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::FromJson(t.space_json()));
    std::string kind = TaskKind(t);
    return Guarded(
        [&]() -> absl::Status {
          switch (t.kind_case()) {
            case Task::kInit:
              return RunInit(t, space, r, stats);
            case Task::kWeight:
              return RunWeight(t, space, r, stats);
            case Task::kArch:
              return RunArch(t, space, r, stats);
            case Task::kFinal:
              return RunFinal(t, space, r, stats);
            default:
              return absl::InvalidArgumentError("task has no kind (init, weight, arch, final)");
          }
        },
        kind + " task");
  }

  // --- results out ---

  grpc::Status SendOnce(const TaskResult& r, CompleteTaskReply* reply) {
    grpc::ClientContext context;
    Prepare(&context, o.stream_timeout);
    std::unique_ptr<grpc::ClientWriter<CompleteTaskRequest>> writer =
        stub->CompleteTask(&context, reply);
    CompleteTaskRequest first;
    *first.mutable_outcome() = r.outcome;
    bool ok = writer->Write(first);
    // Chunks go packed, up to kDefaultChunkBytes of data a message (a path's ~200 tensors are
    // mostly small, and each message costs more than its bytes).
    CompleteTaskRequest pack;
    size_t packed = 0;
    auto flush = [&]() {
      if (pack.tensors().blobs_size() == 0) return true;
      bool sent = writer->Write(pack);
      pack.Clear();
      packed = 0;
      return sent;
    };
    auto add = [&](TensorBlob&& b) {
      if (packed + b.data().size() > kDefaultChunkBytes && !flush()) return false;
      packed += b.data().size();
      pack.mutable_tensors()->add_blobs()->Swap(&b);
      return true;
    };
    for (const auto& [name, tensor] : r.tensors) {
      if (!ok) break;
      // Straight from the tensor's memory into the messages.
      absl::StatusOr<bool> sent = ForEachChunk(name, tensor, kDefaultChunkBytes, add);
      if (!sent.ok()) {  // checked before sending; a cancelled stream is never applied
        context.TryCancel();
        break;
      }
      ok = *sent;
    }
    for (const TensorBlob& w : r.raw) {
      if (!ok) break;
      ok = SplitIntoChunks(w, kDefaultChunkBytes, add);
    }
    ok = ok && flush();
    if (ok) writer->WritesDone();
    return writer->Finish();
  }

  // Sends the result; retries only while the coordinator is unreachable.
  grpc::Status Send(const TaskResult& r, CompleteTaskReply* reply) {
    Backoff backoff(o.backoff_initial, o.backoff_max);
    auto t0 = std::chrono::steady_clock::now();
    absl::Duration limit;
    {
      absl::MutexLock l(&mu);
      limit = std::max(absl::Seconds(60), absl::Milliseconds(2 * int64_t{lease_ms}));
    }
    while (true) {
      reply->Clear();
      grpc::Status s = SendOnce(r, reply);
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE) {
        if (s.ok()) NoteCall(true, "CompleteTask", s);
        return s;
      }
      NoteCall(false, "CompleteTask", s);
      if (Abandoned() || absl::Seconds(SecondsSince(t0)) > limit) return s;
      absl::SleepFor(backoff.Next());
    }
  }

  void WriteStats(const Task& t, const TaskStats& stats, double seconds,
                  const std::string& outcome) {
    if (o.stats_file.empty()) return;
    Json line = {{"job", t.job_id()},
                 {"lease", t.lease_id()},
                 {"kind", TaskKind(t)},
                 {"fetched_bytes", stats.fetched_bytes},
                 {"resident_bytes", stats.resident_bytes},
                 {"held_bytes", stats.held_bytes},
                 {"tensors_fetched", stats.tensors_fetched},
                 {"cache_hits", stats.cache_hits},
                 {"cached_bytes", CachedBytes()},
                 {"seconds", seconds},
                 {"acquire_seconds", stats.acquire_seconds},
                 {"load_seconds", stats.load_seconds},
                 {"run_seconds", stats.run_seconds},
                 {"send_seconds", stats.send_seconds},
                 {"outcome", outcome}};
    std::ofstream out(o.stats_file, std::ios::app);
    out << line.dump() << "\n";
    if (!out) Log(absl::StrCat("stats_file ", o.stats_file, ": cannot append"));
  }

  // A tensor this task alone wrote (TensorRef.sole_writer) is now, on the coordinator, exactly
  // what was sent, at the listed version + 1: keep it rather than fetch it next round.
  static std::map<std::string, uint64_t> OwnOutputVersions(const Task& t,
                                                           const TaskResult& result) {
    std::map<std::string, uint64_t> sole;
    for (const TensorRef& r : t.tensors()) {
      if (r.sole_writer()) sole[r.name()] = r.version();
    }
    std::map<std::string, uint64_t> out;
    for (const auto& [name, tensor] : result.tensors) {
      auto it = sole.find(name);
      if (it != sole.end()) out[name] = it->second + 1;
    }
    return out;
  }
  void KeepOwnOutput(const Task& t, const TaskResult& result) {
    std::map<std::string, uint64_t> own = OwnOutputVersions(t, result);
    for (const auto& [name, tensor] : result.tensors) {
      auto it = own.find(name);
      // The task's module and optimizer are gone: the cache is the tensor's only owner, and
      // loading copies out of it, so it is kept without a copy.
      if (it != own.end()) cache[name] = CachedTensor{it->second, tensor.detach(), cache_clock};
    }
  }

  // What AcquireTask (or a CompleteTask's `next`) asks for. With inline tensors on, it lists
  // `cached` (name -> version) so that the task carries what the worker lacks.
  AcquireTaskRequest AcquireRequest(const std::string& worker_id, int wait_ms,
                                    const std::map<std::string, uint64_t>& cached) const {
    AcquireTaskRequest request;
    request.set_worker_id(worker_id);
    request.set_wait_ms(wait_ms);
    if (o.inline_limit_bytes > 0) {
      request.set_inline_limit_bytes(o.inline_limit_bytes);
      for (const auto& [name, version] : cached) {
        TensorRef* r = request.add_cached();
        r->set_name(name);
        r->set_version(version);
      }
    }
    return request;
  }
  std::map<std::string, uint64_t> CachedVersions() const {
    std::map<std::string, uint64_t> v;
    for (const auto& [name, c] : cache) v[name] = c.version;
    return v;
  }

  // Moves the tensors a task carries inline into the cache, at the versions it lists.
  absl::Status AbsorbInline(Task& t, TaskStats* stats) {
    if (t.inline_tensors_size() == 0) return absl::OkStatus();
    TaskTensorAssembler in(t.tensors_size());
    for (TensorBlob& b : *t.mutable_inline_tensors()) {
      if (absl::Status s = in.Add(std::move(b)); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("inline_tensors: ", s.message()));
      }
    }
    t.clear_inline_tensors();
    int64_t bytes = in.bytes();
    absl::StatusOr<std::map<std::string, TensorBlob>> got = std::move(in).Finish();
    if (!got.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("inline_tensors: ", got.status().message()));
    }
    std::map<std::string, uint64_t> listed;
    for (const TensorRef& r : t.tensors()) listed[r.name()] = r.version();
    for (auto& [name, w] : *got) {
      auto it = listed.find(name);
      if (it == listed.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("inline_tensors: ", name, " is not among the task's tensors"));
      }
      NAS_ASSIGN_OR_RETURN(torch::Tensor tensor, FromWire(w));
      cache[name] = CachedTensor{it->second, std::move(tensor), cache_clock};
    }
    stats->fetched_bytes += bytes;
    stats->tensors_fetched += static_cast<int64_t>(got->size());
    return absl::OkStatus();
  }

  // Marks the task's tensors as the most recently used, then drops the least recently used
  // others while the cache holds more than o.cache_bytes.
  void TrimCache(const Task& t) {
    for (const TensorRef& r : t.tensors()) {
      auto it = cache.find(r.name());
      if (it != cache.end()) it->second.last_used = cache_clock;
    }
    int64_t total = CachedBytes();
    if (total <= o.cache_bytes) return;
    std::vector<std::map<std::string, CachedTensor>::iterator> older;
    for (auto it = cache.begin(); it != cache.end(); ++it) {
      if (it->second.last_used != cache_clock) older.push_back(it);
    }
    std::sort(older.begin(), older.end(), [](const auto& a, const auto& b) {
      return a->second.last_used < b->second.last_used;
    });
    for (auto it : older) {
      if (total <= o.cache_bytes) break;
      total -= TensorBytes(it->second.tensor);
      cache.erase(it);
    }
  }
  int64_t CachedBytes() const {
    int64_t total = 0;
    for (const auto& [name, c] : cache) total += TensorBytes(c.tensor);
    return total;
  }

  // Runs a task and sends its result. With inline tensors on, the result asks for the next task
  // (unless this was the last one); a task the reply carries goes to `next`.
  void HandleTask(Task t, double acquire_seconds, std::optional<Task>* next) {
    auto t0 = std::chrono::steady_clock::now();
    ++cache_clock;
    std::string kind = TaskKind(t);
    {
      absl::MutexLock l(&mu);
      lease = t.lease_id();
      abandoned = false;
      hand_back = false;
      abandon_reason.clear();
      if (drop_cache) {
        cache.clear();
        drop_cache = false;
      }
    }
    if (t.job_id() != cache_job) {
      cache.clear();
      cache_job = t.job_id();
    }
    Log(absl::StrCat(kind, " task: job ", t.job_id(), ", round ", t.round(), ", lease ",
                     t.lease_id(), ", ", t.tensors_size(), " tensors", ChainNote(t)));

    TaskStats stats;
    stats.acquire_seconds = acquire_seconds;
    TaskResult result;
    absl::Status s = Guarded([&] { return AbsorbInline(t, &stats); }, "inline tensors");
    if (s.ok()) s = RunTask(t, &result, &stats);
    stats.run_seconds = std::max(0.0, SecondsSince(t0) - stats.load_seconds);
    TrimCache(t);
    if (s.ok()) {
      for (const auto& [name, tensor] : result.tensors) {
        absl::StatusOr<std::string> dtype = DtypeName(tensor.scalar_type());
        if (!dtype.ok()) {
          s = absl::InternalError(absl::StrCat(name, ": ", dtype.status().message()));
          break;
        }
      }
    }

    std::string outcome;
    bool dropped, release;
    std::string reason;
    {
      absl::MutexLock l(&mu);
      dropped = abandoned;
      release = abandoned && hand_back;
      reason = abandon_reason;
      // From here the CompleteTask reply says whether the lease still held; a heartbeat that
      // races the upload (the coordinator may accept the result first) must not abandon it.
      sending = !dropped;
    }
    if (dropped) {
      outcome = absl::StrCat("abandoned: ", reason);
      Log(absl::StrCat(kind, " task of lease ", t.lease_id(), " abandoned; result not sent"));
      if (release) {
        ReleaseLease(t.lease_id(), reason);
        outcome = absl::StrCat("handed back: ", reason);
      }
    } else {
      if (!s.ok()) {
        Log(absl::StrCat(kind, " task of lease ", t.lease_id(), " failed: ", s.ToString()));
        result.tensors.clear();
        result.raw.clear();
        result.outcome.Clear();
        result.outcome.set_error(std::string(s.message()));
      }
      result.outcome.set_lease_id(t.lease_id());
      result.outcome.set_fetched_bytes(stats.fetched_bytes);
      result.outcome.set_resident_bytes(stats.resident_bytes);
      bool last = o.max_tasks > 0 && tasks_done.load() + 1 >= o.max_tasks;
      if (o.inline_limit_bytes > 0 && !last && !Stopping()) {
        // The cache as it will be once the coordinator applies this result.
        std::map<std::string, uint64_t> cached = CachedVersions();
        if (s.ok()) {
          for (const auto& [name, version] : OwnOutputVersions(t, result)) cached[name] = version;
        }
        *result.outcome.mutable_next() = AcquireRequest(WorkerId(), 0, cached);
      }
      auto sent_at = std::chrono::steady_clock::now();
      CompleteTaskReply reply;
      grpc::Status sent = Send(result, &reply);
      stats.send_seconds = SecondsSince(sent_at);
      if (sent.ok()) {
        if (s.ok()) KeepOwnOutput(t, result);
        if (reply.next().has_task() && !reply.next().idle()) {
          *next = std::move(*reply.mutable_next()->mutable_task());
        }
        outcome = s.ok() ? "ok" : absl::StrCat("error: ", s.message());
        Log(absl::StrCat(kind, " task of lease ", t.lease_id(), " done in ", SecondsSince(t0),
                         " s (fetched ", stats.fetched_bytes, " bytes, ", stats.cache_hits,
                         " cache hits, resident ", stats.resident_bytes, " bytes)"));
      } else if (sent.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                 sent.error_code() == grpc::StatusCode::NOT_FOUND ||
                 sent.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        outcome = absl::StrCat("refused: ", GrpcText(sent));
        Log(absl::StrCat("CompleteTask for lease ", t.lease_id(), " refused: ", GrpcText(sent)));
      } else {
        outcome = absl::StrCat("error: CompleteTask: ", GrpcText(sent));
        Log(absl::StrCat("CompleteTask for lease ", t.lease_id(), " failed: ", GrpcText(sent),
                         "; result dropped"));
      }
    }
    {
      absl::MutexLock l(&mu);
      lease.clear();
      abandoned = false;
      hand_back = false;
      sending = false;
      abandon_reason.clear();
    }
    WriteStats(t, stats, SecondsSince(t0), outcome);
  }

  // --- the loop ---

  absl::Status Run() {
    if (!RegisterWithRetry()) return absl::OkStatus();
    heartbeat_thread = std::thread([this] { HeartbeatLoop(); });
    Backoff backoff(o.backoff_initial, o.backoff_max);
    std::optional<Task> next;  // the task the last CompleteTask reply carried
    while (o.max_tasks <= 0 || tasks_done.load() < o.max_tasks) {
      if (next.has_value()) {
        Task t = std::move(*next);
        next.reset();
        if (Stopping()) {
          Log(absl::StrCat("stopping: handing back the task of lease ", t.lease_id(),
                           " just acquired"));
          ReleaseLease(t.lease_id(), "the worker is stopping");
          break;
        }
        HandleTask(std::move(t), 0, &next);
        tasks_done.fetch_add(1);
        continue;
      }
      std::string id = WorkerId();
      AcquireTaskRequest request = AcquireRequest(id, o.acquire_wait_ms, CachedVersions());
      AcquireTaskReply reply;
      grpc::ClientContext context;
      Prepare(&context, o.rpc_timeout + absl::Milliseconds(o.acquire_wait_ms));
      {
        absl::MutexLock l(&mu);
        if (stopping) break;
        poll = &context;
      }
      auto asked_at = std::chrono::steady_clock::now();
      grpc::Status s = stub->AcquireTask(&context, request, &reply);
      {
        absl::MutexLock l(&mu);
        poll = nullptr;
      }
      if (Stopping()) {
        if (s.ok() && reply.has_task() && !reply.idle()) {
          Log(absl::StrCat("stopping: handing back the task of lease ", reply.task().lease_id(),
                           " just acquired"));
          ReleaseLease(reply.task().lease_id(), "the worker is stopping");
        }
        break;
      }
      if (s.ok()) {
        NoteCall(true, "AcquireTask", s);
        backoff.Reset();
        if (reply.idle() || !reply.has_task()) continue;
        HandleTask(std::move(*reply.mutable_task()), SecondsSince(asked_at), &next);
        tasks_done.fetch_add(1);
        continue;
      }
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        NoteCall(true, "AcquireTask", s);
        if (!Reregister(id)) break;
        continue;
      }
      NoteCall(false, "AcquireTask", s);
      if (SleepUnlessStopping(backoff.Next())) break;
    }
    StopHeartbeats();
    Log(absl::StrCat("stopped after ", tasks_done.load(), " tasks"));
    return absl::OkStatus();
  }

  void StopHeartbeats() {
    {
      absl::MutexLock l(&mu);
      stopping = true;
      if (poll != nullptr) poll->TryCancel();
    }
    if (heartbeat_thread.joinable()) heartbeat_thread.join();
  }
};

RemoteWorker::RemoteWorker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RemoteWorker::~RemoteWorker() {
  if (impl_ != nullptr) impl_->StopHeartbeats();
}

absl::StatusOr<std::unique_ptr<RemoteWorker>> RemoteWorker::Create(RemoteWorkerOptions o) {
  if (o.coordinator.empty()) {
    return absl::InvalidArgumentError("coordinator: required (host:port of the coordinator)");
  }
  if (o.device == "cuda") {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          "device: cuda requested but LibTorch sees no CUDA device (CPU-only LibTorch, no GPU "
          "or no driver)");
    }
    // TODO(cuda): run tasks on the GPU. Needs the module and every batch moved with
    // .to(device) inside RunWeightTask / RunArchTask / TrainNetwork (worker/tasks.cc, train.cc);
    // until then a "cuda" worker registers as such but computes on the CPU.
    Log("device cuda: GPU execution is not implemented yet; tasks run on the CPU");
  } else if (o.device != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("device: \"", o.device, "\" is not cpu or cuda"));
  }
  if (o.threads < 0) return absl::InvalidArgumentError("threads: must be >= 0 (0: all cores)");
  if (o.max_tasks < 0) return absl::InvalidArgumentError("max_tasks: must be >= 0");
  if (o.acquire_wait_ms < 0) return absl::InvalidArgumentError("acquire_wait_ms: must be >= 0");
  if (o.cache_bytes < 0) {
    return absl::InvalidArgumentError("cache_bytes (nas_worker --cache_mb): must be >= 0");
  }
  if (o.inline_limit_bytes < 0) {
    return absl::InvalidArgumentError("inline_limit_bytes: must be >= 0 (0: fetch separately)");
  }
  if (o.name.empty()) {
    char host[256] = {0};
    if (gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "worker");
    o.name = absl::StrCat(host, "-", getpid());
  }
  auto impl = std::make_unique<Impl>();
  ConfigureCpuRuntime(o.threads);
  impl->threads = at::get_num_threads();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(o.max_message_bytes);
  args.SetMaxSendMessageSize(o.max_message_bytes);
  NAS_ASSIGN_OR_RETURN(auto credentials, ChannelCredentialsFor(o.tls_ca));
  impl->stub = WorkerGateway::NewStub(grpc::CreateCustomChannel(o.coordinator, credentials, args));
  impl->o = std::move(o);
  return std::unique_ptr<RemoteWorker>(new RemoteWorker(std::move(impl)));
}

absl::Status RemoteWorker::Run() { return impl_->Run(); }

void RemoteWorker::Stop() {
  absl::MutexLock l(&impl_->mu);
  impl_->stopping = true;
  if (impl_->poll != nullptr) impl_->poll->TryCancel();
}

int64_t RemoteWorker::tasks_done() const { return impl_->tasks_done.load(); }

}  // namespace nas
