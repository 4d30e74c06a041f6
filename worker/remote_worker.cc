#include "worker/remote_worker.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/json_fields.h"
#include "core/malloc_tuning.h"
#include "core/status_macros.h"
#include "nas/common.pb.h"
#include "nas/worker.pb.h"
#include "proto/task_label.h"
#include "proto/tensor_codec.h"
#include "worker/gateway_client.h"
#include "worker/runtime.h"
#include "worker/task_runner.h"
#include "worker/task_tensors.h"
#include "worker/tensor_blob.h"
#include "worker/tensor_cache.h"
#include "worker/torch_status.h"
#include "worker/worker_metrics.h"

namespace nas {

namespace {

void Log(const std::string& message) {
  std::string when = absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::Now(), absl::LocalTimeZone());
  std::fprintf(stderr, "%s nas_worker: %s\n", when.c_str(), message.c_str());
  std::fflush(stderr);
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

// Accounting of one task (stats line and outcome): the runner's, and where the rest of the
// task's time went: waiting in AcquireTask for it, the step itself (run_seconds, loading
// excluded), and uploading the result (CompleteTask, which returns once the coordinator
// applied it).
struct TaskStats {
  RunnerStats run;
  double acquire_seconds = 0;
  double run_seconds = 0;
  double send_seconds = 0;
  int64_t uploaded_bytes = 0;  // the result's tensors and files, as sent
};

// The wire's task as the runner's. InvalidArgument: no kind, or malformed pairs.
absl::StatusOr<RunnerTask> TaskFromProto(const Task& t) {
  RunnerTask r;
  r.space_json = t.space_json();
  r.label = TaskKind(t);
  const DataSpec& d = t.data();
  r.data.dataset = d.dataset();
  r.data.data_dir = d.data_dir();
  r.data.train_subset = d.train_subset();
  r.data.test_subset = d.test_subset();
  r.data.valid_size = d.valid_size();
  r.data.split_seed = d.split_seed();
  r.data.batch_size = d.batch_size();
  r.data.train_seed = d.train_seed();
  r.data.valid_seed = d.valid_seed();
  r.data.augment_pad = d.augment_pad();
  r.data.augment_hflip = d.augment_hflip();
  r.data.stream_images = d.stream_images();
  r.data.skip_bad_files = d.skip_bad_files();
  for (const TensorRef& ref : t.tensors()) r.tensors.push_back({ref.name(), ref.version()});
  switch (t.kind_case()) {
    case Task::kInit:
      r.spec = InitSpec{t.init().seed()};
      break;
    case Task::kWeight: {
      const WeightTask& w = t.weight();
      WeightChain chain;
      chain.label_smoothing = w.label_smoothing();
      chain.steps.resize(1 + w.chain_size());
      for (size_t i = 0; i < chain.steps.size(); ++i) {
        const auto& path = i == 0 ? w.path() : w.chain(i - 1).path();
        const auto& batches = i == 0 ? w.batches() : w.chain(i - 1).batches();
        const auto& lrs = i == 0 ? w.lrs() : w.chain(i - 1).lrs();
        WeightTaskSpec& s = chain.steps[i];
        s.path.assign(path.begin(), path.end());
        s.data_epoch = w.data_epoch();
        s.batches.assign(batches.begin(), batches.end());
        s.lrs.assign(lrs.begin(), lrs.end());
      }
      r.spec = std::move(chain);
      break;
    }
    case Task::kArch: {
      const ArchTask& a = t.arch();
      ArchSpec s;
      s.rl = a.rl();
      s.valid_epoch = a.valid_epoch();
      s.valid_batch = a.valid_batch();
      if (s.rl) {
        s.path.assign(a.path().begin(), a.path().end());
      } else {
        if (a.active_size() != a.other_size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("arch.active has ", a.active_size(), " entries, arch.other ",
                           a.other_size(), ": one pair per edge expected"));
        }
        for (int e = 0; e < a.active_size(); ++e) s.pairs.push_back({a.active(e), a.other(e)});
      }
      r.spec = std::move(s);
      break;
    }
    case Task::kFinal: {
      const FinalTask& f = t.final();
      FinalSpec s;
      s.label = f.label();
      s.choices.assign(f.choices().begin(), f.choices().end());
      s.epochs = f.epochs();
      s.lr = f.lr();
      s.label_smoothing = f.label_smoothing();
      s.seed = f.seed();
      s.profile_batch_size = f.profile_batch_size();
      s.profile_threads = f.profile_threads();
      r.spec = std::move(s);
      break;
    }
    case Task::kEval: {
      const EvalTask& e = t.eval();
      EvalSpec s;
      for (const PathChoices& p : e.paths()) {
        s.paths.emplace_back(p.choices().begin(), p.choices().end());
      }
      s.batch_size = e.batch_size();
      r.spec = std::move(s);
      break;
    }
    default:
      return absl::InvalidArgumentError("task has no kind (init, weight, arch, final, eval)");
  }
  return r;
}

// The runner's result as the wire's outcome (the tensors travel separately).
void OutcomeFromResult(const RunnerResult& r, TaskOutcome* out) {
  out->set_loss(r.loss);
  out->set_accuracy(r.accuracy);
  for (double v : r.chain_losses) out->add_chain_losses(v);
  for (double v : r.chain_accuracies) out->add_chain_accuracies(v);
  for (double v : r.gate_grads) out->add_gate_grads(v);
  for (double v : r.path_accuracies) out->add_path_accuracies(v);
  out->set_train_size(r.train_size);
  out->set_valid_size(r.valid_size);
  out->set_report_json(r.report_json);
}

}  // namespace

