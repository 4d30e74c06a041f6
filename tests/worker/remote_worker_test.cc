// The remote worker's pure helpers: LibTorch tensors <-> wire blobs (worker/tensor_blob.h), the
// reassembly of a task's tensors (worker/task_tensors.h) over the codec, and the size checks
// that reject malformed streams.
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/tensor_codec.h"
#include "tests/test_util.h"
#include "worker/remote_worker.h"
#include "worker/task_tensors.h"
#include "worker/tensor_blob.h"

namespace nas {
namespace {

std::vector<TensorBlob> Chunks(const TensorBlob& w, size_t max_chunk) {
  std::vector<TensorBlob> out;
  SplitIntoChunks(w, max_chunk, [&](TensorBlob&& b) {
    out.push_back(std::move(b));
    return true;
  });
  return out;
}

// The worker's reassembly of a task listing `listed` tensors.
absl::StatusOr<std::map<std::string, TensorBlob>> Assemble(std::vector<TensorBlob> chunks,
                                                           int64_t listed = 100) {
  TaskTensorAssembler in(listed);
  int64_t sent = 0;
  for (TensorBlob& b : chunks) {
    int64_t size = static_cast<int64_t>(b.data().size());
    absl::Status s = in.Add(std::move(b));
    if (!s.ok()) return s;
    sent += size;
  }
  EXPECT_EQ(in.bytes(), sent);  // what a task reports as fetched_bytes
  return std::move(in).Finish();
}

TensorBlob Blob(const std::string& name, std::vector<int64_t> shape, const std::string& dtype,
                std::string data) {
  TensorBlob b;
  b.set_name(name);
  for (int64_t d : shape) b.add_shape(d);
  b.set_dtype(dtype);
  b.set_data(std::move(data));
  return b;
}

std::vector<int64_t> Shape(const TensorBlob& b) {
  return std::vector<int64_t>(b.shape().begin(), b.shape().end());
}

// Chunking a tensor directly gives the chunks of its wire form, whatever its layout and size.
TEST(TensorBlobTest, TensorChunksEqualThoseOfItsWireForm) {
  torch::Tensor cl = torch::arange(2 * 3 * 4 * 5, torch::kFloat32)
                         .reshape({2, 3, 4, 5})
                         .contiguous(torch::MemoryFormat::ChannelsLast);
  for (size_t max_chunk : {size_t{0}, size_t{100}, size_t{480}, size_t{7}}) {
    absl::StatusOr<TensorBlob> w = ToWire("edge0_1.bn.weight", cl);
    ASSERT_TRUE(w.ok()) << w.status();
    std::vector<TensorBlob> expected = Chunks(*w, max_chunk);
    std::vector<TensorBlob> direct;
    absl::StatusOr<bool> all =
        ForEachChunk("edge0_1.bn.weight", cl, max_chunk, [&](TensorBlob&& b) {
          direct.push_back(std::move(b));
          return true;
        });
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_TRUE(*all);
    ASSERT_EQ(direct.size(), expected.size()) << max_chunk;
    for (size_t i = 0; i < direct.size(); ++i) {
      EXPECT_EQ(direct[i].SerializeAsString(), expected[i].SerializeAsString()) << i;
    }
  }
  // A stop after the first chunk; an empty tensor is one empty chunk.
  int calls = 0;
  absl::StatusOr<bool> stopped =
      ForEachChunk("t", cl, 100, [&](TensorBlob&&) { return ++calls > 1; });
  ASSERT_TRUE(stopped.ok());
  EXPECT_FALSE(*stopped);
  EXPECT_EQ(calls, 1);
  std::vector<TensorBlob> empty;
  ASSERT_TRUE(ForEachChunk("e", torch::zeros({0}), 100, [&](TensorBlob&& b) {
                empty.push_back(std::move(b));
                return true;
              }).ok());
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(empty[0].total_bytes(), 0u);
  // The errors of ToWire, naming the tensor.
  auto none = [](TensorBlob&&) { return true; };
  EXPECT_TRUE(IsError(ForEachChunk("u", torch::Tensor(), 100, none).status(),
                      absl::StatusCode::kInvalidArgument, {"u", "undefined"}));
  EXPECT_TRUE(IsError(ForEachChunk("h", torch::zeros({2}, torch::kFloat16), 100, none).status(),
                      absl::StatusCode::kInvalidArgument, {"h"}));
}

TEST(TensorBlobTest, ChannelsLastTensorTravelsInLogicalRowMajorOrder) {
  torch::Tensor t = torch::arange(2 * 3 * 4 * 5, torch::kFloat32).reshape({2, 3, 4, 5});
  torch::Tensor cl = t.contiguous(torch::MemoryFormat::ChannelsLast);
  ASSERT_FALSE(cl.is_contiguous());
  absl::StatusOr<TensorBlob> w = ToWire("edge0_1.depthwise_conv.weight", cl);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype(), "float32");
  EXPECT_EQ(Shape(*w), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(w->version(), 0u);
  ASSERT_EQ(w->data().size(), 120u * 4);
  EXPECT_TRUE(CheckTensorBlob(*w, "").ok());
  float second;
  std::memcpy(&second, w->data().data() + 4, 4);
  EXPECT_EQ(second, 1.0f);  // row-major: element [0, 0, 0, 1]

  absl::StatusOr<torch::Tensor> back = FromWire(*w);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(*back, t));

