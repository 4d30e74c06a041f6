// The remote worker's pure helpers (worker/tensor_blob.h): tensor <-> wire bytes, chunking and
// reassembly, and the size checks that reject malformed streams.
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "worker/remote_worker.h"
#include "worker/tensor_blob.h"

namespace nas {
namespace {

std::vector<TensorBlob> Chunks(const WireTensor& w, size_t max_chunk) {
  std::vector<TensorBlob> out;
  ForEachChunk(w, max_chunk, [&](TensorBlob&& b) {
    out.push_back(std::move(b));
    return true;
  });
  return out;
}

absl::StatusOr<std::map<std::string, WireTensor>> Assemble(std::vector<TensorBlob> chunks) {
  BlobAssembler in;
  int64_t sent = 0;
  for (TensorBlob& b : chunks) {
    sent += static_cast<int64_t>(b.data().size());
    absl::Status s = in.Add(std::move(b));
    if (!s.ok()) return s;
  }
  EXPECT_EQ(in.bytes(), sent);  // what a task reports as fetched_bytes
  return std::move(in).Finish();
}

// Chunking a tensor directly gives the chunks of its wire form, whatever its layout and size.
TEST(TensorBlobTest, TensorChunksEqualThoseOfItsWireForm) {
  torch::Tensor cl = torch::arange(2 * 3 * 4 * 5, torch::kFloat32)
                         .reshape({2, 3, 4, 5})
                         .contiguous(torch::MemoryFormat::ChannelsLast);
  for (size_t max_chunk : {size_t{0}, size_t{100}, size_t{480}, size_t{7}}) {
    absl::StatusOr<WireTensor> w = ToWire("edge0_1.bn.weight", cl);
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
  absl::StatusOr<WireTensor> w = ToWire("edge0_1.depthwise_conv.weight", cl);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype, "float32");
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3, 4, 5}));
  ASSERT_EQ(w->data.size(), 120u * 4);
  float second;
  std::memcpy(&second, w->data.data() + 4, 4);
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
  absl::StatusOr<WireTensor> w = ToWire("stem.bn.num_batches_tracked", steps);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->dtype, "int64");
  EXPECT_TRUE(w->shape.empty());
  EXPECT_EQ(w->data.size(), 8u);
  absl::StatusOr<torch::Tensor> back = FromWire(*w);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->dim(), 0);
  EXPECT_EQ(back->item<int64_t>(), 12345678901);
}

TEST(TensorBlobTest, UnsupportedDtypesAreRejected) {
  EXPECT_TRUE(IsError(ToWire("x", torch::zeros({2}, torch::kFloat64)).status(),
                      absl::StatusCode::kInvalidArgument, {"x", "no wire name"}));
  WireTensor w{"blob", {3}, "bytes", "abc"};
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument,
                      {"blob", "not a tensor dtype"}));
  w.dtype = "float16";
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument, {"float16"}));
}

TEST(TensorBlobTest, WrongByteCountIsRejected) {
  WireTensor w{"classifier.linear.bias", {10}, "float32", std::string(39, '\0')};
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument,
                      {"classifier.linear.bias", "39 bytes", "needs 40"}));
  w.shape = {-1};
  EXPECT_TRUE(IsError(FromWire(w).status(), absl::StatusCode::kInvalidArgument, {"negative"}));
}

TEST(TensorBlobTest, ChunksReassembleAcrossTensors) {
  torch::Tensor a = torch::randn({1000});  // 4000 bytes: 4 chunks of 1024 (last 928)
  torch::Tensor b = torch::arange(7, torch::kInt64);
  WireTensor wa = *ToWire("a", a);
  WireTensor wb = *ToWire("b", b);
  std::vector<TensorBlob> chunks = Chunks(wa, 1024);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[1].offset(), 1024u);
  EXPECT_EQ(chunks[3].data().size(), 928u);
  for (const TensorBlob& c : chunks) {
    EXPECT_EQ(c.total_bytes(), 4000u);
    EXPECT_EQ(c.version(), 0u);
    EXPECT_EQ(c.dtype(), "float32");
  }
  // Tensors may interleave; chunks of one tensor stay in order.
  std::vector<TensorBlob> b_chunks = Chunks(wb, 16);
  std::vector<TensorBlob> stream = {chunks[0], b_chunks[0], chunks[1],   b_chunks[1],
                                    chunks[2], chunks[3],   b_chunks[2], b_chunks[3]};
  ASSERT_EQ(b_chunks.size(), 4u);  // 56 bytes in 16-byte chunks
  auto got = Assemble(stream);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_TRUE(torch::equal(*FromWire(got->at("a")), a));
  EXPECT_TRUE(torch::equal(*FromWire(got->at("b")), b));
}

TEST(TensorBlobTest, EmptyTensorIsOneEmptyChunk) {
  WireTensor w = *ToWire("empty", torch::zeros({0, 3}));
  std::vector<TensorBlob> chunks = Chunks(w, kMaxChunkBytes);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].total_bytes(), 0u);
  auto got = Assemble(chunks);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(FromWire(got->at("empty"))->sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(TensorBlobTest, OpaqueBytesBlob) {
  std::string bytes(2500, 'x');
  WireTensor w = BytesToWire("derived.pt", bytes);
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2500}));
  EXPECT_EQ(w.dtype, "bytes");
  auto got = Assemble(Chunks(w, 1000));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at("derived.pt").data, bytes);
}

TEST(TensorBlobTest, UnchunkedBlobMayOmitTotalBytes) {
  TensorBlob b;
  b.set_name("c");
  b.add_shape(2);
  b.set_dtype("float32");
  b.set_data(std::string(8, '\0'));
  auto got = Assemble({b});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at("c").data.size(), 8u);
}

TEST(TensorBlobTest, MalformedStreamsAreRejected) {
  WireTensor w = *ToWire("w", torch::ones({100}));  // 400 bytes
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
                      absl::StatusCode::kInvalidArgument, {"w", "complete"}));
  // total_bytes that does not match the shape.
  TensorBlob lying = chunks[0];
  lying.set_total_bytes(404);
  EXPECT_TRUE(IsError(Assemble({lying}).status(), absl::StatusCode::kInvalidArgument,
                      {"w", "total_bytes 404", "needs 400"}));
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
