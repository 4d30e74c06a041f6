// The tensors of one task as a worker receives them (a FetchTensors stream, a task's
// inline_tensors): reassembled by the codec (proto/tensor_codec.h, its rules and per-tensor
// bounds) within what a task legitimately carries, and kept by name. No LibTorch: FromWire
// (tensor_blob.h) makes tensors of them.
//
//   TaskTensorAssembler in(refs.size());
//   while (reader->Read(&chunk)) NAS_RETURN_IF_ERROR(in.Add(std::move(chunk)));
//   int64_t fetched = in.bytes();
//   NAS_ASSIGN_OR_RETURN(auto tensors, std::move(in).Finish());
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nas/common.pb.h"
#include "proto/tensor_codec.h"

namespace nas {

// Most tensor data in one task's tensors: 4 GiB. A task carries at most a path's weights and
// their momentum (under SpaceLimits' 400 million parameters, 3.2 GB of float32) and buffers.
inline constexpr int64_t kMaxTaskTensorBytes = int64_t{4} << 30;

// Reassembles one task's tensors. Every error is InvalidArgument naming the tensor (the
// codec's): chunks out of order or interleaved, a first chunk whose total_bytes is not its
// shape's size, a tensor above TensorLimits' defaults, a name twice, more tensors than the task
// lists, more than kMaxTaskTensorBytes in all. Not thread-safe.
class TaskTensorAssembler {
 public:
  // `tensors`: how many tensors the task lists; no more may arrive.
  explicit TaskTensorAssembler(int64_t tensors);

  absl::Status Add(TensorBlob&& chunk);
  // Every tensor received, whole (offset 0, total_bytes = size), by name. InvalidArgument names
  // a tensor left incomplete.
  absl::StatusOr<std::map<std::string, TensorBlob>> Finish() &&;
  // Data bytes taken so far (what a task reports as fetched_bytes).
  int64_t bytes() const { return in_.bytes(); }

 private:
  ChunkAssembler in_;
  std::map<std::string, TensorBlob> whole_;
};

}  // namespace nas
