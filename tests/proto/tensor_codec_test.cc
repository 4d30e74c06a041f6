#include "proto/tensor_codec.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace nas {
namespace {

TensorBlob Blob(const std::string& name, std::vector<int64_t> shape, const std::string& dtype,
                size_t bytes) {
  TensorBlob b;
  b.set_name(name);
  for (int64_t d : shape) b.add_shape(d);
  b.set_dtype(dtype);
  std::string data(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i * 7 + 1);
  b.set_data(data);
  b.set_version(3);
  return b;
}

std::vector<TensorBlob> Split(const TensorBlob& t, size_t chunk) {
  std::vector<TensorBlob> out;
  EXPECT_TRUE(SplitIntoChunks(t, chunk, [&](TensorBlob&& c) {
    out.push_back(std::move(c));
    return true;
  }));
  return out;
}

TEST(TensorCodecTest, ElementSizesAndByteSize) {
  EXPECT_EQ(TensorElementSize("float32"), 4);
  EXPECT_EQ(TensorElementSize("int64"), 8);
  EXPECT_EQ(TensorElementSize("bytes"), 1);
  EXPECT_EQ(TensorElementSize("float16"), 0);
  TensorBlob b = Blob("w", {2, 3, 5}, "float32", 120);
  EXPECT_EQ(*TensorByteSize(b.shape(), "float32"), 120);
  EXPECT_EQ(*TensorByteSize(b.shape(), "int64"), 240);
  TensorBlob scalar = Blob("s", {}, "int64", 8);
  EXPECT_EQ(*TensorByteSize(scalar.shape(), "int64"), 8);
}

TEST(TensorCodecTest, CheckTensorBlobAcceptsWholeTensors) {
  EXPECT_TRUE(CheckTensorBlob(Blob("w", {4, 2}, "float32", 32), "result").ok());
  EXPECT_TRUE(CheckTensorBlob(Blob("n", {}, "int64", 8), "result").ok());
  EXPECT_TRUE(CheckTensorBlob(Blob("e", {0, 7}, "float32", 0), "result").ok());
  EXPECT_TRUE(CheckTensorBlob(Blob("m", {5}, "bytes", 5), "result").ok());
}

TEST(TensorCodecTest, CheckTensorBlobRefusesAndNamesTheTensor) {
  struct Case {
    TensorBlob blob;
    std::string message;
  };
  std::vector<Case> cases = {
      {Blob("", {1}, "float32", 4), "result: empty name"},
      {Blob("w", {1}, "float16", 2), "result 'w': dtype 'float16' is not float32, int64 or bytes"},
      {Blob("w", {-1, 4}, "float32", 0), "result 'w': negative dimension in shape [-1,4]"},
      {Blob("w", {4, 2}, "float32", 31), "result 'w': 31 bytes for shape [4,2] of float32"},
      {Blob("w", {1, 1, 1, 1, 1, 1, 1, 1, 1}, "bytes", 1), "result 'w': 9 dimensions, at most 8"},
      // The product overflows int64 without the checks: 2^32 * 2^32 * 4.
      {Blob("w", {int64_t{1} << 32, int64_t{1} << 32}, "float32", 0),
       "result 'w': shape [4294967296,4294967296] of float32 is more than the limit"},
      // A zero dimension does not make absurd others fine.
      {Blob("w", {0, int64_t{1} << 62}, "float32", 0), "result 'w': dimension 4611686018427387904"},
      {Blob(std::string(2000, 'n'), {1}, "bytes", 1), "name of 2000 bytes, at most 1024"},
  };
  for (const Case& c : cases) {
    absl::Status s = CheckTensorBlob(c.blob, "result");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << s.message();
  }
  TensorLimits small;
  small.max_bytes = 100;
  absl::Status s = CheckTensorBlob(Blob("w", {26}, "float32", 104), "fetch", small);
  EXPECT_NE(s.message().find("fetch 'w': shape [26] of float32 is more than the limit of 100"),
            std::string::npos)
      << s.message();
}

TEST(TensorCodecTest, SplitIntoChunksCoversTheDataInOrder) {
  TensorBlob t = Blob("w", {10, 10}, "float32", 400);
  std::vector<TensorBlob> chunks = Split(t, 128);
  ASSERT_EQ(chunks.size(), 4u);
  std::string joined;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].name(), "w");
    EXPECT_EQ(chunks[i].dtype(), "float32");
    EXPECT_EQ(chunks[i].shape_size(), 2);
    EXPECT_EQ(chunks[i].version(), 3u);
    EXPECT_EQ(chunks[i].offset(), i * 128);
    EXPECT_EQ(chunks[i].total_bytes(), 400u);
    joined += chunks[i].data();
  }
  EXPECT_EQ(chunks.back().data().size(), 16u);
  EXPECT_EQ(joined, t.data());
  // An empty tensor is one empty chunk; chunk size 0 means the default (one chunk here).
  EXPECT_EQ(Split(Blob("e", {0}, "float32", 0), 128).size(), 1u);
  EXPECT_EQ(Split(t, 0).size(), 1u);
  // Stops when emit says so.
  int calls = 0;
  EXPECT_FALSE(SplitIntoChunks(t, 100, [&](TensorBlob&&) { return ++calls < 2; }));
  EXPECT_EQ(calls, 2);
}

