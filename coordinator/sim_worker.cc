#include "coordinator/sim_worker.h"

#include <algorithm>
#include <map>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/network_config.h"
#include "core/param_names.h"
#include "core/search_space.h"
#include "core/status_macros.h"
#include "latency_service/grpc_status.h"
#include "proto/tensor_codec.h"

namespace nas {

namespace {

TensorBlob FloatBlob(const std::string& name, int n, float value) {
  TensorBlob b;
  b.set_name(name);
  b.add_shape(n);
  b.set_dtype("float32");
  std::vector<float> v(n, value);
  b.set_data(std::string(reinterpret_cast<const char*>(v.data()), n * sizeof(float)));
  b.set_total_bytes(b.data().size());
  return b;
}

TensorBlob CounterBlob(const std::string& name) {
  TensorBlob b;
  b.set_name(name);
  b.set_dtype("int64");
  int64_t zero = 0;
  b.set_data(std::string(reinterpret_cast<const char*>(&zero), sizeof(zero)));
  b.set_total_bytes(b.data().size());
  return b;
}

}  // namespace

absl::StatusOr<std::vector<TensorBlob>> SyntheticSupernetTensors(const std::string& space_json,
                                                                 int floats) {
  NAS_ASSIGN_OR_RETURN(SearchSpace space, SearchSpace::FromJson(space_json));
  std::vector<TensorBlob> out;
  if (floats <= 0) {
    // Real sizes: the fixed layers' parameters in one tensor, each candidate's in another.
    NetworkConfig skeleton = space.Skeleton();
    out.push_back(FloatBlob("stem.conv.weight", static_cast<int>(skeleton.ParameterCount()), 0.5f));
    for (int e = 0; e < space.num_edges(); ++e) {
      for (size_t i = 0; i < space.edges()[e].candidates.size(); ++i) {
        if (space.edges()[e].candidates[i].zero) continue;
        std::string m = CandidateModuleName(e, static_cast<int>(i));
        int64_t n = BlockParameterCount(space.edges()[e].Block(static_cast<int>(i)));
        out.push_back(FloatBlob(m + ".weights", static_cast<int>(n), 0.25f));
      }
    }
    return out;
  }
  out.push_back(FloatBlob("stem.conv.weight", floats, 0.5f));
  out.push_back(FloatBlob("stem.bn.running_mean", floats, 0.f));
  out.push_back(CounterBlob("stem.bn.num_batches_tracked"));
  for (int e = 0; e < space.num_edges(); ++e) {
    for (size_t i = 0; i < space.edges()[e].candidates.size(); ++i) {
      if (space.edges()[e].candidates[i].zero) continue;
      std::string m = CandidateModuleName(e, static_cast<int>(i));
      out.push_back(FloatBlob(m + ".depthwise_conv.weight", floats, 0.25f));
      out.push_back(FloatBlob(m + ".depthwise_bn.running_mean", floats, 0.f));
      out.push_back(CounterBlob(m + ".depthwise_bn.num_batches_tracked"));
    }
  }
  out.push_back(FloatBlob("classifier.linear.weight", floats, 0.1f));
  return out;
}

SimWorker::SimWorker(std::shared_ptr<grpc::Channel> channel, int floats)
    : stub_(WorkerGateway::NewStub(channel)), floats_(floats) {}

void SimWorker::Prepare(grpc::ClientContext* ctx, absl::Duration d) const {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(d)));
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
}

absl::Status SimWorker::Register(const std::string& name) {
  grpc::ClientContext ctx;
  Prepare(&ctx, absl::Seconds(10));
  RegisterWorkerRequest req;
  req.set_name(name);
  req.set_device("sim");
  RegisterWorkerReply reply;
  NAS_RETURN_IF_ERROR(FromGrpcStatus(stub_->RegisterWorker(&ctx, req, &reply)));
  worker_id_ = reply.worker_id();
  return absl::OkStatus();
}

AcquireTaskRequest SimWorker::AcquireRequest(absl::Duration wait) const {
  AcquireTaskRequest req;
  req.set_worker_id(worker_id_);
  req.set_wait_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(wait)));
  req.set_max_tasks(batch_);
  if (single_round_trip_) {
    req.set_inline_limit_bytes(4 << 20);
    for (const auto& [name, blob] : cache_) {
      TensorRef* r = req.add_cached();
      r->set_name(name);
      r->set_version(blob.version());
    }
  }
  return req;
}

absl::StatusOr<bool> SimWorker::Acquire(absl::Duration wait) {
  grpc::ClientContext ctx;
  Prepare(&ctx, wait + absl::Seconds(10));
  AcquireTaskRequest req = AcquireRequest(wait);
  AcquireTaskReply reply;
  NAS_RETURN_IF_ERROR(FromGrpcStatus(stub_->AcquireTask(&ctx, req, &reply)));
  if (reply.idle()) return false;
  queue_.clear();
  Queue(reply);
  task_ = queue_.front();
  return true;
}