struct RemoteWorker::Impl {
  RemoteWorkerOptions o;
  std::unique_ptr<GatewayClient> client;
  std::unique_ptr<TaskRunner> runner;
  int threads = 1;  // effective intra-op threads
  std::atomic<int64_t> tasks_done{0};
  std::atomic<int64_t> heap_releases{0};
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

  // Serialises re-registration between the main and heartbeat threads.
  absl::Mutex register_mu;

  // Main thread only: the current job's tensors; after each task it holds that task's tensors
  // and, within o.cache_bytes, the most recently used others.
  TensorCache cache;

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
  void NoteCall(bool ok, const std::string& what, const absl::Status& s) {
    absl::MutexLock l(&mu);
    if (ok && !reachable) Log("coordinator reachable again");
    if (!ok && reachable) {
      Log(absl::StrCat("coordinator: ", what, " failed (", s.ToString(), "); retrying every ",
                       absl::FormatDuration(o.backoff_initial), " .. ",
                       absl::FormatDuration(o.backoff_max), " until it answers"));
    }
    reachable = ok;
  }
  void Stop() {
    {
      absl::MutexLock l(&mu);
      stopping = true;
    }
    client->StopPolling();
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
      absl::Status s = client->RegisterWorker(request, &reply);
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
      if (s.ok()) s = absl::InternalError("empty worker_id in the reply");
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
    absl::Status s = client->ReleaseTask(request, &reply);
    Log(s.ok() ? absl::StrCat("handed lease ", lease_id, " back: the coordinator re-issues it now")
               : absl::StrCat("could not hand lease ", lease_id, " back (", s.ToString(),
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
      absl::Status s = client->Heartbeat(request, &reply);
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
      } else if (absl::IsNotFound(s)) {
        NoteCall(true, "Heartbeat", s);
        if (!Reregister(id)) return;
      } else {
        NoteCall(false, "Heartbeat", s);
        failing = true;
      }
    }
  }

  // --- tensors in ---

