#include "worker/tensor_blob.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the tensor wire format is little-endian; add byte swapping for this host");

namespace nas {

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

namespace {

// What ToWire and ForEachChunk share: the checks, and the blob without its data (name, shape,
// dtype) next to the tensor as contiguous CPU memory in logical row-major order.
struct WireView {
  TensorBlob header;
  torch::Tensor contiguous;
  absl::string_view data() const {
    return absl::string_view(static_cast<const char*>(contiguous.data_ptr()),
                             static_cast<size_t>(contiguous.numel()) * contiguous.element_size());
  }
};

absl::StatusOr<WireView> ViewForWire(const std::string& name, const torch::Tensor& t) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(name, ": undefined tensor"));
  absl::StatusOr<std::string> dtype = DtypeName(t.scalar_type());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", dtype.status().message()));
  }
  WireView v;
  v.contiguous = t.detach().to(torch::kCPU).contiguous();
  v.header.set_name(name);
  for (int64_t d : v.contiguous.sizes()) v.header.add_shape(d);
  v.header.set_dtype(*std::move(dtype));
  return v;
}

}  // namespace

absl::StatusOr<TensorBlob> ToWire(const std::string& name, const torch::Tensor& t) {
  absl::StatusOr<WireView> v = ViewForWire(name, t);
  if (!v.ok()) return v.status();
  TensorBlob w = std::move(v->header);
  absl::string_view data = v->data();
  w.set_data(data.data(), data.size());
  return w;
}

TensorBlob BytesToWire(const std::string& name, std::string bytes) {
  TensorBlob w;
  w.set_name(name);
  w.add_shape(static_cast<int64_t>(bytes.size()));
  w.set_dtype("bytes");
  w.set_data(std::move(bytes));
  return w;
}

absl::StatusOr<torch::Tensor> FromWire(const TensorBlob& w) {
  c10::ScalarType type;
  if (w.dtype() == "float32") {
    type = c10::ScalarType::Float;
  } else if (w.dtype() == "int64") {
    type = c10::ScalarType::Long;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(w.name(), ": dtype \"", w.dtype(),
                                                   "\" is not a tensor dtype (float32, int64)"));
  }
  if (absl::Status s = CheckTensorBlob(w, ""); !s.ok()) return s;
  torch::Tensor t = torch::empty(std::vector<int64_t>(w.shape().begin(), w.shape().end()),
                                 torch::TensorOptions().dtype(type));
  if (!w.data().empty()) std::memcpy(t.data_ptr(), w.data().data(), w.data().size());
  return t;
}

absl::StatusOr<bool> ForEachChunk(const std::string& name, const torch::Tensor& t, size_t max_chunk,
                                  const std::function<bool(TensorBlob&&)>& emit) {
  absl::StatusOr<WireView> v = ViewForWire(name, t);
  if (!v.ok()) return v.status();
  return SplitIntoChunks(v->header, v->data(), max_chunk, emit);
}

}  // namespace nas
