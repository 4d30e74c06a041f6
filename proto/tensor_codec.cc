#include "proto/tensor_codec.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace nas {

namespace {

std::string Shape(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// What error messages show of a name from outside: at most 64 bytes.
std::string NameForMessage(const std::string& name) {
  if (name.size() <= 64) return name;
  return absl::StrCat(name.substr(0, 64), "...");
}

std::string Prefix(const std::string& where, const std::string& name) {
  if (where.empty()) return absl::StrCat("tensor '", NameForMessage(name), "'");
  return absl::StrCat(where, " '", NameForMessage(name), "'");
}

}  // namespace

int TensorElementSize(absl::string_view dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "int64") return 8;
  if (dtype == "bytes") return 1;
  return 0;
}

absl::StatusOr<int64_t> TensorByteSize(const google::protobuf::RepeatedField<int64_t>& shape,
                                       absl::string_view dtype, const TensorLimits& limits) {
  int es = TensorElementSize(dtype);
  if (es == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype '", dtype.substr(0, 32), "' is not float32, int64 or bytes"));
  }
  if (shape.size() > limits.max_rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(shape.size(), " dimensions, at most ", limits.max_rank));
  }
  // Every factor is at most max_bytes (< 2^62 in practice), and the product is checked
  // against max_bytes before each multiplication, so nothing overflows.
  int64_t bytes = es;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative dimension in shape ", Shape(shape)));
    }
    if (d > limits.max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("dimension ", d, " of shape ", Shape(shape),
                                                     " is above the limit of ", limits.max_bytes));
    }
    if (d != 0 && bytes > limits.max_bytes / d) {
      return absl::InvalidArgumentError(absl::StrCat("shape ", Shape(shape), " of ", dtype,
                                                     " is more than the limit of ",
                                                     limits.max_bytes, " bytes"));
    }
    bytes *= d;
  }
  if (bytes > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("shape ", Shape(shape), " of ", dtype,
                                                   " is more than the limit of ", limits.max_bytes,
                                                   " bytes"));
  }
  return bytes;
}

absl::Status CheckTensorBlob(const TensorBlob& b, const std::string& where,
                             const TensorLimits& limits) {
  if (b.name().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where.empty() ? "tensor" : where, ": empty name"));
  }
  if (b.name().size() > limits.max_name_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(where, b.name()), ": name of ",
                                                   b.name().size(), " bytes, at most ",
                                                   limits.max_name_bytes));
  }
  absl::StatusOr<int64_t> size = TensorByteSize(b.shape(), b.dtype(), limits);
  if (!size.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(where, b.name()), ": ", size.status().message()));
  }
  if (b.data().size() != static_cast<uint64_t>(*size)) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(where, b.name()), ": ", b.data().size(),
                                                   " bytes for shape ", Shape(b.shape()), " of ",
                                                   b.dtype(), " (", *size, " expected)"));
  }
  return absl::OkStatus();
}

bool SplitIntoChunks(const TensorBlob& t, size_t chunk_bytes,
                     const std::function<bool(TensorBlob&&)>& emit) {
  return SplitIntoChunks(t, t.data(), chunk_bytes, emit);
}

bool SplitIntoChunks(const TensorBlob& t, absl::string_view data, size_t chunk_bytes,
                     const std::function<bool(TensorBlob&&)>& emit) {
  if (chunk_bytes == 0) chunk_bytes = kDefaultChunkBytes;
  size_t total = data.size();
  size_t off = 0;
  do {
    size_t n = std::min(chunk_bytes, total - off);
    TensorBlob c;
    c.set_name(t.name());
    *c.mutable_shape() = t.shape();
    c.set_dtype(t.dtype());
    c.set_version(t.version());
    c.set_offset(off);
    c.set_total_bytes(total);
    c.mutable_data()->assign(data.data() + off, n);
    if (!emit(std::move(c))) return false;
    off += n;
  } while (off < total);
  return true;
}

ChunkAssembler::ChunkAssembler(ChunkAssemblerOptions options) : options_(std::move(options)) {}

absl::Status ChunkAssembler::Fail(absl::Status s) {
  error_ = s;
  return s;
}

