#include "coordinator/param_store.h"

#include <algorithm>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nas {

namespace {

int64_t NumElements(const TensorBlob& b) {
  int64_t n = 1;
  for (int64_t d : b.shape()) n *= d;
  return n;
}

}  // namespace

ParamStore::Stored::Stored(std::shared_ptr<const TensorBlob> b)
    : blob(std::move(b)),
      owner(ClassifyTensor(blob->name())),
      momentum(absl::StartsWith(blob->name(), kMomentumPrefix)),
      artifact(absl::StartsWith(blob->name(), kArtifactPrefix)) {}

absl::string_view ParamStore::Put(std::shared_ptr<const TensorBlob> blob) {
  auto it = index_.find(blob->name());
  if (it != index_.end()) {
    it->second->blob = std::move(blob);
    return it->first;
  }
  std::string name = blob->name();
  auto [pos, inserted] = tensors_.emplace(std::move(name), Stored(std::move(blob)));
  index_.emplace(pos->first, &pos->second);
  groups_.clear();  // a new tensor: regrouped when next listed
  return pos->first;
}

void ParamStore::Clear() {
  changed_.clear();
  index_.clear();
  tensors_.clear();
  groups_.clear();
}

const std::vector<std::vector<const ParamStore::Entry*>>& ParamStore::Groups(
    const SearchSpace& space) {
  if (!groups_.empty()) return groups_;
  group_base_.clear();
  int n = 1;
  for (const EdgeSpec& e : space.edges()) {
    group_base_.push_back(n);
    n += static_cast<int>(e.candidates.size());
  }
  groups_.assign(n, {});
  for (const Entry& entry : tensors_) {
    const Stored& t = entry.second;
    if (t.artifact) continue;
    if (t.owner.fixed) {
      groups_[0].push_back(&entry);
      continue;
    }
    const TensorOwner& o = t.owner;
    if (o.edge < 0 || o.edge >= static_cast<int>(group_base_.size()) || o.candidate < 0 ||
        o.candidate >= static_cast<int>(space.edges()[o.edge].candidates.size())) {
      continue;  // names no candidate of this space: no task lists it
    }
    groups_[group_base_[o.edge] + o.candidate].push_back(&entry);
  }
  return groups_;
}

void ParamStore::MergeReturned(absl::Span<std::vector<TensorBlob>* const> returned) {
  // Names returned by one task (the common case) need no list of their own.
  absl::flat_hash_map<absl::string_view, absl::InlinedVector<TensorBlob*, 1>> by_name;
  size_t total = 0;
  for (const std::vector<TensorBlob>* r : returned) total += r->size();
  by_name.reserve(total);
  for (std::vector<TensorBlob>* r : returned) {
    for (TensorBlob& b : *r) by_name[b.name()].push_back(&b);
  }
  for (auto& [name, list] : by_name) {
    const Stored* old = Find(name);
    uint64_t version = old == nullptr ? 1 : old->blob->version() + 1;
    TensorBlob merged;
    if (list.size() == 1) {
      merged = std::move(*list[0]);
    } else {
      merged = MergeBlobs(std::vector<const TensorBlob*>(list.begin(), list.end()));
    }
    merged.set_version(version);
    merged.set_offset(0);
    merged.set_total_bytes(merged.data().size());
    PutChanged(std::make_shared<const TensorBlob>(std::move(merged)));
  }
}

absl::Status ParamStore::CheckReturned(const TensorBlob& b,
                                       const absl::flat_hash_set<absl::string_view>& allowed,
                                       bool allow_new_momentum) const {
  const Stored* t = Find(b.name());
  if (t != nullptr && allowed.count(b.name()) > 0) {
    if (!SameShape(*t->blob, b)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensors: '", b.name(), "' has shape [", absl::StrJoin(b.shape(), ","), "] ", b.dtype(),
          ", expected [", absl::StrJoin(t->blob->shape(), ","), "] ", t->blob->dtype()));
    }
    return absl::OkStatus();
  }
  if (allow_new_momentum && absl::StartsWith(b.name(), kMomentumPrefix)) {
    absl::string_view param = absl::string_view(b.name()).substr(std::strlen(kMomentumPrefix));
    const Stored* p = Find(param);
    if (p != nullptr && allowed.count(param) > 0) {
      if (!SameShape(*p->blob, b)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensors: '", b.name(), "' does not have its parameter's shape"));
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tensors: '", b.name(), "' is not a tensor of this task"));
}

std::vector<std::shared_ptr<const TensorBlob>> ParamStore::ChangedTensors() const {
  std::vector<std::shared_ptr<const TensorBlob>> out;
  out.reserve(changed_.size());
  for (absl::string_view n : changed_) out.push_back(Find(n)->blob);
  return out;
}

void ParamStore::MarkSoleWriters(absl::Span<std::vector<TensorListing>* const> listings) {
  absl::flat_hash_map<const char*, int> listed;
  for (const std::vector<TensorListing>* l : listings) {
    for (const TensorListing& r : *l) ++listed[r.name.data()];
  }
  for (std::vector<TensorListing>* l : listings) {
    for (TensorListing& r : *l) r.sole_writer = listed[r.name.data()] == 1;
  }
}

bool ParamStore::SameShape(const TensorBlob& a, const TensorBlob& b) {
  return a.dtype() == b.dtype() && a.shape().size() == b.shape().size() &&
         std::equal(a.shape().begin(), a.shape().end(), b.shape().begin());
}

TensorBlob ParamStore::MergeBlobs(const std::vector<const TensorBlob*>& in) {
  TensorBlob out = *in[0];
  if (in.size() == 1) return out;
  int64_t n = NumElements(out);
  if (out.dtype() == "float32") {
    std::vector<float> acc(n, 0.f);
    for (const TensorBlob* b : in) {
      const float* p = reinterpret_cast<const float*>(b->data().data());
      for (int64_t i = 0; i < n; ++i) acc[i] += p[i];
    }
    for (float& v : acc) v /= static_cast<float>(in.size());
    out.set_data(std::string(reinterpret_cast<const char*>(acc.data()), n * sizeof(float)));
  } else if (out.dtype() == "int64") {
    std::vector<int64_t> acc(n);
    std::memcpy(acc.data(), in[0]->data().data(), n * sizeof(int64_t));
    for (const TensorBlob* b : in) {
      const int64_t* p = reinterpret_cast<const int64_t*>(b->data().data());
      for (int64_t i = 0; i < n; ++i) acc[i] = std::max(acc[i], p[i]);
    }
    out.set_data(std::string(reinterpret_cast<const char*>(acc.data()), n * sizeof(int64_t)));
  }
  return out;
}

}  // namespace nas
