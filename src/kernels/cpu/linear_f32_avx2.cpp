// AVX2+FMA FP32 GEMV (decode path of the FP32 Linear). Compiled with -mavx2 -mfma;
// only called after gemv_f32_avx2_supported() said yes.
#include <immintrin.h>

#include "kernels/cpu/linear_f32_kernels.hpp"

namespace kq::cpu {
namespace {

inline float hsum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
  return _mm_cvtss_f32(a);
}

// y[0..3] = rows w[0..3] · x, x loaded once per 8 columns for all 4 rows.
inline void dot_rows4(const float* w, int64_t K, const float* x, float* y) {
  const float* w0 = w;
  const float* w1 = w + K;
  const float* w2 = w + 2 * K;
  const float* w3 = w + 3 * K;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + k), xv, a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + k), xv, a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + k), xv, a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + k), xv, a3);
  }
  float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (; k < K; ++k) {
    s0 += w0[k] * x[k];
    s1 += w1[k] * x[k];
    s2 += w2[k] * x[k];
    s3 += w3[k] * x[k];
  }
  y[0] = s0;
  y[1] = s1;
  y[2] = s2;
  y[3] = s3;
}

inline float dot_row(const float* w, int64_t K, const float* x) {
  __m256 a = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a);
  float s = hsum(a);
  for (; k < K; ++k) s += w[k] * x[k];
  return s;
}

}  // namespace

void gemv_f32_avx2(const float* w, int64_t N, int64_t K, const float* x, float* y, int threads) {
  const int64_t blocks = N / 4;
  // Below ~64K weights a parallel region costs more than it saves.
  const int nt = (N * K < (int64_t(1) << 16)) ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t b = 0; b < blocks; ++b) dot_rows4(w + 4 * b * K, K, x, y + 4 * b);
  for (int64_t n = blocks * 4; n < N; ++n) y[n] = dot_row(w + n * K, K, x);
}

}  // namespace kq::cpu