  // Fetches `refs` into the cache. A refused lease abandons the task (Aborted); an unreachable
  // coordinator is retried until the lease is known lost or the worker stops. Malformed data
  // and INVALID_ARGUMENT are task errors.
  absl::Status Fetch(const std::string& lease_id, const std::vector<const ListedTensor*>& refs,
                     RunnerStats* stats) {
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
      for (const ListedTensor* r : refs) request.add_names(r->name);
      TaskTensorAssembler in(static_cast<int64_t>(refs.size()));
      absl::Status bad;
      absl::Status s = client->FetchTensors(request, [&](TensorBlob&& blob) {
        bad = in.Add(std::move(blob));
        return bad;
      });
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
        for (const ListedTensor* r : refs) {
          auto it = got->find(r->name);
          if (it == got->end()) {
            return absl::InvalidArgumentError(
                absl::StrCat("FetchTensors: the coordinator did not send ", r->name));
          }
          NAS_ASSIGN_OR_RETURN(torch::Tensor t, FromWire(it->second));
          std::string().swap(*it->second.mutable_data());
          cache.Put(r->name, r->version, std::move(t));
        }
        if (got->size() != refs.size()) {
          for (const auto& [name, w] : *got) {
            bool asked = std::any_of(refs.begin(), refs.end(),
                                     [&](const ListedTensor* r) { return r->name == name; });
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
      if (absl::IsFailedPrecondition(s) || absl::IsNotFound(s)) {
        NoteCall(true, "FetchTensors", s);
        Abandon(absl::StrCat("FetchTensors refused: ", s.ToString()));
        return absl::AbortedError("abandoned");
      }
      if (absl::IsInvalidArgument(s)) {  // we asked for bad names
        return absl::InvalidArgumentError(absl::StrCat("FetchTensors: ", s.message()));
      }
      NoteCall(false, "FetchTensors", s);
      // Not this task's fault: retry while unreachable; a few times for anything else, then
      // give the lease back (it is re-issued) instead of reporting a spurious task error.
      if (!absl::IsUnavailable(s) && ++other_failures >= 3) {
        Abandon(absl::StrCat("FetchTensors keeps failing: ", s.ToString()));
        return absl::AbortedError("abandoned");
      }
      SleepUnlessStopping(backoff.Next());
    }
  }

  // The runner's tensors: the cache, fetching what is not there at the listed version.
  class CacheSource : public TensorSource {
   public:
    CacheSource(Impl* w, std::string lease_id) : w_(w), lease_(std::move(lease_id)) {}
    absl::Status Ensure(const std::vector<const ListedTensor*>& refs,
                        RunnerStats* stats) override {
      std::vector<const ListedTensor*> missing;
      for (const ListedTensor* r : refs) {
        if (w_->cache.Find(r->name, r->version) != nullptr) {
          ++stats->cache_hits;
        } else {
          missing.push_back(r);
        }
      }
      return w_->Fetch(lease_, missing, stats);
    }
    const torch::Tensor* Get(const std::string& name) override { return w_->cache.Get(name); }

   private:
    Impl* w_;
    std::string lease_;
  };

  // Moves the tensors a task carries inline into the cache, at the versions it lists.
  absl::Status AbsorbInline(Task& t, RunnerStats* stats) {
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
      cache.Put(name, it->second, std::move(tensor));
    }
    stats->fetched_bytes += bytes;
    stats->tensors_fetched += static_cast<int64_t>(got->size());
    return absl::OkStatus();
  }

  // Runs the task through the runner, tensors from the cache (fetching what is stale).
  absl::Status RunTask(Task& t, RunnerResult* result) {
    absl::Status absorbed;
    absl::Status s = TorchRun([&] { absorbed = AbsorbInline(t, &result->stats); }, "inline tensors");
    if (!s.ok()) return s;
    if (!absorbed.ok()) return absorbed;
    NAS_ASSIGN_OR_RETURN(RunnerTask task, TaskFromProto(t));
    CacheSource source(this, t.lease_id());
    TaskControl control;
    control.abandoned = [this] { return Abandoned(); };
    // A final task stops between batches when its lease is gone or the worker stops (then it
    // is handed back).
    control.interrupt = [this] {
      bool drop, stop;
      {
        absl::MutexLock l(&mu);
        drop = abandoned;
        stop = stopping;
      }
      if (stop && !drop) {
        Abandon("the worker is stopping (a final task is not finished)", /*stopping_worker=*/true);
      }
      return drop || stop;
    };
    return runner->Run(task, source, control, result);
  }

  // --- results out ---

