#include "kernels/cpu/ops_softmax.hpp"

#include <cmath>

#include "kernels/cpu/ops_math.hpp"

namespace kq::cpu {

namespace {
float max_of(const float* x, int64_t n) {
  float m = x[0];
#pragma omp simd reduction(max : m)
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}
}  // namespace

void softmax_inplace(float* x, int64_t n) {
  const float m = max_of(x, n);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    x[i] = exp_f32(x[i] - m);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

double log_sum_exp(const float* x, int64_t n) {
  const float m = max_of(x, n);
  // Blocks of 256 summed in F32 (each term <= 1) then accumulated in double.
  double total = 0.0;
  for (int64_t b = 0; b < n; b += 256) {
    const int64_t e = b + 256 < n ? b + 256 : n;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = b; i < e; ++i) s += exp_f32(x[i] - m);
    total += double(s);
  }
  return double(m) + std::log(total);
}

int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

}  // namespace kq::cpu
