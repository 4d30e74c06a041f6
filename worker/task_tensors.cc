#include "worker/task_tensors.h"

#include <optional>
#include <utility>

namespace nas {

namespace {

ChunkAssemblerOptions TaskLimits(int64_t tensors) {
  ChunkAssemblerOptions o;
  o.max_total_bytes = kMaxTaskTensorBytes;
  o.max_tensors = tensors;
  return o;
}

}  // namespace

TaskTensorAssembler::TaskTensorAssembler(int64_t tensors) : in_(TaskLimits(tensors)) {}

absl::Status TaskTensorAssembler::Add(TensorBlob&& chunk) {
  absl::StatusOr<std::optional<TensorBlob>> whole = in_.Add(std::move(chunk));
  if (!whole.ok()) return whole.status();
  if (whole->has_value()) {
    std::string name = (*whole)->name();
    whole_.emplace(std::move(name), **std::move(whole));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, TensorBlob>> TaskTensorAssembler::Finish() && {
  if (absl::Status s = in_.Finish(); !s.ok()) return s;
  return std::move(whole_);
}

}  // namespace nas