  absl::Status SendOnce(const TaskOutcome& outcome, const RunnerResult& r,
                        CompleteTaskReply* reply) {
    return client->CompleteTask(
        [&](const GatewayClient::MessageWriter& write) {
          CompleteTaskRequest first;
          *first.mutable_outcome() = outcome;
          bool ok = write(first);
          // Chunks go packed, up to kDefaultChunkBytes of data a message (a path's ~200 tensors
          // are mostly small, and each message costs more than its bytes).
          CompleteTaskRequest pack;
          size_t packed = 0;
          auto flush = [&]() {
            if (pack.tensors().blobs_size() == 0) return true;
            bool sent = write(pack);
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
            if (!sent.ok()) return false;  // checked before sending; a cancelled stream is
                                           // never applied
            ok = *sent;
          }
          for (const auto& [name, bytes] : r.files) {
            if (!ok) break;
            ok = SplitIntoChunks(BytesToWire(name, bytes), kDefaultChunkBytes, add);
          }
          ok = ok && flush();
          return ok;
        },
        reply);
  }

  // Sends the result; retries only while the coordinator is unreachable.
  absl::Status Send(const TaskOutcome& outcome, const RunnerResult& r, CompleteTaskReply* reply) {
    Backoff backoff(o.backoff_initial, o.backoff_max);
    auto t0 = std::chrono::steady_clock::now();
    absl::Duration limit;
    {
      absl::MutexLock l(&mu);
      limit = std::max(absl::Seconds(60), absl::Milliseconds(2 * int64_t{lease_ms}));
    }
    while (true) {
      reply->Clear();
      absl::Status s = SendOnce(outcome, r, reply);
      if (!absl::IsUnavailable(s)) {
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
    if (o.metrics != nullptr) {
      WorkerTaskFigures f;
      f.kind = TaskKind(t);
      // The outcome's category: "ok", "error", "refused", "abandoned", "handed back".
      f.outcome = outcome.substr(0, outcome.find(':'));
      f.acquire_seconds = stats.acquire_seconds;
      f.load_seconds = stats.run.load_seconds;
      f.data_seconds = stats.run.data_wait_seconds;
      f.run_seconds = stats.run_seconds;
      f.send_seconds = stats.send_seconds;
      f.fetched_bytes = stats.run.fetched_bytes;
      f.uploaded_bytes = stats.uploaded_bytes;
      f.tensors_fetched = stats.run.tensors_fetched;
      f.cache_hits = stats.run.cache_hits;
      f.cached_bytes = cache.Bytes();
      f.resident_bytes = stats.run.resident_bytes;
      o.metrics->Task(f);
      const torch::Device& d = runner->device();
      CudaMemoryStats cuda = d.is_cuda() ? CudaMemory(d.has_index() ? d.index() : 0)
                                         : CudaMemoryStats{};
      o.metrics->SetMemory(ProcessResidentBytes(), cuda.available ? cuda.allocated : -1,
                           cuda.available ? cuda.peak_allocated : -1);
      o.metrics->SetInfo(runner->device().str(), Stopping());
    }
    if (o.stats_file.empty()) return;
    Json line = {{"job", t.job_id()},
                 {"lease", t.lease_id()},
                 {"kind", TaskKind(t)},
                 {"fetched_bytes", stats.run.fetched_bytes},
                 {"resident_bytes", stats.run.resident_bytes},
                 {"held_bytes", stats.run.held_bytes},
                 {"tensors_fetched", stats.run.tensors_fetched},
                 {"cache_hits", stats.run.cache_hits},
                 {"cached_bytes", cache.Bytes()},
                 {"seconds", seconds},
                 {"acquire_seconds", stats.acquire_seconds},
                 {"load_seconds", stats.run.load_seconds},
                 {"data_seconds", stats.run.data_wait_seconds},
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
                                                           const RunnerResult& result) {
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
  void KeepOwnOutput(const Task& t, const RunnerResult& result) {
    std::map<std::string, uint64_t> own = OwnOutputVersions(t, result);
    for (const auto& [name, tensor] : result.tensors) {
      auto it = own.find(name);
      // The task's module and optimizer are gone: the cache is the tensor's only owner, and
      // loading copies out of it, so it is kept without a copy.
      if (it != own.end()) cache.Put(name, it->second, tensor.detach());
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

  // Runs a task and sends its result. With inline tensors on, the result asks for the next task
  // (unless this was the last one); a task the reply carries goes to `next`.
  void HandleTask(Task t, double acquire_seconds, std::optional<Task>* next) {
    auto t0 = std::chrono::steady_clock::now();
    std::string kind = TaskKind(t);
    {
      absl::MutexLock l(&mu);
      lease = t.lease_id();
      abandoned = false;
      hand_back = false;
      abandon_reason.clear();
      if (drop_cache) {
        cache.Clear();
        drop_cache = false;
      }
    }
    cache.StartTask(t.job_id());
    Log(absl::StrCat(kind, " task: job ", t.job_id(), ", round ", t.round(), ", lease ",
                     t.lease_id(), ", ", t.tensors_size(), " tensors", ChainNote(t)));

    TaskStats stats;
    stats.acquire_seconds = acquire_seconds;
    RunnerResult result;
    absl::Status s = RunTask(t, &result);
    stats.run = result.stats;
    stats.run_seconds = std::max(
        0.0, SecondsSince(t0) - stats.run.load_seconds - stats.run.data_wait_seconds);
    std::vector<std::string> used;
    for (const TensorRef& r : t.tensors()) used.push_back(r.name());
    cache.Trim(used, o.cache_bytes);
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
      TaskOutcome out;
      if (!s.ok()) {
        Log(absl::StrCat(kind, " task of lease ", t.lease_id(), " failed: ", s.ToString()));
        result.tensors.clear();
        result.files.clear();
        out.set_error(std::string(s.message()));
      } else {
        OutcomeFromResult(result, &out);
      }
      out.set_lease_id(t.lease_id());
      out.set_fetched_bytes(stats.run.fetched_bytes);
      out.set_resident_bytes(stats.run.resident_bytes);
      bool last = o.max_tasks > 0 && tasks_done.load() + 1 >= o.max_tasks;
      if (o.inline_limit_bytes > 0 && !last && !Stopping()) {
        // The cache as it will be once the coordinator applies this result.
        std::map<std::string, uint64_t> cached = cache.Versions();
        if (s.ok()) {
          for (const auto& [name, version] : OwnOutputVersions(t, result)) cached[name] = version;
        }
        *out.mutable_next() = AcquireRequest(WorkerId(), 0, cached);
      }
      auto sent_at = std::chrono::steady_clock::now();
      CompleteTaskReply reply;
      absl::Status sent = Send(out, result, &reply);
      stats.send_seconds = SecondsSince(sent_at);
      for (const auto& [name, tensor] : result.tensors) {
        stats.uploaded_bytes += static_cast<int64_t>(tensor.nbytes());
      }
      for (const auto& [name, bytes] : result.files) {
        stats.uploaded_bytes += static_cast<int64_t>(bytes.size());
      }
      if (sent.ok()) {
        if (s.ok()) KeepOwnOutput(t, result);
        if (reply.next().has_task() && !reply.next().idle()) {
          *next = std::move(*reply.mutable_next()->mutable_task());
        }
        outcome = s.ok() ? "ok" : absl::StrCat("error: ", s.message());
        Log(absl::StrCat(kind, " task of lease ", t.lease_id(), " done in ", SecondsSince(t0),
                         " s (fetched ", stats.run.fetched_bytes, " bytes, ", stats.run.cache_hits,
                         " cache hits, resident ", stats.run.resident_bytes, " bytes)"));
      } else if (absl::IsFailedPrecondition(sent) || absl::IsNotFound(sent) ||
                 absl::IsInvalidArgument(sent)) {
        outcome = absl::StrCat("refused: ", sent.ToString());
        Log(absl::StrCat("CompleteTask for lease ", t.lease_id(), " refused: ", sent.ToString()));
      } else {
        outcome = absl::StrCat("error: CompleteTask: ", sent.ToString());
        Log(absl::StrCat("CompleteTask for lease ", t.lease_id(), " failed: ", sent.ToString(),
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

  // --- the loop: acquire, run, complete ---

  absl::Status Run() {
    if (!RegisterWithRetry()) return absl::OkStatus();
    heartbeat_thread = std::thread([this] { HeartbeatLoop(); });
    Backoff backoff(o.backoff_initial, o.backoff_max);
    std::optional<Task> next;  // the task the last CompleteTask reply carried
    // Since when the coordinator has had no task for this worker, and whether the free heap
    // went back to the system in this idle stretch.
    std::optional<absl::Time> idle_since;
    bool released = false;
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
      if (Stopping()) break;
      std::string id = WorkerId();
      AcquireTaskRequest request = AcquireRequest(id, o.acquire_wait_ms, cache.Versions());
      AcquireTaskReply reply;
      auto asked_at = std::chrono::steady_clock::now();
      absl::Status s = client->AcquireTask(request, &reply);
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
        if (reply.idle() || !reply.has_task()) {
          const absl::Time now = absl::Now();
          if (!idle_since.has_value()) idle_since = now;
          if (!released && now - *idle_since >= o.release_heap_after_idle) {
            const int64_t before = ProcessResidentBytes();
            ReleaseFreeHeap();
            released = true;
            heap_releases.fetch_add(1);
            Log(absl::StrCat("idle for ", absl::FormatDuration(now - *idle_since),
                             ": gave free heap back, resident ", before >> 20, " -> ",
                             ProcessResidentBytes() >> 20, " MiB"));
          }
          continue;
        }
        idle_since.reset();
        released = false;
        HandleTask(std::move(*reply.mutable_task()), SecondsSince(asked_at), &next);
        tasks_done.fetch_add(1);
        continue;
      }
      if (absl::IsNotFound(s)) {
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
    Stop();
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
  GrpcGatewayClientOptions g;
  g.coordinator = o.coordinator;
  g.token = o.token;
  g.tls_ca = o.tls_ca;
  g.rpc_timeout = o.rpc_timeout;
  g.stream_timeout = o.stream_timeout;
  g.max_message_bytes = o.max_message_bytes;
  // The options are checked (device first) before the channel exists.
  NAS_RETURN_IF_ERROR(ParseDevice(o.device, "device").status());
  NAS_ASSIGN_OR_RETURN(std::unique_ptr<GatewayClient> client, CreateGrpcGatewayClient(g));
  return Create(std::move(o), std::move(client));
}

absl::StatusOr<std::unique_ptr<RemoteWorker>> RemoteWorker::Create(
    RemoteWorkerOptions o, std::unique_ptr<GatewayClient> client) {
  if (client == nullptr) return absl::InvalidArgumentError("client: required");
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
  ConfigureDeviceRuntime(o.deterministic);
  impl->threads = at::get_num_threads();
  TaskRunnerOptions ro;
  ro.device = o.device;
  ro.data_dir = o.data_dir;
  ro.data_roots = o.data_roots;
  ro.loader_threads = o.loader_threads;
  ro.threads = impl->threads;
  ro.log = Log;
  NAS_ASSIGN_OR_RETURN(impl->runner, TaskRunner::Create(std::move(ro)));
  if (impl->runner->device().is_cuda()) {
    Log(absl::StrCat("device ", o.device, ": ", DeviceDescription(impl->runner->device()),
                     o.deterministic ? " (deterministic)" : " (cuDNN autotuning)"));
  }
  impl->client = std::move(client);
  impl->o = std::move(o);
  return std::unique_ptr<RemoteWorker>(new RemoteWorker(std::move(impl)));
}

absl::Status RemoteWorker::Run() { return impl_->Run(); }

void RemoteWorker::Stop() { impl_->Stop(); }

int64_t RemoteWorker::tasks_done() const { return impl_->tasks_done.load(); }
int64_t RemoteWorker::heap_releases() const { return impl_->heap_releases.load(); }

}  // namespace nas
