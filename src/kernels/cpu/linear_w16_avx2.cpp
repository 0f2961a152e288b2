// AVX2 + F16C kernel of the 16-bit (BF16 / F16) unquantized Linear.
//
// Decode (M = 1): a GEMV that converts the weights in registers as it streams
// them (BF16: the 16 bits shifted into the high half of an F32 lane; F16:
// `vcvtph2ps`), 4 rows per pass so x is loaded once per 4 rows: it reads 2
// bytes per weight where the FP32 Linear's GEMV reads 4.
// Small batches (M = 2..4, batched decode): the same, 2 rows x M tokens per
// pass, each weight converted once for all tokens.
// Prefill (M > 4): panels of weight rows are converted to F32 in per-thread
// scratch (exact) and multiplied with oneDNN's sgemm, as the FP32 Linear does
// (gemm_f32_dequant_panels, dequant_gemm.hpp).
// All sum in F32, in different orders (as the FP32 Linear's paths do).
// No std:: templates or baseline headers' inline functions here (see
// scratch.hpp); simd_avx2.hpp is included only by AVX2 files.
#include <immintrin.h>
#include <omp.h>

#include <cstring>

#include "kernels/cpu/dequant_gemm.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"
#include "kernels/cpu/simd_avx2.hpp"

namespace kq::cpu::avx2 {
namespace {

/// The 8 weights at p as F32 (exact).
template <bool BF16>
inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (BF16)
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  else
    return _mm256_cvtph_ps(h);
}

/// One weight as F32 (exact).
template <bool BF16>
inline float load1(const uint16_t* p) {
  if constexpr (BF16) {
    const uint32_t u = uint32_t(*p) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  } else {
    return _cvtsh_ss(*p);
  }
}

/// y[0..R) = rows w[0..R) (row stride K) · x, x loaded once per 8 columns for all R rows.
template <bool BF16, int R>
inline void dot_rows(const uint16_t* w, int64_t K, const float* x, const float* bias, float* y) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(load8<BF16>(w + r * K + k), xv, acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    float s = hsum8(acc[r]);
    for (int64_t j = k; j < K; ++j) s += load1<BF16>(w + r * K + j) * x[j];
    y[r] = bias ? s + bias[r] : s;
  }
}

template <bool BF16>
void gemv(const W16WeightView& w, const float* x, float* y, int threads) {
  const int64_t N = w.N, K = w.K, blocks = N / 4;
  // Below ~64K weights a parallel region costs more than it saves (as the FP32 GEMV).
  const int nt = (N * K < (int64_t(1) << 16)) ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t b = 0; b < blocks; ++b)
    dot_rows<BF16, 4>(w.w + 4 * b * K, K, x, w.bias ? w.bias + 4 * b : nullptr, y + 4 * b);
  for (int64_t n = blocks * 4; n < N; ++n) dot_rows<BF16, 1>(w.w + n * K, K, x, w.bias ? w.bias + n : nullptr, y + n);
}

/// Small batches (2 <= M <= kSmallBatch tokens, e.g. batched decode): each
/// weight is read and converted once for all MT tokens, where a converted
/// panel would move the whole matrix three times. y[m·ldy + r] for R rows
/// from w (row stride K) and MT tokens from x (row stride K).
constexpr int64_t kSmallBatch = 4;

template <bool BF16, int R, int MT>
inline void dot_rows_tokens(const uint16_t* w, int64_t K, const float* x, const float* bias, float* y, int64_t ldy) {
  __m256 acc[R][MT];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MT; ++m) acc[r][m] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load8<BF16>(w + r * K + k);
    for (int m = 0; m < MT; ++m) {
      const __m256 xv = _mm256_loadu_ps(x + m * K + k);
      for (int r = 0; r < R; ++r) acc[r][m] = _mm256_fmadd_ps(wv[r], xv, acc[r][m]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MT; ++m) {
      float s = hsum8(acc[r][m]);
      for (int64_t j = k; j < K; ++j) s += load1<BF16>(w + r * K + j) * x[m * K + j];
      y[m * ldy + r] = bias ? s + bias[r] : s;
    }
}

template <bool BF16, int MT>
void gemv_tokens(const W16WeightView& w, const float* x, float* y, int threads) {
  const int64_t N = w.N, K = w.K, pairs = N / 2;
  const int nt = (N * K < (int64_t(1) << 16)) ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t p = 0; p < pairs; ++p)
    dot_rows_tokens<BF16, 2, MT>(w.w + 2 * p * K, K, x, w.bias ? w.bias + 2 * p : nullptr, y + 2 * p, N);
  if (N % 2) dot_rows_tokens<BF16, 1, MT>(w.w + (N - 1) * K, K, x, w.bias ? w.bias + N - 1 : nullptr, y + N - 1, N);
}

/// out[0, len) = F32 of p[0, len).
template <bool BF16>
inline void convert_row(const uint16_t* p, int64_t len, float* out) {
  int64_t k = 0;
  for (; k + 8 <= len; k += 8) _mm256_storeu_ps(out + k, load8<BF16>(p + k));
  for (; k < len; ++k) out[k] = load1<BF16>(p + k);
}

/// DequantRowsFn of the prefill path: rows [n0, n1) of the W16WeightView at ctx as F32.
template <bool BF16>
void convert_rows(const void* ctx, int64_t n0, int64_t n1, float* out) {
  const W16WeightView& w = *static_cast<const W16WeightView*>(ctx);
  for (int64_t n = n0; n < n1; ++n) convert_row<BF16>(w.w + n * w.K, w.K, out + (n - n0) * w.K);
}

template <bool BF16>
void gemm(const W16WeightView& w, const float* x, int64_t M, float* y, int threads) {
  gemm_f32_dequant_panels(x, M, w.N, w.K, convert_rows<BF16>, &w, w.bias, y, threads);
}

template <bool BF16>
void run(const W16WeightView& w, const float* x, int64_t M, float* y, int threads) {
  switch (M) {
    case 1: gemv<BF16>(w, x, y, threads); return;
    case 2: gemv_tokens<BF16, 2>(w, x, y, threads); return;
    case 3: gemv_tokens<BF16, 3>(w, x, y, threads); return;
    case kSmallBatch: gemv_tokens<BF16, kSmallBatch>(w, x, y, threads); return;
    default: gemm<BF16>(w, x, M, y, threads); return;
  }
}

}  // namespace

void gemm_f32w16_f32(const W16WeightView& w, const float* x, int64_t M, float* y, int threads) {
  if (w.dtype == DType::BF16)
    run<true>(w, x, M, y, threads);
  else
    run<false>(w, x, M, y, threads);
}

}  // namespace kq::cpu::avx2