void SimWorker::Queue(AcquireTaskReply& reply) {
  absl::flat_hash_set<std::pair<absl::string_view, uint64_t>> inlined;
  auto count = [&](const Task& t) {
    for (const TensorBlob& b : t.inline_tensors()) {
      if (!inlined.emplace(b.name(), b.version()).second) ++inline_repeats_;
    }
  };
  count(reply.task());
  for (const Task& t : reply.more()) count(t);
  queue_.push_back(std::move(*reply.mutable_task()));
  for (Task& t : *reply.mutable_more()) queue_.push_back(std::move(t));
}

absl::StatusOr<std::vector<TensorBlob>> SimWorker::Fetch(const std::string& lease_id,
                                                         const std::vector<std::string>& names) {
  grpc::ClientContext ctx;
  Prepare(&ctx, absl::Seconds(30));
  FetchTensorsRequest req;
  req.set_lease_id(lease_id);
  for (const std::string& n : names) req.add_names(n);
  auto reader = stub_->FetchTensors(&ctx, req);
  ChunkAssemblerOptions limits;
  limits.max_tensors = static_cast<int64_t>(names.size());
  ChunkAssembler in(limits);
  std::vector<TensorBlob> out;
  absl::Status bad;
  TensorBlob c;
  while (reader->Read(&c)) {
    bytes_fetched_ += static_cast<int64_t>(c.data().size());
    absl::StatusOr<std::optional<TensorBlob>> whole = in.Add(std::move(c));
    c.Clear();
    if (!whole.ok()) {
      bad = whole.status();
      ctx.TryCancel();
      break;
    }
    if (whole->has_value()) out.push_back(**std::move(whole));
  }
  absl::Status s = FromGrpcStatus(reader->Finish());
  NAS_RETURN_IF_ERROR(bad);
  NAS_RETURN_IF_ERROR(s);
  NAS_RETURN_IF_ERROR(in.Finish());
  return out;
}

absl::StatusOr<std::pair<TaskOutcome, std::vector<TensorBlob>>> SimulatedResult(
    const Task& task, std::vector<TensorBlob> tensors, int floats, int64_t train_batches) {
  TaskOutcome o;
  o.set_lease_id(task.lease_id());
  int batch = std::max(1, task.data().batch_size());
  switch (task.kind_case()) {
    case Task::kInit: {
      NAS_ASSIGN_OR_RETURN(tensors, SyntheticSupernetTensors(task.space_json(), floats));
      o.set_train_size(train_batches * batch);
      o.set_valid_size(std::max<int64_t>(1, train_batches / 2) * batch);
      break;
    }
    case Task::kWeight:
    case Task::kArch: {
      o.set_loss(1.0);
      o.set_accuracy(0.5);
      if (task.has_weight()) {
        for (int i = 0; i < task.weight().chain_size(); ++i) {  // a chain: one each further task
          o.add_chain_losses(1.0);
          o.add_chain_accuracies(0.5);
        }
        absl::flat_hash_set<std::string> have;
        for (const TensorBlob& t : tensors) {
          if (absl::StartsWith(t.name(), kMomentumPrefix)) have.insert(t.name());
        }
        std::vector<TensorBlob> momentum;
        for (const TensorBlob& t : tensors) {
          if (t.dtype() != "float32" || absl::StartsWith(t.name(), kMomentumPrefix)) continue;
          if (have.contains(absl::StrCat(kMomentumPrefix, t.name()))) continue;
          TensorBlob m = t;
          m.set_name(kMomentumPrefix + t.name());
          momentum.push_back(std::move(m));
        }
        for (TensorBlob& m : momentum) tensors.push_back(std::move(m));
      } else if (!task.arch().rl()) {
        for (int e = 0; e < task.arch().active_size(); ++e) {
          o.add_gate_grads(0.01);
          o.add_gate_grads(-0.01);
        }
      }
      break;
    }
    case Task::kFinal: {
      tensors.clear();
      o.set_report_json(absl::StrCat("{\"label\": \"", task.final().label(),
                                     "\", \"test_accuracy\": 0.5, \"measured_latency_ms\": 1.0}"));
      TensorBlob w;
      w.set_name(task.final().label() + ".pt");
      w.set_dtype("bytes");
      w.add_shape(8);
      w.set_data(std::string(8, 'w'));
      w.set_total_bytes(8);
      tensors.push_back(std::move(w));
      break;
    }
    case Task::kEval: {
      tensors.clear();
      // Simulated accuracies that vary with the path (so the report's view has a spread).
      for (const PathChoices& p : task.eval().paths()) {
        int sum = 0;
        for (int c : p.choices()) sum += c;
        o.add_path_accuracies(0.5 + 0.01 * (sum % 40));
      }
      break;
    }
    default:
      return absl::InvalidArgumentError("task: no kind");
  }
  for (TensorBlob& t : tensors) {
    t.set_offset(0);
    t.set_total_bytes(t.data().size());
  }
  return std::make_pair(std::move(o), std::move(tensors));
}