absl::StatusOr<std::optional<TensorBlob>> ChunkAssembler::Add(TensorBlob&& chunk) {
  if (!error_.ok()) return error_;
  const std::string tensor = Prefix("", chunk.name());
  const uint64_t size = chunk.data().size();
  if (options_.max_total_bytes - bytes_ <
      static_cast<int64_t>(std::min<uint64_t>(size, std::numeric_limits<int64_t>::max()))) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        tensor, ": the stream is more than the limit of ", options_.max_total_bytes, " bytes")));
  }

  if (in_progress_) {
    // The continuation of partial_.
    if (chunk.name() != partial_.name()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          Prefix("", partial_.name()), ": incomplete, ", partial_.data().size(), " of ",
          partial_.total_bytes(), " bytes arrived, when a chunk of ", tensor, " came")));
    }
    if (chunk.dtype() != partial_.dtype() || chunk.total_bytes() != partial_.total_bytes() ||
        chunk.shape().size() != partial_.shape().size() ||
        !std::equal(chunk.shape().begin(), chunk.shape().end(), partial_.shape().begin())) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(tensor, ": chunks disagree on shape, dtype or total_bytes")));
    }
    if (chunk.offset() != partial_.data().size()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          tensor, ": chunk at offset ", chunk.offset(), ", expected ", partial_.data().size(),
          chunk.offset() < partial_.data().size() ? " (overlap)" : " (gap)")));
    }
    if (size > partial_.total_bytes() - partial_.data().size()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(tensor, ": chunk of ", size, " bytes at offset ", chunk.offset(),
                       " overruns total_bytes ", partial_.total_bytes())));
    }
    bytes_ += static_cast<int64_t>(size);
    partial_.mutable_data()->append(chunk.data());
    if (partial_.data().size() < partial_.total_bytes()) return std::optional<TensorBlob>();
    in_progress_ = false;
    TensorBlob whole = std::move(partial_);
    partial_.Clear();
    return std::optional<TensorBlob>(std::move(whole));
  }

  // The first chunk of a tensor.
  if (tensors_ >= options_.max_tensors) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        tensor, ": the stream has more than the limit of ", options_.max_tensors, " tensors")));
  }
  if (chunk.offset() != 0) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(tensor, ": first chunk at offset ", chunk.offset(), ", expected 0")));
  }
  uint64_t total = chunk.total_bytes();
  if (total == 0) total = size;  // unchunked
  // The declared size must be the shape's: the checks of CheckTensorBlob, on total_bytes
  // instead of data.size().
  if (chunk.name().empty()) return Fail(absl::InvalidArgumentError("tensor chunk without a name"));
  if (chunk.name().size() > options_.tensor.max_name_bytes) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(tensor, ": name of ", chunk.name().size(),
                                                        " bytes, at most ",
                                                        options_.tensor.max_name_bytes)));
  }
  absl::StatusOr<int64_t> expected = TensorByteSize(chunk.shape(), chunk.dtype(), options_.tensor);
  if (!expected.ok()) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat(tensor, ": ", expected.status().message())));
  }
  if (total != static_cast<uint64_t>(*expected)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(tensor, ": total_bytes ", total,
                                                        " but shape ", Shape(chunk.shape()), " of ",
                                                        chunk.dtype(), " needs ", *expected)));
  }
  if (size > total) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(tensor, ": chunk of ", size, " bytes overruns total_bytes ", total)));
  }
  if (total > static_cast<uint64_t>(options_.max_total_bytes - bytes_)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(tensor, ": ", total,
                                                        " bytes would take the stream past the "
                                                        "limit of ",
                                                        options_.max_total_bytes, " bytes")));
  }
  if (!names_.insert(chunk.name()).second) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(tensor, ": sent twice")));
  }
  ++tensors_;
  bytes_ += static_cast<int64_t>(size);
  chunk.set_offset(0);
  chunk.set_total_bytes(total);
  if (size == total) return std::optional<TensorBlob>(std::move(chunk));
  partial_ = std::move(chunk);
  // What the first chunks suggest, not what the sender declares: a declared 4 GiB followed by
  // nothing must not allocate 4 GiB.
  partial_.mutable_data()->reserve(std::min<uint64_t>(total, std::max<uint64_t>(size, 1) * 64));
  in_progress_ = true;
  return std::optional<TensorBlob>();
}

absl::Status ChunkAssembler::Finish() {
  if (!error_.ok()) return error_;
  if (in_progress_) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(Prefix("", partial_.name()), ": incomplete, ", partial_.data().size(), " of ",
                     partial_.total_bytes(), " bytes arrived")));
  }
  names_.clear();
  return absl::OkStatus();
}

}  // namespace nas
