#include "worker/tensor_blob.h"

#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the tensor wire format is little-endian; add byte swapping for this host");

namespace nas {

namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<int64_t> DtypeElementSize(const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "int64") return 8;
  if (dtype == "bytes") return 1;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype \"", dtype, "\" is not float32, int64 or bytes"));
}

absl::StatusOr<std::string> DtypeName(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float:
      return std::string("float32");
    case c10::ScalarType::Long:
      return std::string("int64");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", c10::toString(type), " has no wire name (float32, int64)"));
  }
}

absl::StatusOr<int64_t> ExpectedBytes(const std::vector<int64_t>& shape, const std::string& dtype) {
  absl::StatusOr<int64_t> element = DtypeElementSize(dtype);
  if (!element.ok()) return element.status();
  int64_t n = *element;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", ShapeString(shape), " has a negative dimension"));
    }
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", ShapeString(shape), " is too large"));
    }
    n *= d;
  }
  return n;
}

namespace {

// What ToWire and the tensor overload of ForEachChunk share: the checks, the wire dtype and the
// tensor as contiguous CPU memory in logical row-major order.
struct WireView {
  std::string dtype;
  torch::Tensor contiguous;
  size_t bytes = 0;
};

absl::StatusOr<WireView> ViewForWire(const std::string& name, const torch::Tensor& t) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(name, ": undefined tensor"));
  absl::StatusOr<std::string> dtype = DtypeName(t.scalar_type());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", dtype.status().message()));
  }
  WireView v;
  v.dtype = *std::move(dtype);
  v.contiguous = t.detach().to(torch::kCPU).contiguous();
  v.bytes = static_cast<size_t>(v.contiguous.numel()) * v.contiguous.element_size();
  return v;
}

// Chunks of `size` bytes at `data` as ForEachChunk documents them.
bool EmitChunks(const std::string& name, c10::IntArrayRef shape, const std::string& dtype,
                const char* data, size_t size, size_t max_chunk,
                const std::function<bool(TensorBlob&&)>& emit) {
  if (max_chunk == 0) max_chunk = kMaxChunkBytes;
  size_t offset = 0;
  do {
    size_t n = std::min(max_chunk, size - offset);
    TensorBlob b;
    b.set_name(name);
    for (int64_t d : shape) b.add_shape(d);
    b.set_dtype(dtype);
    b.set_version(0);
    b.set_offset(offset);
    b.set_total_bytes(size);
    b.set_data(data + offset, n);
    if (!emit(std::move(b))) return false;
    offset += n;
  } while (offset < size);
  return true;
}

}  // namespace

absl::StatusOr<WireTensor> ToWire(const std::string& name, const torch::Tensor& t) {
  absl::StatusOr<WireView> v = ViewForWire(name, t);
  if (!v.ok()) return v.status();
  WireTensor w;
  w.name = name;
  w.shape = v->contiguous.sizes().vec();
  w.dtype = std::move(v->dtype);
  w.data.assign(static_cast<const char*>(v->contiguous.data_ptr()), v->bytes);
  return w;
}

WireTensor BytesToWire(const std::string& name, std::string bytes) {
  WireTensor w;
  w.name = name;
  w.shape = {static_cast<int64_t>(bytes.size())};
  w.dtype = "bytes";
  w.data = std::move(bytes);
  return w;
}

absl::StatusOr<torch::Tensor> FromWire(const WireTensor& w) {
  c10::ScalarType type;
  if (w.dtype == "float32") {
    type = c10::ScalarType::Float;
  } else if (w.dtype == "int64") {
    type = c10::ScalarType::Long;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(w.name, ": dtype \"", w.dtype, "\" is not a tensor dtype (float32, int64)"));
  }
  absl::StatusOr<int64_t> expected = ExpectedBytes(w.shape, w.dtype);
  if (!expected.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(w.name, ": ", expected.status().message()));
  }
  if (static_cast<int64_t>(w.data.size()) != *expected) {
    return absl::InvalidArgumentError(absl::StrCat(w.name, ": ", w.data.size(), " bytes but shape ",
                                                   ShapeString(w.shape), " of ", w.dtype, " needs ",
                                                   *expected));
  }
  torch::Tensor t = torch::empty(w.shape, torch::TensorOptions().dtype(type));
  if (!w.data.empty()) std::memcpy(t.data_ptr(), w.data.data(), w.data.size());
  return t;
}

