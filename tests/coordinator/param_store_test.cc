// The parameter store without a server: put and find, listing by owner group, the merge of a
// round's results (moved when one task returned a tensor, averaged when several did), the checks
// of a returned tensor, the changed set and the sole-writer marks.
#include "coordinator/param_store.h"

#include <cstring>
#include <set>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace nas {
namespace {

TensorBlob Floats(const std::string& name, std::vector<float> v, uint64_t version = 1) {
  TensorBlob b;
  b.set_name(name);
  b.set_dtype("float32");
  b.add_shape(static_cast<int64_t>(v.size()));
  b.set_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
  b.set_version(version);
  b.set_total_bytes(b.data().size());
  return b;
}

TensorBlob Int64s(const std::string& name, std::vector<int64_t> v) {
  TensorBlob b;
  b.set_name(name);
  b.set_dtype("int64");
  b.add_shape(static_cast<int64_t>(v.size()));
  b.set_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t)));
  return b;
}

std::vector<float> FloatsOf(const TensorBlob& b) {
  std::vector<float> v(b.data().size() / sizeof(float));
  std::memcpy(v.data(), b.data().data(), b.data().size());
  return v;
}

std::shared_ptr<const TensorBlob> Shared(TensorBlob b) {
  return std::make_shared<const TensorBlob>(std::move(b));
}

// A store with the fixed stem, two candidates of edge 0, one of edge 1, their momentum, an
// artifact and a tensor of a candidate the space does not have.
void Fill(ParamStore& p) {
  for (const char* n :
       {"stem.weight", "classifier.bias", "edge0_0.conv.weight", "edge0_1.conv.weight",
        "edge1_0.conv.weight", "momentum:edge0_0.conv.weight", "momentum:stem.weight",
        "edge0_99.conv.weight"}) {
    p.Put(Shared(Floats(n, {1, 2})));
  }
  TensorBlob a;
  a.set_name(std::string(kArtifactPrefix) + "derived.pt");
  a.set_dtype("bytes");
  p.Put(Shared(a));
}

std::vector<std::string> Listed(ParamStore& p, const SearchSpace& space,
                                const std::vector<std::vector<bool>>& keep, bool momentum) {
  std::vector<std::string> out;
  p.List(space, keep, momentum, [&](const ParamStore::Entry& e) { out.push_back(e.first); });
  return out;
}

std::vector<std::vector<bool>> KeepOnly(const SearchSpace& space, int edge, int candidate) {
  std::vector<std::vector<bool>> keep;
  for (const EdgeSpec& e : space.edges()) keep.emplace_back(e.candidates.size(), false);
  if (edge >= 0) keep[edge][candidate] = true;
  return keep;
}

TEST(ParamStoreTest, PutReplacesByNameAndKeepsTheKey) {
  ParamStore p;
  absl::string_view k1 = p.Put(Shared(Floats("stem.weight", {1, 2}, 1)));
  absl::string_view k2 = p.Put(Shared(Floats("stem.weight", {3, 4}, 2)));
  EXPECT_EQ(k1.data(), k2.data());  // the same key: views handed out stay valid
  ASSERT_NE(p.Find("stem.weight"), nullptr);
  EXPECT_EQ(p.Find("stem.weight")->blob->version(), 2u);
  EXPECT_EQ(p.Find("nope"), nullptr);
  EXPECT_EQ(p.size(), 1u);
  EXPECT_EQ(p.changed(), 0u);  // Put is not a change (recovery)
  p.PutChanged(Shared(Floats("stem.weight", {5, 6}, 3)));
  EXPECT_EQ(p.changed(), 1u);
  p.Clear();
  EXPECT_EQ(p.size(), 0u);
  EXPECT_EQ(p.changed(), 0u);
  EXPECT_EQ(p.Find("stem.weight"), nullptr);
}

TEST(ParamStoreTest, ListsFixedLayersThenTheKeptCandidatesInNameOrder) {
  auto space = SearchSpace::Preset("fashion-mnist");
  ASSERT_TRUE(space.ok()) << space.status();
  ASSERT_GE(space->num_edges(), 2);
  ParamStore p;
  Fill(p);
  EXPECT_EQ(Listed(p, *space, KeepOnly(*space, 0, 1), false),
            (std::vector<std::string>{"classifier.bias", "stem.weight", "edge0_1.conv.weight"}));
  EXPECT_EQ(Listed(p, *space, KeepOnly(*space, 0, 0), true),
            (std::vector<std::string>{"classifier.bias", "momentum:stem.weight", "stem.weight",
                                      "edge0_0.conv.weight", "momentum:edge0_0.conv.weight"}));
  // Nothing kept: the fixed layers. The artifact and edge0_99 are never listed.
  EXPECT_EQ(Listed(p, *space, KeepOnly(*space, -1, 0), true),
            (std::vector<std::string>{"classifier.bias", "momentum:stem.weight", "stem.weight"}));
  // A new name is grouped at the next listing.
  p.Put(Shared(Floats("edge1_0.bn.weight", {1})));
  EXPECT_EQ(Listed(p, *space, KeepOnly(*space, 1, 0), false),
            (std::vector<std::string>{"classifier.bias", "stem.weight", "edge1_0.bn.weight",
                                      "edge1_0.conv.weight"}));
}

