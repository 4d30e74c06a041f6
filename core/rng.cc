#include "core/rng.h"

#include <cmath>
#include <sstream>

namespace nas {

namespace {
uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b) {
  return SplitMix(SplitMix(SplitMix(seed) ^ a) ^ (b * 0xd6e8feb86659fd93ULL));
}

double Rng::Normal() {
  double u1 = Uniform();
  double u2 = Uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

int Rng::Categorical(const double* weights, int n) {
  double total = 0;
  for (int i = 0; i < n; ++i) total += weights[i];
  double u = Uniform() * total;
  double acc = 0;
  int last_positive = 0;
  for (int i = 0; i < n; ++i) {
    if (weights[i] <= 0) continue;
    acc += weights[i];
    last_positive = i;
    if (u < acc) return i;
  }
  return last_positive;  // rounding at the top end
}

std::string Rng::State() const {
  std::ostringstream ss;
  ss << gen_;
  return ss.str();
}

absl::Status Rng::Restore(const std::string& state) {
  std::istringstream ss(state);
  std::mt19937_64 g;
  ss >> g;
  if (ss.fail()) return absl::InvalidArgumentError("rng state: not a valid mt19937_64 state");
  gen_ = g;
  return absl::OkStatus();
}

}  // namespace nas
