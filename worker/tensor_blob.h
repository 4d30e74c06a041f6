// LibTorch tensors on the wire (nas.TensorBlob): a tensor <-> its logical row-major bytes, and
// its chunks made straight from its memory. The wire format, the checks, the chunking and the
// reassembly are the codec's (proto/tensor_codec.h; a worker's reassembly of one task's
// tensors: task_tensors.h); this file is only what needs LibTorch.
//
// `data` holds the tensor's elements in logical row-major order (whatever the module's memory
// format, e.g. channels-last), little-endian (this host's order; every supported host is
// little-endian).
//
//   NAS_ASSIGN_OR_RETURN(bool all_sent, ForEachChunk("stem.conv.weight", param,
//                                                   kDefaultChunkBytes, [&](TensorBlob&& b) {
//                                                     return writer->Write(...);
//                                                   }));
//   ...
//   NAS_ASSIGN_OR_RETURN(torch::Tensor t, FromWire(tensors["stem.conv.weight"]));
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "nas/common.pb.h"
#include "proto/tensor_codec.h"

namespace nas {

// Wire name of a LibTorch dtype (float32, int64); InvalidArgument for others.
absl::StatusOr<std::string> DtypeName(c10::ScalarType type);

// The tensor as one whole blob (version 0): its elements in logical row-major order (copied to
// the CPU, layout made contiguous).
absl::StatusOr<TensorBlob> ToWire(const std::string& name, const torch::Tensor& t);
// An opaque byte string as a "bytes" blob of shape [n].
TensorBlob BytesToWire(const std::string& name, std::string bytes);
// A new contiguous CPU tensor with the blob's shape, dtype and values. InvalidArgument naming
// the tensor when the dtype is "bytes" or unknown, or CheckTensorBlob refuses the blob.
absl::StatusOr<torch::Tensor> FromWire(const TensorBlob& w);

// The chunks of SplitIntoChunks(*ToWire(name, t), max_chunk, emit), copied from the tensor's
// bytes straight into the messages (no whole-tensor copy in between). The errors of ToWire;
// otherwise whether every chunk was emitted.
absl::StatusOr<bool> ForEachChunk(const std::string& name, const torch::Tensor& t, size_t max_chunk,
                                  const std::function<bool(TensorBlob&&)>& emit);

}  // namespace nas