bool ForEachChunk(const WireTensor& w, size_t max_chunk,
                  const std::function<bool(TensorBlob&&)>& emit) {
  return EmitChunks(w.name, w.shape, w.dtype, w.data.data(), w.data.size(), max_chunk, emit);
}

absl::StatusOr<bool> ForEachChunk(const std::string& name, const torch::Tensor& t, size_t max_chunk,
                                  const std::function<bool(TensorBlob&&)>& emit) {
  absl::StatusOr<WireView> v = ViewForWire(name, t);
  if (!v.ok()) return v.status();
  return EmitChunks(name, v->contiguous.sizes(), v->dtype,
                    static_cast<const char*>(v->contiguous.data_ptr()), v->bytes, max_chunk, emit);
}

absl::Status BlobAssembler::Add(TensorBlob&& chunk) {
  const std::string& name = chunk.name();
  if (name.empty()) return absl::InvalidArgumentError("tensor chunk without a name");
  std::vector<int64_t> shape(chunk.shape().begin(), chunk.shape().end());
  uint64_t total = chunk.total_bytes();
  if (total == 0 && chunk.offset() == 0) total = chunk.data().size();  // unchunked
  auto it = partial_.find(name);
  if (it == partial_.end()) {
    if (chunk.offset() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": first chunk at offset ", chunk.offset(), ", expected 0"));
    }
    Partial p;
    p.tensor.name = name;
    p.tensor.shape = std::move(shape);
    p.tensor.dtype = chunk.dtype();
    p.total = total;
    absl::StatusOr<int64_t> expected = ExpectedBytes(p.tensor.shape, p.tensor.dtype);
    if (!expected.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", expected.status().message()));
    }
    if (static_cast<uint64_t>(*expected) != p.total) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": total_bytes ", p.total, " but shape ",
                                                     ShapeString(p.tensor.shape), " of ",
                                                     p.tensor.dtype, " needs ", *expected));
    }
    p.tensor.data.reserve(p.total);
    it = partial_.emplace(name, std::move(p)).first;
  } else {
    Partial& p = it->second;
    if (p.tensor.data.size() == p.total) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": chunk after the tensor was complete (sent twice?)"));
    }
    if (shape != p.tensor.shape || chunk.dtype() != p.tensor.dtype ||
        chunk.total_bytes() != p.total) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": chunks disagree on shape, dtype or total_bytes"));
    }
    if (chunk.offset() != p.tensor.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": chunk at offset ", chunk.offset(),
                                                     ", expected ", p.tensor.data.size()));
    }
  }
  Partial& p = it->second;
  if (chunk.data().size() > p.total - p.tensor.data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": chunk [", chunk.offset(), ", ",
                                                   chunk.offset() + chunk.data().size(),
                                                   ") overruns total_bytes ", p.total));
  }
  bytes_ += static_cast<int64_t>(chunk.data().size());
  if (p.tensor.data.empty() && chunk.data().size() == p.total) {
    p.tensor.data = std::move(*chunk.mutable_data());
  } else {
    p.tensor.data.append(chunk.data());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, WireTensor>> BlobAssembler::Finish() && {
  std::map<std::string, WireTensor> out;
  for (auto& [name, p] : partial_) {
    if (p.tensor.data.size() != p.total) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": incomplete, ", p.tensor.data.size(),
                                                     " of ", p.total, " bytes received"));
    }
    out.emplace(name, std::move(p.tensor));
  }
  partial_.clear();
  return out;
}

}  // namespace nas
