// The tensor chunk decoder (proto/tensor_codec.h): the input is a TensorBlobs message whose
// blobs are fed, in order, to a ChunkAssembler with small limits. Every tensor it yields must
// pass CheckTensorBlob, and split again and reassembled must come back the same.
#include "proto/tensor_codec.h"

#include "fuzz/fuzz_input.h"
#include "nas/worker.pb.h"

namespace {

nas::ChunkAssemblerOptions SmallLimits() {
  nas::ChunkAssemblerOptions o;
  o.tensor.max_bytes = 1 << 16;
  o.tensor.max_name_bytes = 64;
  o.max_total_bytes = 1 << 18;
  o.max_tensors = 64;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nas::TensorBlobs in;
  if (!in.ParseFromArray(data, static_cast<int>(size))) return 0;
  nas::ChunkAssembler assembler(SmallLimits());
  for (nas::TensorBlob& chunk : *in.mutable_blobs()) {
    (void)nas::CheckTensorBlob(chunk, "fuzz", SmallLimits().tensor);
    absl::StatusOr<std::optional<nas::TensorBlob>> whole = assembler.Add(std::move(chunk));
    if (!whole.ok()) break;
    if (!whole->has_value()) continue;
    const nas::TensorBlob& t = **whole;
    nas::fuzz::Require(nas::CheckTensorBlob(t, "fuzz", SmallLimits().tensor).ok(),
                       "an assembled tensor passes CheckTensorBlob");
    nas::ChunkAssembler again(SmallLimits());
    std::optional<nas::TensorBlob> back;
    bool split = nas::SplitIntoChunks(t, 7, [&](nas::TensorBlob&& c) {
      absl::StatusOr<std::optional<nas::TensorBlob>> r = again.Add(std::move(c));
      nas::fuzz::Require(r.ok(), "the chunks of a whole tensor reassemble");
      if (r->has_value()) back = **std::move(r);
      return true;
    });
    nas::fuzz::Require(split && back.has_value() && again.Finish().ok(),
                       "a split tensor comes back whole");
    nas::fuzz::Require(back->name() == t.name() && back->data() == t.data() &&
                           back->dtype() == t.dtype() && back->version() == t.version(),
                       "a split tensor comes back the same");
  }
  (void)assembler.Finish();
  return 0;
}