  // Copying into a channels-last module tensor keeps its layout and values.
  torch::Tensor dst = torch::zeros_like(cl);
  dst.copy_(*back);
  EXPECT_TRUE(dst.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(dst, t));
}

TEST(TensorBlobTest, Int64AndScalarRoundTrip) {
  torch::Tensor steps = torch::tensor(int64_t{12345678901});  // num_batches_tracked: 0-d int64
  absl::StatusOr<TensorBlob> w = ToWire("stem.bn.num_batches_tracked", steps);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype(), "int64");
  EXPECT_EQ(w->shape_size(), 0);
  EXPECT_EQ(w->data().size(), 8u);
  absl::StatusOr<torch::Tensor> back = FromWire(*w);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dim(), 0);
  EXPECT_EQ(back->item<int64_t>(), 12345678901);
}

TEST(TensorBlobTest, UnsupportedDtypesAreRejected) {
  EXPECT_TRUE(IsError(ToWire("x", torch::zeros({2}, torch::kFloat64)).status(),
                      absl::StatusCode::kInvalidArgument, {"x", "no wire name"}));
  TensorBlob w = Blob("blob", {3}, "bytes", "abc");
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument,
                      {"blob", "not a tensor dtype"}));
  w.set_dtype("float16");
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument, {"float16"}));
}

TEST(TensorBlobTest, WrongByteCountIsRejected) {
  TensorBlob w = Blob("classifier.linear.bias", {10}, "float32", std::string(39, '\0'));
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument,
                      {"classifier.linear.bias", "39 bytes", "40 expected"}));
  w.set_shape(0, -1);
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument, {"negative"}));
}

TEST(TensorBlobTest, ChunksReassembleTensorAfterTensor) {
  torch::Tensor a = torch::randn({1000});  // 4000 bytes: 4 chunks of 1024 (last 928)
  torch::Tensor b = torch::arange(7, torch::kInt64);
  TensorBlob wa = *ToWire("a", a);
  TensorBlob wb = *ToWire("b", b);
  std::vector<TensorBlob> chunks = Chunks(wa, 1024);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[1].offset(), 1024u);
  EXPECT_EQ(chunks[3].data().size(), 928u);
  for (const TensorBlob& c : chunks) {
    EXPECT_EQ(c.total_bytes(), 4000u);
    EXPECT_EQ(c.version(), 0u);
    EXPECT_EQ(c.dtype(), "float32");
  }
  std::vector<TensorBlob> b_chunks = Chunks(wb, 16);
  ASSERT_EQ(b_chunks.size(), 4u);  // 56 bytes in 16-byte chunks
  std::vector<TensorBlob> stream = chunks;
  stream.insert(stream.end(), b_chunks.begin(), b_chunks.end());
  auto got = Assemble(stream, 2);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_TRUE(torch::equal(*FromWire(got->at("a")), a));
  EXPECT_TRUE(torch::equal(*FromWire(got->at("b")), b));
  // Every chunk of a tensor comes before the next tensor (what the coordinator sends).
  std::vector<TensorBlob> interleaved = {chunks[0], b_chunks[0], chunks[1]};
  EXPECT_TRUE(IsError(Assemble(interleaved, 2).status(), absl::StatusCode::kInvalidArgument,
                      {"'a'", "incomplete", "1024 of 4000", "'b'"}));
}

