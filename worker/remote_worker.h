// The search worker process: pulls tasks from the coordinator over gRPC (proto/nas/worker.proto)
// and runs them with LibTorch (DESIGN.md "Distributed search"). This file is the loop - acquire,
// run, complete - over three rooms: the gateway client (gateway_client.h: the RPCs, with a fake
// for tests), the tensor cache (tensor_cache.h) and the task runner (task_runner.h: a task and
// its tensors in, the result out, on --device; no gRPC).
//
// The loop:
//   1. RegisterWorker(name, device, threads) -> worker id, heartbeat and lease periods.
//      A background thread then sends Heartbeat{worker id, lease of the running task or ""}
//      every heartbeat_ms. lease_valid == false marks the running task abandoned: it stops at
//      the next opportunity (a final task between batches, the others when their step ends)
//      and its result is never sent. NOT_FOUND (the coordinator restarted and forgot us)
//      re-registers and drops the tensor cache.
//   2. AcquireTask{worker id, wait_ms} long-polls; idle replies loop, NOT_FOUND re-registers.
//   3. The task builds only what it needs: init builds the whole supernet (seeded) and returns
//      every tensor; a weight task materialises its path, an arch task its pairs (or rl path),
//      and fetches (FetchTensors) exactly the task's tensors that are not cached at the listed
//      version (the cache keeps earlier tasks' tensors up to cache_bytes); a final task trains a
//      derived network on the full training set, evaluates and measures it. Data sets are loaded
//      once per DataSpec and kept.
//   4. CompleteTask streams {outcome} then the result tensors in chunks of at most 1 MiB.
//      A refusal (FAILED_PRECONDITION: stale lease; NOT_FOUND; INVALID_ARGUMENT) is logged and
//      dropped, never retried. A failed task reports outcome.error and no tensors.
// An unreachable coordinator is retried forever (100 ms backoff doubling to 2 s), logged once
// per change of state. Stop() (SIGTERM/SIGINT in nas_worker) drains: no further task is
// acquired; a weight, arch or init task in progress finishes and reports (they are short); a
// final task is abandoned at its next batch, and a task just acquired or still waiting for its
// tensors is dropped, and either is handed back (ReleaseTask) so that the coordinator re-issues
// it at once instead of when its lease expires.
//
//   nas_worker --coordinator=coordinator:50051 --threads=2 --stats_file=/tmp/worker.jsonl
//
// Thread-safety: Run() is called once, from one thread; Stop() may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nas {

class WorkerMetrics;

