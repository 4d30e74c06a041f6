// A search job's parameter store: the supernet's tensors (weights, BatchNorm statistics, SGD
// momentum, and the final artifacts) as opaque blobs, each with its version, grouped by owner
// (the fixed layers, each edge's candidates), the merge of the tensors the tasks of a round
// return, and the set of tensors changed since the last checkpoint.
//
// Tensors are shared (`shared_ptr<const TensorBlob>`): a task's fetch and a checkpoint hold the
// same bytes as the store, and a new version replaces the pointer, never the bytes in place. A
// store key (the tensor's name) is never erased except by Clear(), so the views handed out
// (TensorListing::name, the changed set, a task's allowed names) stay valid until then.
//
//   ParamStore params;
//   params.Put(std::make_shared<const TensorBlob>(std::move(blob)));  // recovery, version as is
//   params.List(space, keep, /*momentum=*/true, [&](const ParamStore::Entry& e) {
//     listed.push_back({e.first, e.second.blob->version()});           // a task's tensors
//   });
//   params.MergeReturned(returned);  // a round's results in task order: versions + 1, changed
//   RoundCommit commit;
//   commit.tensors = params.ChangedTensors();
//   params.ClearChanged();           // once the commit is queued or written
//
// Thread-safety: none; a ParamStore belongs to one job and is used with the JobManager's lock
// held (one writer at a time, readers under the same lock).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/param_names.h"
#include "core/search_space.h"
#include "nas/worker.pb.h"

namespace nas {

// The name prefix of a job's final artifacts (`artifact:derived.pt`): stored with the tensors,
// listed by no task.
inline constexpr char kArtifactPrefix[] = "artifact:";

// A stored tensor as a task lists it (Task.tensors): a view of its store key.
struct TensorListing {
  absl::string_view name;  // a key of the job's ParamStore
  uint64_t version = 0;
  // Only this task of its round lists the tensor, so only it returns it: the worker may keep
  // its own copy instead of fetching it back (TensorRef.sole_writer).
  bool sole_writer = false;
};

class ParamStore {
 public:
  // A tensor with what its name says, classified once (every task of every round filters the
  // store by candidate).
  struct Stored {
    explicit Stored(std::shared_ptr<const TensorBlob> b);
    std::shared_ptr<const TensorBlob> blob;
    TensorOwner owner;
    bool momentum;  // `momentum:` + a parameter's name
    bool artifact;  // kArtifactPrefix + a file name
  };
  using Entry = std::pair<const std::string, Stored>;

  ParamStore() = default;
  ParamStore(const ParamStore&) = delete;
  ParamStore& operator=(const ParamStore&) = delete;

  // The entry of a tensor, or null.
  const Stored* Find(absl::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
  }
  // Puts `blob` as it is (its name, its version), replacing a tensor of that name; returns its
  // key in the store (valid until Clear). Not marked changed.
  absl::string_view Put(std::shared_ptr<const TensorBlob> blob);
  // Put, and marks the tensor changed (it goes into the next checkpoint).
  void PutChanged(std::shared_ptr<const TensorBlob> blob) { changed_.insert(Put(std::move(blob))); }
  // Forgets every tensor, the groups and the changed set.
  void Clear();
  size_t size() const { return tensors_.size(); }
  // Every entry in name order.
  const std::map<std::string, Stored>& tensors() const { return tensors_; }

  // Calls f(const Entry&) for the fixed layers' tensors, then those of each kept candidate
  // (keep[edge][candidate]), each group in name order; momentum too when `momentum`. Artifacts
  // and tensors that name no candidate of `space` are never listed. The groups are built once
  // from the store (again after a new name is put), so a task's ~230 tensors are listed from a
  // few groups instead of by filtering the whole store. `space` must be the job's (the same
  // every call).
  template <typename F>
  void List(const SearchSpace& space, const std::vector<std::vector<bool>>& keep, bool momentum,
            F&& f) {
    const auto& groups = Groups(space);
    auto list = [&](const std::vector<const Entry*>& group) {
      for (const Entry* e : group) {
        if (!momentum && e->second.momentum) continue;
        f(*e);
      }
    };
    list(groups[0]);
    for (size_t e = 0; e < keep.size() && e < group_base_.size(); ++e) {
      for (size_t c = 0; c < keep[e].size(); ++c) {
        if (keep[e][c]) list(groups[group_base_[e] + c]);
      }
    }
  }

  // Merges the tensors a round's tasks returned (`returned`, one list per task in task order)
  // into the store: a name returned by one task is moved in as it came (no copy of its bytes;
  // the lists are left with moved-from blobs), one returned by several is merged (MergeBlobs).
  // Each gets version (its stored version, or 0) + 1, offset 0, total_bytes its size, and is
  // marked changed. The caller has checked the results (CheckReturned, same shapes).
  void MergeReturned(absl::Span<std::vector<TensorBlob>* const> returned);

  // OK when a task allowed the tensors `allowed` (views of store keys) may return `b`: a stored
  // tensor it lists, with the stored dtype and shape; or, with `allow_new_momentum`, the
  // momentum of such a tensor (`momentum:` + its name) with the parameter's shape.
  // InvalidArgument naming the tensor otherwise.
  absl::Status CheckReturned(const TensorBlob& b,
                             const absl::flat_hash_set<absl::string_view>& allowed,
                             bool allow_new_momentum) const;

  // The tensors changed since ClearChanged (shared, not copied), in no particular order.
  std::vector<std::shared_ptr<const TensorBlob>> ChangedTensors() const;
  size_t changed() const { return changed_.size(); }
  void ClearChanged() { changed_.clear(); }

  // Marks in each task's listing (one per task of a round) the tensors no other task lists
  // (TensorListing::sole_writer). Counted by the address of the store key, one per tensor.
  static void MarkSoleWriters(absl::Span<std::vector<TensorListing>* const> listings);

  // Same dtype and shape.
  static bool SameShape(const TensorBlob& a, const TensorBlob& b);
  // Element-wise mean of float32 tensors, in the given order; int64 takes the largest
  // (BatchNorm's num_batches_tracked); other dtypes keep the first. One input is returned
  // unchanged, so one worker is bit-exact. All inputs have the first's dtype and shape.
  static TensorBlob MergeBlobs(const std::vector<const TensorBlob*>& in);

 private:
  const std::vector<std::vector<const Entry*>>& Groups(const SearchSpace& space);

  // The store in name order (tasks list their tensors in it), and a hash index of it for the
  // lookups of every result's tensors. Mutated through Put and Clear only.
  std::map<std::string, Stored> tensors_;
  absl::flat_hash_map<absl::string_view, Stored*> index_;
  // The entries by owner, each group in name order: [0] the fixed layers, then 1 + (edge,
  // candidate) in order; artifacts in none. Empty until listed (and after a new name).
  std::vector<std::vector<const Entry*>> groups_;
  std::vector<int> group_base_;  // first group of each edge
  // Tensors changed since the last checkpoint: views of store keys.
  absl::flat_hash_set<absl::string_view> changed_;
};

}  // namespace nas