TEST(TensorBlobTest, EmptyTensorIsOneEmptyChunk) {
  TensorBlob w = *ToWire("empty", torch::zeros({0, 3}));
  std::vector<TensorBlob> chunks = Chunks(w, kDefaultChunkBytes);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].total_bytes(), 0u);
  auto got = Assemble(chunks);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(FromWire(got->at("empty"))->sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(TensorBlobTest, OpaqueBytesBlob) {
  std::string bytes(2500, 'x');
  TensorBlob w = BytesToWire("derived.pt", bytes);
  EXPECT_EQ(Shape(w), (std::vector<int64_t>{2500}));
  EXPECT_EQ(w.dtype(), "bytes");
  auto got = Assemble(Chunks(w, 1000));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at("derived.pt").data(), bytes);
}

TEST(TensorBlobTest, UnchunkedBlobMayOmitTotalBytes) {
  auto got = Assemble({Blob("c", {2}, "float32", std::string(8, '\0'))});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at("c").data().size(), 8u);
}

// The codec's rule on the worker's side: a tensor's first chunk declares its size, and that
// size must be its shape's, or the stream is refused (naming the tensor) before it is buffered.
TEST(TaskTensorAssemblerTest, FirstChunkDeclaringAnotherSizeThanItsShapeIsRefused) {
  std::vector<TensorBlob> chunks = Chunks(*ToWire("edge3_1.conv.weight", torch::ones({100})), 128);
  ASSERT_EQ(chunks.size(), 4u);
  chunks[0].set_total_bytes(404);  // shape [100] of float32: 400
  TaskTensorAssembler in(1);
  EXPECT_TRUE(IsError(in.Add(TensorBlob(chunks[0])), absl::StatusCode::kInvalidArgument,
                      {"'edge3_1.conv.weight'", "total_bytes 404", "needs 400"}));
  EXPECT_EQ(in.bytes(), 0);
  // The stream stays broken.
  EXPECT_TRUE(IsError(in.Add(std::move(chunks[1])), absl::StatusCode::kInvalidArgument,
                      {"total_bytes 404"}));
  // Unchunked (total_bytes 0): the data's size is the declared one.
  EXPECT_TRUE(IsError(
      Assemble({Blob("stem.bn.weight", {3}, "float32", std::string(8, '\0'))}).status(),
      absl::StatusCode::kInvalidArgument, {"'stem.bn.weight'", "total_bytes 8", "needs 12"}));
  // A declared size above the limits is refused before anything is buffered.
  TensorBlob huge = Blob("stem.conv.weight", {int64_t{1} << 40}, "float32", std::string(16, '\0'));
  huge.set_total_bytes(uint64_t{4} << 40);
  EXPECT_TRUE(IsError(Assemble({huge}).status(), absl::StatusCode::kInvalidArgument,
                      {"'stem.conv.weight'", "limit"}));
}

// No more tensors than the task lists, no more than kMaxTaskTensorBytes in all.
TEST(TaskTensorAssemblerTest, StreamBoundsAreATasks) {
  TensorBlob a = Blob("a", {2}, "float32", std::string(8, '\0'));
  TensorBlob b = Blob("b", {2}, "float32", std::string(8, '\0'));
  EXPECT_TRUE(Assemble({a, b}, 2).ok());
  EXPECT_TRUE(IsError(Assemble({a, b}, 1).status(), absl::StatusCode::kInvalidArgument,
                      {"'b'", "limit of 1 tensors"}));
  // A declared 4 GiB after 8 bytes would pass the stream's bound: refused, nothing allocated.
  TensorBlob big = Blob("big", {int64_t{1} << 30}, "float32", std::string(16, '\0'));
  big.set_total_bytes(uint64_t{4} << 30);
  ASSERT_EQ(int64_t{4} << 30, kMaxTaskTensorBytes);
  EXPECT_TRUE(IsError(Assemble({a, big}, 2).status(), absl::StatusCode::kInvalidArgument,
                      {"'big'", "past the limit"}));
}

