#include "worker/tensor_cache.h"

#include <algorithm>

namespace nas {

namespace {
int64_t TensorBytes(const torch::Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0;
}
}  // namespace

void TensorCache::StartTask(const std::string& job_id) {
  ++clock_;
  if (job_id != job_) {
    entries_.clear();
    job_ = job_id;
  }
}

const torch::Tensor* TensorCache::Find(const std::string& name, uint64_t version) const {
  auto it = entries_.find(name);
  return it != entries_.end() && it->second.version == version ? &it->second.tensor : nullptr;
}

const torch::Tensor* TensorCache::Get(const std::string& name) const {
  auto it = entries_.find(name);
  return it != entries_.end() ? &it->second.tensor : nullptr;
}

void TensorCache::Put(const std::string& name, uint64_t version, torch::Tensor tensor) {
  entries_[name] = Entry{version, std::move(tensor), clock_};
}

void TensorCache::Trim(const std::vector<std::string>& used, int64_t budget_bytes) {
  for (const std::string& name : used) {
    auto it = entries_.find(name);
    if (it != entries_.end()) it->second.last_used = clock_;
  }
  int64_t total = Bytes();
  if (total <= budget_bytes) return;
  std::vector<std::map<std::string, Entry>::iterator> older;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->second.last_used != clock_) older.push_back(it);
  }
  std::sort(older.begin(), older.end(), [](const auto& a, const auto& b) {
    return a->second.last_used < b->second.last_used;
  });
  for (auto it : older) {
    if (total <= budget_bytes) break;
    total -= TensorBytes(it->second.tensor);
    entries_.erase(it);
  }
}

std::map<std::string, uint64_t> TensorCache::Versions() const {
  std::map<std::string, uint64_t> v;
  for (const auto& [name, e] : entries_) v[name] = e.version;
  return v;
}

int64_t TensorCache::Bytes() const {
  int64_t total = 0;
  for (const auto& [name, e] : entries_) total += TensorBytes(e.tensor);
  return total;
}

}  // namespace nas
