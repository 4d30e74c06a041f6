// A seeded, serialisable random source with platform-independent draws.
//
// Sampling in the search (paths, pairs, alpha init, data order) goes through Rng so that the
// same seed gives the same trajectory on every machine, and so that a checkpoint can store the
// exact state (State / Restore). Not thread-safe: one Rng per thread of work.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "absl/status/status.h"

namespace nas {

// A seed derived from (seed, a, b) with splitmix64 finalisers: random access into seeded
// sequences (the data order of epoch a, the augmentation of batch b).
uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b = 0);

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : gen_(seed) {}

  uint64_t Next() { return gen_(); }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(gen_() >> 11) * (1.0 / 9007199254740992.0); }
  // Uniform integer in [0, n).
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : static_cast<uint64_t>(Uniform() * n) % n; }
  // Standard normal (Box-Muller).
  double Normal();
  // An index drawn with the given (not necessarily normalised, non-negative) weights.
  int Categorical(const double* weights, int n);

  std::string State() const;
  absl::Status Restore(const std::string& state);

 private:
  std::mt19937_64 gen_;
};

}  // namespace nas