TEST(TensorBlobTest, MalformedStreamsAreRejected) {
  TensorBlob w = *ToWire("w", torch::ones({100}));  // 400 bytes
  std::vector<TensorBlob> chunks = Chunks(w, 128);
  ASSERT_EQ(chunks.size(), 4u);

  // Missing last chunk.
  EXPECT_TRUE(IsError(Assemble({chunks[0], chunks[1], chunks[2]}).status(),
                      absl::StatusCode::kInvalidArgument, {"w", "incomplete", "384 of 400"}));
  // Out of order.
  EXPECT_TRUE(IsError(Assemble({chunks[0], chunks[2]}).status(), absl::StatusCode::kInvalidArgument,
                      {"w", "offset 256", "expected 128"}));
  // Not starting at 0.
  EXPECT_TRUE(IsError(Assemble({chunks[1]}).status(), absl::StatusCode::kInvalidArgument,
                      {"first chunk at offset 128"}));
  // Sent twice.
  EXPECT_TRUE(IsError(Assemble({chunks[0], chunks[1], chunks[2], chunks[3], chunks[0]}).status(),
                      absl::StatusCode::kInvalidArgument, {"w", "sent twice"}));
  // A chunk running past total_bytes.
  TensorBlob last = chunks[3];
  last.mutable_data()->append("xxxx");
  EXPECT_TRUE(IsError(Assemble({chunks[0], chunks[1], chunks[2], last}).status(),
                      absl::StatusCode::kInvalidArgument, {"w", "overruns"}));
  // Later chunks that change the shape.
  TensorBlob reshaped = chunks[1];
  reshaped.set_shape(0, 50);
  EXPECT_TRUE(IsError(Assemble({chunks[0], reshaped}).status(), absl::StatusCode::kInvalidArgument,
                      {"w", "disagree"}));
  // Unknown dtype, no name.
  TensorBlob odd = chunks[0];
  odd.set_dtype("complex64");
  EXPECT_TRUE(IsError(Assemble({odd}).status(), absl::StatusCode::kInvalidArgument, {"complex64"}));
  TensorBlob nameless = chunks[0];
  nameless.clear_name();
  EXPECT_TRUE(IsError(Assemble({nameless}).status(), absl::StatusCode::kInvalidArgument,
                      {"without a name"}));
}

}  // namespace
}  // namespace nas

namespace nas {
namespace {

// A job's data_dir comes from a user: only the worker's data roots (links followed) are allowed.
TEST(DataRootsTest, DataDirMustResolveUnderARoot) {
  namespace fs = std::filesystem;
  const fs::path base = fs::path(::testing::TempDir()) / "data_roots_test";
  fs::remove_all(base);
  fs::create_directories(base / "root" / "mnist");
  fs::create_directories(base / "secret");
  fs::create_directories(base / "rootx");
  fs::create_directory_symlink(base / "secret", base / "root" / "escape");
  const std::vector<std::string> roots = {(base / "root").string()};
  EXPECT_TRUE(CheckDataDir((base / "root" / "mnist").string(), roots).ok());
  EXPECT_TRUE(CheckDataDir((base / "root").string(), roots).ok());
  EXPECT_TRUE(CheckDataDir((base / "root" / "not-yet").string(), roots).ok());
  for (const fs::path& bad : {base / "secret", base / "root" / ".." / "secret",
                              base / "root" / "escape", base / "rootx", fs::path("/etc")}) {
    EXPECT_TRUE(IsError(CheckDataDir(bad.string(), roots), absl::StatusCode::kPermissionDenied,
                        {"data_dir", "outside this worker's data roots"}))
        << bad;
  }
  EXPECT_FALSE(CheckDataDir("/usr/share/datasets/mnist", {}).ok());
  fs::remove_all(base);
}

}  // namespace
}  // namespace nas
