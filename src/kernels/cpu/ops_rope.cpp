#include "kernels/cpu/ops_rope.hpp"

#include <cmath>

namespace kq::cpu {

RopeTable make_rope_table(double theta, int64_t head_dim, int64_t max_positions) {
  RopeTable t;
  t.head_dim = head_dim;
  t.max_positions = max_positions;
  const int64_t half = head_dim / 2;
  t.cos.resize(size_t(max_positions * half));
  t.sin.resize(size_t(max_positions * half));
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[size_t(i)] = 1.0f / std::pow(float(theta), float(2 * i) / float(head_dim));
  for (int64_t p = 0; p < max_positions; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(p) * inv_freq[size_t(i)];
      t.cos[size_t(p * half + i)] = float(std::cos(double(angle)));
      t.sin[size_t(p * half + i)] = float(std::sin(double(angle)));
    }
  return t;
}

void apply_rope(float* x, int64_t n, int64_t heads, int64_t row_stride, int64_t pos0,
                const RopeTable& table) {
  const int64_t half = table.head_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    const float* c = table.cos.data() + (pos0 + t) * half;
    const float* s = table.sin.data() + (pos0 + t) * half;
    for (int64_t j = 0; j < heads; ++j) {
      float* v = x + t * row_stride + j * table.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

}  // namespace kq::cpu
