// Tensors as nas.TensorBlob messages, without LibTorch: the checks of a whole tensor, the split
// of one into chunks and the reassembly of a stream of chunks, for every place that sends or
// receives tensors (the coordinator's FetchTensors and CompleteTask, the workers, the
// checkpoint store's readers).
//
// Wire format (proto/nas/common.proto): `data` holds the elements in row-major order,
// little-endian; dtype is "float32" (4 bytes), "int64" (8) or "bytes" (1: an opaque byte string
// of shape [n]). A tensor larger than one message travels as consecutive blobs with the same
// name, shape and dtype, offsets 0, c, 2c, ... and the same total_bytes; an unchunked blob has
// offset 0 and total_bytes equal to its size (or 0).
//
//   SplitIntoChunks(blob, kDefaultChunkBytes, [&](TensorBlob&& c) { return writer->Write(c); });
//   ...
//   ChunkAssembler in(ChunkAssemblerOptions{.max_total_bytes = int64_t{1} << 30});
//   while (reader->Read(&chunk)) {
//     NAS_ASSIGN_OR_RETURN(std::optional<TensorBlob> whole, in.Add(std::move(chunk)));
//     if (whole) tensors.push_back(*std::move(whole));
//   }
//   NAS_RETURN_IF_ERROR(in.Finish());  // no tensor left incomplete
//
// Every error is InvalidArgument and names the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nas/common.pb.h"

namespace nas {

// Largest `data` of one chunk that the senders use: 1 MiB.
inline constexpr size_t kDefaultChunkBytes = size_t{1} << 20;

// Bounds on one tensor from outside.
struct TensorLimits {
  // Longest name, bytes. Default 1024.
  size_t max_name_bytes = 1024;
  // Most dimensions. Default 8.
  int max_rank = 8;
  // Largest tensor (numel * element size), bytes; also bounds every single dimension, so that
  // a shape with a zero dimension cannot carry absurd others. Default 4 GiB.
  int64_t max_bytes = int64_t{4} << 30;
};

// Bytes per element of a wire dtype: float32 4, int64 8, bytes 1; 0 for any other name.
int TensorElementSize(absl::string_view dtype);

// numel * element size of a shape and dtype, computed without overflow. InvalidArgument (not
// naming a tensor: callers prefix it) on an unknown dtype, more than max_rank dimensions, a
// negative dimension, or a size (or a dimension) above max_bytes.
absl::StatusOr<int64_t> TensorByteSize(const google::protobuf::RepeatedField<int64_t>& shape,
                                       absl::string_view dtype, const TensorLimits& limits = {});

// Checks a whole tensor: a non-empty name of at most max_name_bytes, a known dtype, a shape
// TensorByteSize accepts, and data.size() equal to that size. InvalidArgument
// "<where> '<name>': <what>" otherwise. Offset, total_bytes and version are not looked at.
absl::Status CheckTensorBlob(const TensorBlob& b, const std::string& where,
                             const TensorLimits& limits = {});

// Calls `emit` with consecutive chunks of `t` (name, shape, dtype and version copied; offset;
// total_bytes = t.data().size(); at most chunk_bytes of data each, kDefaultChunkBytes when
// chunk_bytes is 0). An empty tensor is one empty chunk. Returns false as soon as `emit` does
// (the remaining chunks are not made), true when every chunk was emitted. Checks nothing.
bool SplitIntoChunks(const TensorBlob& t, size_t chunk_bytes,
                     const std::function<bool(TensorBlob&&)>& emit);
// The same chunks for a tensor whose bytes lie elsewhere (e.g. a LibTorch tensor's memory,
// copied from there straight into the chunks): name, shape, dtype and version from `header`
// (its data is not looked at), the bytes from `data`.
bool SplitIntoChunks(const TensorBlob& header, absl::string_view data, size_t chunk_bytes,
                     const std::function<bool(TensorBlob&&)>& emit);

struct ChunkAssemblerOptions {
  // Bounds on each tensor; the first chunk's shape and dtype must give its total_bytes. The
  // defaults of TensorLimits.
  TensorLimits tensor;
  // Most data bytes over the assembler's life (the whole stream). Default 8 GiB.
  int64_t max_total_bytes = int64_t{8} << 30;
  // Most tensors (whole or begun) over the assembler's life. Default 100,000.
  int64_t max_tensors = 100000;
};

// Reassembles a stream of chunks into whole tensors. Chunks come in order: every chunk of a
// tensor before the first chunk of the next one, each at offset == bytes received so far, with
// the first chunk's shape, dtype and total_bytes. A tensor's first chunk (offset 0) declares
// its size: total_bytes (or, when 0, the chunk's size) must equal numel * element size within
// the limits, so oversized data is refused before it is buffered. Within a group (see Finish)
// a name may not come twice.
//
// Errors (InvalidArgument naming the tensor): a chunk of another tensor while one is
// incomplete, a first chunk at a non-zero offset, a gap or an overlap (offset != bytes so far),
// a chunk past total_bytes, a change of shape, dtype or total_bytes between chunks, a name sent
// twice, a tensor CheckTensorBlob refuses, the stream's byte or tensor bound. After an error the
// stream is broken: every later call returns the same error.
//
// Not thread-safe.
class ChunkAssembler {
 public:
  explicit ChunkAssembler(ChunkAssemblerOptions options = {});

  // Takes the next chunk. Returns the whole tensor (offset 0, total_bytes = size, the first
  // chunk's version) when this chunk completes one, nullopt when the tensor is still
  // incomplete. An unchunked blob comes straight back (moved, not copied).
  absl::StatusOr<std::optional<TensorBlob>> Add(TensorBlob&& chunk);

  // Ends a group of tensors (e.g. one task's results): InvalidArgument naming the tensor when
  // one is incomplete ("'w': incomplete, 10 of 16 bytes arrived"). Afterwards names may repeat.
  absl::Status Finish();

  // Data bytes and tensors (whole or begun) taken so far.
  int64_t bytes() const { return bytes_; }
  int64_t tensors() const { return tensors_; }
  // Whether a tensor is incomplete.
  bool in_progress() const { return in_progress_; }

 private:
  absl::Status Fail(absl::Status s);

  ChunkAssemblerOptions options_;
  absl::Status error_;
  // The incomplete tensor (data so far, total in total_bytes) when in_progress_.
  bool in_progress_ = false;
  TensorBlob partial_;
  // Names of the current group.
  absl::flat_hash_set<std::string> names_;
  int64_t bytes_ = 0;
  int64_t tensors_ = 0;
};

}  // namespace nas