struct RemoteWorkerOptions {
  // The coordinator's WorkerGateway address, host:port. Required.
  std::string coordinator;
  // Worker name reported at registration. Default "" (hostname-pid).
  std::string name;
  // Where tasks compute: "cpu", "cuda" or "cuda:N" (one worker process per GPU). CUDA where
  // LibTorch sees no GPU is an error at Create, never a CPU run. Default "cpu".
  std::string device = "cpu";
  // cuDNN deterministic algorithms and no autotuning (the equivalence tests); false: cuDNN
  // autotuning (cudnn.benchmark), faster. No effect on the CPU. Default false.
  bool deterministic = false;
  // The latency-table devices this worker measures as (RegisterWorkerRequest.latency_devices):
  // jobs of these devices have their final latency measured here. Default none.
  std::vector<std::string> latency_devices;
  // Prometheus metrics of every task (worker_metrics.h), not owned; null: none. Default null.
  WorkerMetrics* metrics = nullptr;
  // Intra-op threads (ConfigureCpuRuntime); 0: all cores. Default 0.
  int threads = 0;
  // When set, one JSON line per task is appended: {"job","lease","kind","fetched_bytes",
  // "resident_bytes","tensors_fetched","cache_hits","cached_bytes","seconds","acquire_seconds",
  // "load_seconds","run_seconds","send_seconds","outcome"}. Default "".
  std::string stats_file;
  // Run() returns after this many tasks (whatever their outcome); 0: forever. Default 0.
  int64_t max_tasks = 0;
  // Overrides the data directory of every task's DataSpec. Default "" (the task's).
  std::string data_dir;
  // The worker's credential, sent as 'authorization: Bearer TOKEN' with every call (a token of
  // role "worker" in the coordinator's tokens file); empty for a coordinator without
  // authentication. Default "".
  std::string token;
  // PEM certificates to trust for a TLS connection to the coordinator; empty: plaintext.
  // Default "".
  std::string tls_ca;
  // The folders a task's data_dir may name (it comes from a user's job spec): a data_dir that
  // does not resolve, symbolic links followed, to one of these or below is refused and the task
  // fails naming it. The data_dir option above is the operator's and is not checked. Default
  // {"/usr/share/datasets"} (where Debian's dataset packages install).
  std::vector<std::string> data_roots = {"/usr/share/datasets"};
  // Decoding threads of each image-folder loader (a job with stream_images runs two: training
  // and validation batches). Default 2.
  int loader_threads = 2;
  // Long-poll budget of one AcquireTask. Default 5000.
  int acquire_wait_ms = 5000;
  // One round trip per task: the worker lists its cached tensors when it asks for a task, the
  // task carries the ones it lacks inline when they total at most this many bytes (the
  // coordinator caps it at 4 MiB), and each CompleteTask asks for the next task, which its reply
  // carries. 0: AcquireTask, FetchTensors and CompleteTask for every task. Default 4 MiB.
  int64_t inline_limit_bytes = 4 << 20;
  // Tensors kept between tasks (host memory, by name and version), so that a later task whose
  // path crosses them fetches only those another worker changed since. The running task's
  // tensors are always kept; beyond this many bytes the least recently used others are dropped.
  // 0 keeps only the last task's tensors. Default 256 MiB.
  int64_t cache_bytes = int64_t{256} << 20;
  // Deadline of each unary call. Default 30 s.
  absl::Duration rpc_timeout = absl::Seconds(30);
  // Deadline of each FetchTensors / CompleteTask stream. Default 10 min.
  absl::Duration stream_timeout = absl::Minutes(10);
  // gRPC max send/receive message size. Default 64 MiB.
  int max_message_bytes = 64 << 20;
  // Reconnect backoff: first delay, doubling up to the max. Defaults 100 ms and 2 s.
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(2);
  // The worker keeps the memory its steps free for the next step (core/malloc_tuning.h); once it
  // has had no task for this long it gives the free part back to the system, once per idle
  // stretch. Default 60 s.
  absl::Duration release_heap_after_idle = absl::Seconds(60);
};

// OK when `dir` resolves (symbolic links followed, ".." removed) to one of `roots` or below;
// else PermissionDenied naming the data_dir, what it resolves to and the roots. (Defined with
// the task runner, worker/task_runner.cc.)
absl::Status CheckDataDir(const std::string& dir, const std::vector<std::string>& roots);

class GatewayClient;  // worker/gateway_client.h

class RemoteWorker {
 public:
  // Validates the options (InvalidArgument: no coordinator, a bad device; FailedPrecondition:
  // CUDA without a visible GPU), configures the CPU runtime and creates the channel. Connects lazily.
  static absl::StatusOr<std::unique_ptr<RemoteWorker>> Create(RemoteWorkerOptions options);
  // The same over a given client (tests: FakeGatewayClient); options.coordinator, token,
  // tls_ca, timeouts and message size are the client's business and not used.
  static absl::StatusOr<std::unique_ptr<RemoteWorker>> Create(
      RemoteWorkerOptions options, std::unique_ptr<GatewayClient> client);
  ~RemoteWorker();
  RemoteWorker(const RemoteWorker&) = delete;
  RemoteWorker& operator=(const RemoteWorker&) = delete;

  // Registers and serves tasks until Stop() or max_tasks. Returns OK then; a connection
  // problem never ends it.
  absl::Status Run();
  // Asks Run() to return (wakes a long poll or a backoff sleep). Thread-safe, not
  // async-signal-safe: call it from a thread that waited for the signal.
  void Stop();
  // Tasks handled so far (any outcome).
  int64_t tasks_done() const;
  // Idle stretches in which the worker gave its free heap back (release_heap_after_idle).
  int64_t heap_releases() const;

 private:
  struct Impl;
  explicit RemoteWorker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nas