// Bytes held elsewhere (a LibTorch tensor's memory) give the chunks of the whole blob.
TEST(TensorCodecTest, SplitIntoChunksOfAViewEqualsThoseOfTheBlob) {
  TensorBlob t = Blob("w", {10, 10}, "float32", 400);
  TensorBlob header = t;
  header.clear_data();
  for (size_t chunk : {size_t{0}, size_t{7}, size_t{128}, size_t{400}}) {
    std::vector<TensorBlob> expected = Split(t, chunk);
    std::vector<TensorBlob> got;
    EXPECT_TRUE(SplitIntoChunks(header, t.data(), chunk, [&](TensorBlob&& c) {
      got.push_back(std::move(c));
      return true;
    }));
    ASSERT_EQ(got.size(), expected.size()) << chunk;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].SerializeAsString(), expected[i].SerializeAsString()) << chunk << " " << i;
    }
  }
}

TEST(TensorCodecTest, AssemblerRoundTripsChunkedAndUnchunkedTensors) {
  std::vector<TensorBlob> sent = {Blob("a", {10, 10}, "float32", 400), Blob("b", {3}, "int64", 24),
                                  Blob("c", {0}, "float32", 0), Blob("d", {1000}, "bytes", 1000)};
  std::vector<TensorBlob> stream;
  for (const TensorBlob& t : sent) {
    for (TensorBlob& c : Split(t, 128)) stream.push_back(std::move(c));
  }
  // An unchunked blob with total_bytes 0 is whole too.
  TensorBlob plain = Blob("e", {2}, "float32", 8);
  sent.push_back(plain);
  stream.push_back(plain);

  ChunkAssembler in;
  std::vector<TensorBlob> got;
  for (TensorBlob& c : stream) {
    absl::StatusOr<std::optional<TensorBlob>> whole = in.Add(std::move(c));
    ASSERT_TRUE(whole.ok()) << whole.status();
    if (*whole) got.push_back(**std::move(whole));
  }
  EXPECT_TRUE(in.Finish().ok());
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].name(), sent[i].name());
    EXPECT_EQ(got[i].data(), sent[i].data());
    EXPECT_EQ(got[i].version(), sent[i].version());
    EXPECT_EQ(got[i].offset(), 0u);
    EXPECT_EQ(got[i].total_bytes(), sent[i].data().size());
    EXPECT_TRUE(CheckTensorBlob(got[i], "got").ok());
  }
  EXPECT_EQ(in.bytes(), 400 + 24 + 0 + 1000 + 8);
  EXPECT_EQ(in.tensors(), 5);
}

// Feeds `stream` and returns the first error (OK when none, after Finish).
absl::Status Feed(std::vector<TensorBlob> stream, ChunkAssemblerOptions options = {}) {
  ChunkAssembler in(options);
  for (TensorBlob& c : stream) {
    absl::StatusOr<std::optional<TensorBlob>> r = in.Add(std::move(c));
    if (!r.ok()) {
      // The stream stays broken.
      EXPECT_EQ(in.Add(Blob("z", {1}, "bytes", 1)).status(), r.status());
      EXPECT_EQ(in.Finish(), r.status());
      return r.status();
    }
  }
  return in.Finish();
}

void ExpectError(const absl::Status& s, const std::string& message) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(message), std::string::npos) << s.message();
}

