// The worker's tensor cache: the tensors of one job by name, each at the version the
// coordinator listed when it was fetched (or the version a result the worker sent made it), in
// host memory. A later task whose path crosses them loads them from here and fetches only those
// another worker changed since. The running task's tensors are always kept; beyond a byte
// budget the least recently used others are dropped (Trim).
//
//   TensorCache cache;
//   cache.StartTask(task.job_id);                     // a new job empties it
//   if (const torch::Tensor* t = cache.Find("stem.conv.weight", 3)) ...
//   cache.Put("stem.conv.weight", 3, tensor);
//   cache.Trim(task_names, /*budget_bytes=*/256 << 20);
//
// Thread-safety: none (the worker's main thread owns it).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nas {

class TensorCache {
 public:
  // A new task: advances the recency clock; a task of another job than the cached one empties
  // the cache first.
  void StartTask(const std::string& job_id);
  // Drops everything (the coordinator may have restarted and forgotten our versions).
  void Clear() { entries_.clear(); }

  // The tensor at exactly `version`, or nullptr.
  const torch::Tensor* Find(const std::string& name, uint64_t version) const;
  // The tensor at whatever version, or nullptr.
  const torch::Tensor* Get(const std::string& name) const;
  // Stores (replaces) a tensor, used by the current task.
  void Put(const std::string& name, uint64_t version, torch::Tensor tensor);

  // Marks `used` (the task's tensors) as the most recently used, then drops the least recently
  // used others while the cache holds more than budget_bytes.
  void Trim(const std::vector<std::string>& used, int64_t budget_bytes);

  // name -> version of everything cached (what AcquireTask lists).
  std::map<std::string, uint64_t> Versions() const;
  int64_t Bytes() const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t version = 0;
    torch::Tensor tensor;
    uint64_t last_used = 0;  // the task (clock_) that last listed it
  };
  std::string job_;
  std::map<std::string, Entry> entries_;
  uint64_t clock_ = 0;  // tasks started
};

}  // namespace nas
