// Tensors on the wire (nas.TensorBlob): LibTorch tensor <-> logical row-major bytes, chunking
// into messages of at most 1 MiB, and reassembly of a chunked stream with size checks. What the
// remote worker (remote_worker.cc) uses on both directions of its gRPC calls.
//
// Wire format: `data` holds the tensor's elements in logical row-major order (whatever the
// module's memory format, e.g. channels-last), little-endian (this host's order; every supported
// host is little-endian). dtype is "float32", "int64" or "bytes" (an opaque byte string of
// shape [n], e.g. a serialised module). A tensor larger than one message travels as consecutive
// blobs with the same name, offsets 0, c, 2c, ... and the same total_bytes.
//
//   NAS_ASSIGN_OR_RETURN(bool all_sent, ForEachChunk("stem.conv.weight", param, kMaxChunkBytes,
//                                                   [&](TensorBlob&& b) { return
//                                                   writer->Write(...); }));
//   ...
//   BlobAssembler in;
//   while (reader->Read(&blob)) NAS_RETURN_IF_ERROR(in.Add(std::move(blob)));
//   NAS_ASSIGN_OR_RETURN(auto tensors, std::move(in).Finish());
//   NAS_ASSIGN_OR_RETURN(torch::Tensor t, FromWire(tensors["stem.conv.weight"]));
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nas/common.pb.h"

namespace nas {

// Largest `data` of one TensorBlob message.
inline constexpr size_t kMaxChunkBytes = size_t{1} << 20;

// One whole tensor as it travels: name, shape, dtype name, and its bytes.
struct WireTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;  // "float32", "int64", "bytes"
  std::string data;
};

// Bytes per element of a wire dtype ("bytes" -> 1); InvalidArgument for any other name.
absl::StatusOr<int64_t> DtypeElementSize(const std::string& dtype);
// Wire name of a LibTorch dtype (float32, int64); InvalidArgument for others.
absl::StatusOr<std::string> DtypeName(c10::ScalarType type);
// numel * element size of a shape and dtype; InvalidArgument on a negative dimension or
// an unknown dtype.
absl::StatusOr<int64_t> ExpectedBytes(const std::vector<int64_t>& shape, const std::string& dtype);

// The tensor's elements in logical row-major order (copied to the CPU, layout made contiguous).
absl::StatusOr<WireTensor> ToWire(const std::string& name, const torch::Tensor& t);
// An opaque byte string as a "bytes" tensor of shape [n].
WireTensor BytesToWire(const std::string& name, std::string bytes);
// A new contiguous CPU tensor with the wire tensor's shape, dtype and values. InvalidArgument
// when the dtype is "bytes" or unknown, or data.size() != numel * element size.
absl::StatusOr<torch::Tensor> FromWire(const WireTensor& w);

// Calls `emit` with consecutive chunks of `w` (each with name, shape, dtype, version 0, offset,
// total_bytes and at most max_chunk bytes of data); an empty tensor is one empty chunk. Stops
// early and returns false when `emit` returns false.
bool ForEachChunk(const WireTensor& w, size_t max_chunk,
                  const std::function<bool(TensorBlob&&)>& emit);
// The same chunks as ForEachChunk(ToWire(name, t), ...), copied from the tensor's bytes straight
// into the messages (no whole-tensor copy in between). The errors of ToWire; otherwise whether
// every chunk was emitted.
absl::StatusOr<bool> ForEachChunk(const std::string& name, const torch::Tensor& t, size_t max_chunk,
                                  const std::function<bool(TensorBlob&&)>& emit);

// Reassembles a stream of chunks by name. Chunks of one tensor must arrive in order (offset ==
// bytes received so far) with the same shape, dtype and total_bytes; an unchunked blob may leave
// total_bytes 0. Errors (InvalidArgument) name the tensor. Not thread-safe.
class BlobAssembler {
 public:
  absl::Status Add(TensorBlob&& chunk);
  // Every tensor received, whole, with size == numel * element size. InvalidArgument names the
  // first incomplete or mis-sized tensor.
  absl::StatusOr<std::map<std::string, WireTensor>> Finish() &&;
  // Data bytes received so far.
  int64_t bytes() const { return bytes_; }

 private:
  struct Partial {
    WireTensor tensor;
    uint64_t total = 0;
  };
  std::map<std::string, Partial> partial_;
  int64_t bytes_ = 0;
};

}  // namespace nas
