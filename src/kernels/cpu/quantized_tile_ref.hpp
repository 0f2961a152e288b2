#pragma once
// Scalar building blocks shared by the reference (test-oracle) kernels of the
// quantized Linear ops: F32 and INT8 dot products written so the compiler can
// vectorise them, and the decode-then-dot tile loop every weight-only format
// uses. No SIMD intrinsics here: ISA-specific kernels live in *_avx2.cpp /
// *_avx512.cpp files and are tested against these.
#include <algorithm>
#include <cstdint>

namespace kq::cpu {

/// Σ a[i]·b[i] over n F32 values (8 partial sums, then a fixed-order reduction).
inline float dot_f32_ref(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

/// Σ a[i]·b[i] over n INT8 values, exact INT32 accumulation (n < 133,000).
inline int32_t dot_s8_ref(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += int32_t(a[i]) * int32_t(b[i]);
  return acc;
}

/// Tokens per tile: each decoded weight chunk is reused for this many rows of x.
inline constexpr int64_t kTileM = 8;
/// Output rows decoded together: each chunk of x is reused for this many weight rows.
inline constexpr int64_t kTileN = 4;
/// Largest decode chunk along K (a 4-bit block, or a slice of an 8-bit row).
inline constexpr int64_t kMaxChunk = 256;

/// y[m, n] = finish(m, n, Σ_k x[m, k] · ŵ[n, k]) for a weight [N, K] that is
/// decoded `chunk` (≤ kMaxChunk) elements at a time: decode(n, c, k0, len, out)
/// writes ŵ[n, k0 .. k0+len) of chunk c. Rows are split over `threads` OpenMP
/// threads in tiles of kTileN; each decoded chunk serves kTileM tokens, so a
/// weight element is decoded ceil(M / kTileM) times per call, never stored whole.
/// Uses only stack memory.
template <class Decode, class Finish>
void tiled_decode_gemm_ref(int64_t N, int64_t K, int64_t chunk, const float* x, int64_t M, float* y, int threads,
                           const Decode& decode, const Finish& finish) {
  const int64_t row_tiles = (N + kTileN - 1) / kTileN;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < row_tiles; ++t) {
    alignas(64) float wbuf[kTileN][kMaxChunk];
    const int64_t n0 = t * kTileN;
    const int64_t nt = std::min(kTileN, N - n0);
    for (int64_t m0 = 0; m0 < M; m0 += kTileM) {
      const int64_t mt = std::min(kTileM, M - m0);
      float acc[kTileN][kTileM] = {};
      for (int64_t k0 = 0, c = 0; k0 < K; k0 += chunk, ++c) {
        const int64_t len = std::min(chunk, K - k0);
        for (int64_t r = 0; r < nt; ++r) decode(n0 + r, c, k0, len, wbuf[r]);
        for (int64_t i = 0; i < mt; ++i) {
          const float* xr = x + (m0 + i) * K + k0;
          for (int64_t r = 0; r < nt; ++r) acc[r][i] += dot_f32_ref(wbuf[r], xr, len);
        }
      }
      for (int64_t i = 0; i < mt; ++i)
        for (int64_t r = 0; r < nt; ++r) y[(m0 + i) * N + n0 + r] = finish(m0 + i, n0 + r, acc[r][i]);
    }
  }
}

}  // namespace kq::cpu