TEST(TensorCodecTest, AssemblerRefusesBrokenStreams) {
  std::vector<TensorBlob> w = Split(Blob("w", {100}, "float32", 400), 128);
  ASSERT_EQ(w.size(), 4u);
  std::vector<TensorBlob> v = Split(Blob("v", {10}, "float32", 40), 16);

  ExpectError(Feed({w[1]}), "tensor 'w': first chunk at offset 128, expected 0");
  ExpectError(Feed({w[0], w[2]}), "tensor 'w': chunk at offset 256, expected 128 (gap)");
  ExpectError(Feed({w[0], w[1], w[1]}), "tensor 'w': chunk at offset 128, expected 256 (overlap)");
  ExpectError(Feed({w[0], w[1]}), "tensor 'w': incomplete, 256 of 400 bytes arrived");
  ExpectError(Feed({w[0], v[0]}),
              "tensor 'w': incomplete, 128 of 400 bytes arrived, when a "
              "chunk of tensor 'v' came");
  // Interleaved chunks of two tensors are out of order.
  ExpectError(Feed({w[0], v[0], w[1]}), "tensor 'w': incomplete");

  TensorBlob longer = w[3];
  longer.mutable_data()->append("12345");
  ExpectError(Feed({w[0], w[1], w[2], longer}),
              "tensor 'w': chunk of 21 bytes at offset 384 overruns total_bytes 400");
  TensorBlob reshaped = w[1];
  reshaped.set_shape(0, 99);
  ExpectError(Feed({w[0], reshaped}), "tensor 'w': chunks disagree on shape, dtype or total_bytes");
  TensorBlob retyped = w[1];
  retyped.set_dtype("int64");
  ExpectError(Feed({w[0], retyped}), "chunks disagree");
  TensorBlob lying = w[0];
  lying.set_total_bytes(100000);
  ExpectError(Feed({lying}), "tensor 'w': total_bytes 100000 but shape [100] of float32 needs 400");
  TensorBlob big_first = Blob("w", {2}, "float32", 9);
  ExpectError(Feed({big_first}), "tensor 'w': total_bytes 9 but shape [2] of float32 needs 8");
  TensorBlob bad_dtype = Blob("x", {2}, "complex", 8);
  ExpectError(Feed({bad_dtype}), "tensor 'x': dtype 'complex'");
  ExpectError(Feed({Blob("", {1}, "bytes", 1)}), "tensor chunk without a name");
  ExpectError(Feed({v[0], v[1], v[2], v[0]}), "tensor 'v': sent twice");
}

TEST(TensorCodecTest, NamesMayRepeatAfterFinish) {
  ChunkAssembler in;
  ASSERT_TRUE(in.Add(Blob("a", {1}, "bytes", 1)).ok());
  ASSERT_TRUE(in.Finish().ok());
  absl::StatusOr<std::optional<TensorBlob>> again = in.Add(Blob("a", {1}, "bytes", 1));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->has_value());
}

TEST(TensorCodecTest, AssemblerBoundsTheStream) {
  ChunkAssemblerOptions o;
  o.max_total_bytes = 1000;
  // 800 + 400 > 1000: refused at the second tensor's first chunk, before its data arrives.
  std::vector<TensorBlob> stream = Split(Blob("a", {200}, "float32", 800), 256);
  std::vector<TensorBlob> b = Split(Blob("b", {100}, "float32", 400), 128);
  stream.push_back(b[0]);
  ExpectError(Feed(stream, o),
              "tensor 'b': 400 bytes would take the stream past the limit of 1000");

  o = {};
  o.max_tensors = 2;
  ExpectError(
      Feed({Blob("a", {1}, "bytes", 1), Blob("b", {1}, "bytes", 1), Blob("c", {1}, "bytes", 1)}, o),
      "tensor 'c': the stream has more than the limit of 2 tensors");

  o = {};
  o.tensor.max_bytes = 64;
  ExpectError(Feed({Blob("a", {17}, "float32", 68)}, o),
              "tensor 'a': shape [17] of float32 is more than the limit of 64 bytes");
  o.tensor.max_rank = 1;
  ExpectError(Feed({Blob("a", {1, 1}, "float32", 4)}, o), "tensor 'a': 2 dimensions, at most 1");
}

}  // namespace
}  // namespace nas