TEST(ParamStoreTest, MergeMovesASingleResultAndAveragesSeveral) {
  ParamStore p;
  p.Put(Shared(Floats("stem.weight", {0, 0}, 4)));
  std::vector<TensorBlob> a, b;
  a.push_back(Floats("stem.weight", {1, 2}));
  b.push_back(Floats("stem.weight", {3, 6}));
  a.push_back(Floats("edge0_0.conv.weight", {7, 8}));
  TensorBlob bn_a = Int64s("stem.bn.num_batches_tracked", {5});
  TensorBlob bn_b = Int64s("stem.bn.num_batches_tracked", {9});
  a.push_back(bn_a);
  b.push_back(bn_b);
  const char* moved = a[1].data().data();
  std::vector<TensorBlob>* returned[] = {&a, &b};
  p.MergeReturned(absl::MakeSpan(returned));

  const ParamStore::Stored* w = p.Find("stem.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(FloatsOf(*w->blob), (std::vector<float>{2, 4}));
  EXPECT_EQ(w->blob->version(), 5u);
  EXPECT_EQ(w->blob->total_bytes(), 2 * sizeof(float));
  const ParamStore::Stored* e = p.Find("edge0_0.conv.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->blob->version(), 1u);         // new: version 1
  EXPECT_EQ(e->blob->data().data(), moved);  // one task's tensor: moved, not copied
  const ParamStore::Stored* n = p.Find("stem.bn.num_batches_tracked");
  ASSERT_NE(n, nullptr);
  int64_t largest = 0;
  std::memcpy(&largest, n->blob->data().data(), sizeof(largest));
  EXPECT_EQ(largest, 9);
  EXPECT_EQ(p.changed(), 3u);

  std::set<std::string> changed;
  for (const auto& t : p.ChangedTensors()) changed.insert(t->name());
  EXPECT_EQ(changed, (std::set<std::string>{"stem.weight", "edge0_0.conv.weight",
                                            "stem.bn.num_batches_tracked"}));
  p.ClearChanged();
  EXPECT_TRUE(p.ChangedTensors().empty());
}

TEST(ParamStoreTest, MergeBlobsOfOneIsBitExact) {
  TensorBlob a = Floats("x", {0.1f, 0.2f, 0.3f});
  TensorBlob m = ParamStore::MergeBlobs({&a});
  EXPECT_EQ(m.SerializeAsString(), a.SerializeAsString());
  TensorBlob b = Floats("x", {0.3f, 0.4f, 0.5f});
  TensorBlob c = Floats("x", {0.5f, 0.6f, 0.7f});
  EXPECT_EQ(FloatsOf(ParamStore::MergeBlobs({&a, &b, &c})),
            (std::vector<float>{(0.1f + 0.3f + 0.5f) / 3, (0.2f + 0.4f + 0.6f) / 3,
                                (0.3f + 0.5f + 0.7f) / 3}));
}

TEST(ParamStoreTest, CheckReturnedAllowsListedTensorsOfTheirShapeAndTheirMomentum) {
  ParamStore p;
  absl::string_view stem = p.Put(Shared(Floats("stem.weight", {1, 2})));
  p.Put(Shared(Floats("edge0_0.conv.weight", {1, 2})));
  absl::flat_hash_set<absl::string_view> allowed = {stem};

  EXPECT_TRUE(p.CheckReturned(Floats("stem.weight", {3, 4}), allowed, false).ok());
  EXPECT_TRUE(IsError(p.CheckReturned(Floats("stem.weight", {3, 4, 5}), allowed, false),
                      absl::StatusCode::kInvalidArgument, {"stem.weight", "shape [3]", "[2]"}));
  // Stored but not listed by the task.
  EXPECT_TRUE(IsError(p.CheckReturned(Floats("edge0_0.conv.weight", {3, 4}), allowed, false),
                      absl::StatusCode::kInvalidArgument, {"not a tensor of this task"}));
  // Momentum of a listed parameter: only when allowed, and of its shape.
  EXPECT_TRUE(p.CheckReturned(Floats("momentum:stem.weight", {0, 0}), allowed, true).ok());
  EXPECT_FALSE(p.CheckReturned(Floats("momentum:stem.weight", {0, 0}), allowed, false).ok());
  EXPECT_TRUE(IsError(p.CheckReturned(Floats("momentum:stem.weight", {0}), allowed, true),
                      absl::StatusCode::kInvalidArgument, {"parameter's shape"}));
  EXPECT_FALSE(p.CheckReturned(Floats("momentum:edge0_0.conv.weight", {0, 0}), allowed, true).ok());
  EXPECT_FALSE(p.CheckReturned(Floats("unknown", {0, 0}), allowed, true).ok());
}

TEST(ParamStoreTest, SoleWritersAreTheTensorsOneTaskAloneLists) {
  ParamStore p;
  absl::string_view stem = p.Put(Shared(Floats("stem.weight", {1})));
  absl::string_view e0 = p.Put(Shared(Floats("edge0_0.conv.weight", {1})));
  absl::string_view e1 = p.Put(Shared(Floats("edge0_1.conv.weight", {1})));
  std::vector<TensorListing> a = {{stem, 1}, {e0, 1}};
  std::vector<TensorListing> b = {{stem, 1}, {e1, 1}};
  std::vector<TensorListing>* listings[] = {&a, &b};
  ParamStore::MarkSoleWriters(absl::MakeSpan(listings));
  EXPECT_FALSE(a[0].sole_writer);
  EXPECT_TRUE(a[1].sole_writer);
  EXPECT_FALSE(b[0].sole_writer);
  EXPECT_TRUE(b[1].sole_writer);
  // One task: it writes everything it lists.
  std::vector<TensorListing>* one[] = {&a};
  ParamStore::MarkSoleWriters(absl::MakeSpan(one));
  EXPECT_TRUE(a[0].sole_writer);
}

}  // namespace
}  // namespace nas