absl::StatusOr<std::pair<TaskOutcome, std::vector<TensorBlob>>> SimWorker::MakeResult() {
  std::vector<TensorBlob> tensors;
  if (task_.has_weight() || task_.has_arch()) {
    if (single_round_trip_) {
      for (const TensorBlob& b : task_.inline_tensors()) cache_[b.name()] = b;
    }
    std::vector<std::string> names;
    for (const TensorRef& r : task_.tensors()) {
      auto it = cache_.find(r.name());
      if (it == cache_.end() || it->second.version() != r.version()) names.push_back(r.name());
    }
    std::vector<TensorBlob> fetched;
    if (!names.empty()) {
      NAS_ASSIGN_OR_RETURN(fetched, Fetch(task_.lease_id(), names));
    }
    for (const TensorBlob& b : fetched) {
      if (single_round_trip_) cache_[b.name()] = b;
    }
    for (const TensorRef& r : task_.tensors()) {
      auto it = std::find_if(fetched.begin(), fetched.end(),
                             [&](const TensorBlob& b) { return b.name() == r.name(); });
      tensors.push_back(it != fetched.end() ? *it : cache_.at(r.name()));
    }
  }
  if (compute_time_ > absl::ZeroDuration()) absl::SleepFor(compute_time_);
  return SimulatedResult(task_, std::move(tensors), floats_, train_batches_);
}

absl::Status SimWorker::Complete(const TaskOutcome& outcome, const std::vector<TensorBlob>& tensors,
                                 size_t chunk, CompleteTaskReply* out) {
  return CompleteMany({{outcome, tensors}}, chunk, out);
}

absl::Status SimWorker::CompleteMany(
    std::vector<std::pair<TaskOutcome, std::vector<TensorBlob>>> results, size_t chunk,
    CompleteTaskReply* out) {
  grpc::ClientContext ctx;
  Prepare(&ctx, absl::Seconds(30));
  CompleteTaskReply local;
  CompleteTaskReply& reply = out != nullptr ? *out : local;
  auto writer = stub_->CompleteTask(&ctx, &reply);
  bool ok = true;
  // Chunks of at most `chunk` bytes, packed into messages of at most `chunk` bytes of data (as
  // the real worker sends them), or one chunk per message.
  CompleteTaskRequest pack;
  size_t packed = 0;
  auto flush = [&]() {
    if (pack.tensors().blobs_size() == 1 && !pack_chunks_) {
      CompleteTaskRequest one;
      one.mutable_tensor()->Swap(pack.mutable_tensors()->mutable_blobs(0));
      ok = ok && writer->Write(one);
    } else if (pack.tensors().blobs_size() > 0) {
      ok = ok && writer->Write(pack);
    }
    pack.Clear();
    packed = 0;
  };
  for (auto& [outcome, tensors] : results) {
    CompleteTaskRequest first;
    *first.mutable_outcome() = std::move(outcome);
    ok = ok && writer->Write(first);
    auto add = [&](TensorBlob&& c) {
      size_t n = c.data().size();
      if (!pack_chunks_ || packed + n > chunk) flush();
      *pack.mutable_tensors()->add_blobs() = std::move(c);
      packed += n;
      return ok;
    };
    for (TensorBlob& t : tensors) {
      if (t.data().size() <= chunk) {  // one chunk: the tensor itself, uncopied
        t.set_offset(0);
        t.set_total_bytes(t.data().size());
        add(std::move(t));
      } else {
        SplitIntoChunks(t, chunk, add);
      }
    }
    flush();
  }
  writer->WritesDone();
  return FromGrpcStatus(writer->Finish());
}

absl::StatusOr<bool> SimWorker::RunOne(absl::Duration wait) {
  NAS_ASSIGN_OR_RETURN(int n, RunSome(wait));
  return n > 0;
}

absl::StatusOr<int> SimWorker::RunSome(absl::Duration wait) {
  if (queue_.empty()) {
    NAS_ASSIGN_OR_RETURN(bool got, Acquire(wait));
    if (!got) return 0;
  }
  std::vector<Task> tasks = std::move(queue_);
  queue_.clear();
  std::vector<std::pair<TaskOutcome, std::vector<TensorBlob>>> results;
  for (Task& t : tasks) {
    task_ = std::move(t);
    NAS_ASSIGN_OR_RETURN(auto r, MakeResult());
    results.push_back(std::move(r));
  }
  if (single_round_trip_) {
    *results.back().first.mutable_next() = AcquireRequest(absl::ZeroDuration());
  }
  CompleteTaskReply reply;
  NAS_RETURN_IF_ERROR(CompleteMany(std::move(results), 1 << 20, &reply));
  for (int i = 0; i < reply.codes_size(); ++i) {
    if (reply.codes(i) != 0) {
      return absl::Status(static_cast<absl::StatusCode>(reply.codes(i)), reply.messages(i));
    }
  }
  if (reply.has_next() && reply.next().has_task()) Queue(*reply.mutable_next());
  return static_cast<int>(tasks.size());
}

}  // namespace nas
