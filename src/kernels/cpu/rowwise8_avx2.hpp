#pragma once
// AVX2 GEMV/GEMM for weights stored as one byte per element, row-major
// [N, K] (weight-only INT8, FP8), in the canonical chunked F32 order of
// simd_avx2.hpp. Include ONLY from *_avx2.cpp files.
//
// Dec: `void operator()(const uint8_t* p, __m256 f[4]) const` decodes the 32
//      codes at p into elements 0–7, 8–15, 16–23, 24–31 (k order kept); it must
//      map code 0 to a finite value (zero-padded tails are multiplied by 0).
// Fin: `float operator()(int64_t m, int64_t n, float total) const` → y[m, n].
#include <immintrin.h>
#include <omp.h>

#include <cstring>

#include "kernels/cpu/simd_avx2.hpp"

namespace kq::cpu::avx2 {

inline constexpr int64_t kByteUnit = 32;  ///< codes per decode step

/// The R rows rows[0..R) (anywhere in the matrix) against one token, in
/// lockstep: totals[r] in the canonical order. xtail: the last K % 32
/// activations, zero-padded to 32.
template <int R, class Dec>
inline void rowwise8_rows(const uint8_t* codes, int64_t K, const int64_t* rows, const float* x, const float* xtail,
                          const Dec& dec, float* totals) {
  const int64_t kfull = K / kByteUnit * kByteUnit;
  const int64_t kp = (K + kByteUnit - 1) / kByteUnit * kByteUnit;
  for (int r = 0; r < R; ++r) totals[r] = 0.0f;
  for (int64_t c0 = 0; c0 < kp; c0 += kChunk) {
    const int64_t c1 = std::min(kp, c0 + kChunk);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t k = c0; k < c1; k += kByteUnit) {
      const bool tail = k >= kfull;
      const float* xk = tail ? xtail : x + k;
      const __m256 x0 = _mm256_loadu_ps(xk), x1 = _mm256_loadu_ps(xk + 8);
      const __m256 x2 = _mm256_loadu_ps(xk + 16), x3 = _mm256_loadu_ps(xk + 24);
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = codes + rows[r] * K + k;
        alignas(32) uint8_t buf[kByteUnit];
        if (tail) {
          copy_tail32(p, K - k, buf);
          p = buf;
        }
        __m256 f[4];
        dec(p, f);
        acc[r] = _mm256_fmadd_ps(f[0], x0, acc[r]);
        acc[r] = _mm256_fmadd_ps(f[1], x1, acc[r]);
        acc[r] = _mm256_fmadd_ps(f[2], x2, acc[r]);
        acc[r] = _mm256_fmadd_ps(f[3], x3, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) totals[r] += hsum8(acc[r]);
  }
}

/// Decode (M = 1). Each thread owns a contiguous range of rows and walks its
/// 4 quarters in lockstep, row after row: 4 long sequential streams per core
/// that the hardware prefetchers follow (4 adjacent rows in lockstep are
/// 1-8 KB streams, too short for them). A row's sum does not depend on which
/// rows run beside it: the result is the canonical one for any thread count.
template <class Dec, class Fin>
void rowwise8_gemv(const uint8_t* codes, int64_t N, int64_t K, const float* x, float* y, int threads, const Dec& dec,
                   const Fin& fin) {
  const int64_t kfull = K / kByteUnit * kByteUnit;
  alignas(32) float xtail[kByteUnit] = {};
  for (int64_t k = kfull; k < K; ++k) xtail[k - kfull] = x[k];
  for_each_row_quartered(
      N, K, threads,
      [&](const int64_t* rows) {
        float tot[4];
        rowwise8_rows<4>(codes, K, rows, x, xtail, dec, tot);
        for (int r = 0; r < 4; ++r) y[rows[r]] = fin(0, rows[r], tot[r]);
      },
      [&](int64_t n) {
        float tot[1];
        rowwise8_rows<1>(codes, K, &n, x, xtail, dec, tot);
        y[n] = fin(0, n, tot[0]);
      });
}

/// Prefill (M > 1): decoded panels × tiles of 4 tokens × 3 rows (panel_gemm).
template <class Dec, class Fin>
void rowwise8_gemm(const uint8_t* codes, int64_t N, int64_t K, const float* x, int64_t M, float* y, int threads,
                   const Dec& dec, const Fin& fin) {
  const int64_t kp = (K + kByteUnit - 1) / kByteUnit * kByteUnit;
  float* xp = thread_scratch_as<float>(kScratchCall0, size_t(M * kp));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    std::memcpy(xp + m * kp, x + m * K, size_t(K) * sizeof(float));
    for (int64_t k = K; k < kp; ++k) xp[m * kp + k] = 0.0f;
  }
  auto decode_row = [&](int64_t n, int64_t k0, int64_t kc, float* out, float*) {
    for (int64_t k = k0; k < k0 + kc; k += kByteUnit) {
      const uint8_t* p = codes + n * K + k;
      alignas(32) uint8_t buf[kByteUnit];
      if (k + kByteUnit > K) {
        copy_tail32(p, K - k, buf);
        p = buf;
      }
      __m256 f[4];
      dec(p, f);
      for (int j = 0; j < 4; ++j) _mm256_store_ps(out + (k - k0) + 8 * j, f[j]);
    }
  };
  panel_gemm<4, 3, false>(N, M, kp, xp, 0, y, threads, decode_row, fin);
}

}  // namespace kq::cpu::avx2
