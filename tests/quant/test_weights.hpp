#pragma once
// Random test weights for the quantization tests.
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kq/tensor.hpp"

namespace kq::testing {

/// F32 [N, K] with N(0, sigma²) entries; row n is additionally scaled by
/// row_spread^(n / N) so rows have different magnitudes when row_spread > 1.
inline Tensor gaussian_weight(int64_t N, int64_t K, uint32_t seed, float sigma = 0.05f, float row_spread = 1.0f) {
  Tensor w = Tensor::empty(DType::F32, {N, K});
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, sigma);
  float* p = w.mutable_data<float>();
  for (int64_t n = 0; n < N; ++n) {
    const float rs = std::pow(row_spread, float(n) / float(N));
    for (int64_t k = 0; k < K; ++k) p[n * K + k] = g(rng) * rs;
  }
  return w;
}

/// The elements of t (whose element type is T) copied into a vector.
template <class T = float>
std::vector<T> values(const Tensor& t) {
  std::vector<T> v(static_cast<size_t>(t.numel()));
  if (t.defined() && t.numel() > 0) std::memcpy(v.data(), t.raw(), v.size() * sizeof(T));
  return v;
}

}  // namespace kq::testing
