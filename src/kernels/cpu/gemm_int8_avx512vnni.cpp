// AVX-512 VNNI W8A8 INT8 kernels (GEMV and GEMM), bit-identical to the reference.
//
// `vpdpbusd` multiplies unsigned bytes by signed bytes and adds groups of 4
// products into INT32 lanes without intermediate saturation. Activation codes
// x ∈ [−127, 127] are offset to u = x + 128 ∈ [1, 255] (x XOR 0x80), so
//   Σ x·w = Σ u·w − 128·Σ w,
// with Σ w (the weight row sum) computed alongside. Everything is exact
// INT32 arithmetic (|Σ u·w| ≤ K·255·128 < 2³¹ for K < 65,000; the reference
// INT32 accumulation itself is exact only for K < 133,000).
// GEMV: 64 k per instruction, 4 rows per pass, masked loads for the K tail.
// GEMM: panels of 32 weight rows × 512 k with 4-byte k-groups interleaved
// (panel[q][r] = w[r][4q .. 4q+3], gathered 16 rows at a time), tiles of
// 8 tokens × 32 rows (16 zmm accumulators), activation k-groups broadcast.
//
// This file deliberately uses no shared inline helpers and no std templates
// with out-of-line code (see scratch.hpp): everything here is compiled with
// AVX-512 flags and must not leak into code that runs on other CPUs.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/quant_kernels_avx512vnni.hpp"
#include "kernels/cpu/scratch.hpp"

namespace kq::cpu::avx512vnni {
namespace {

/// y = float(acc) · (xs · ws) + bias, rounded exactly as the reference (the
/// empty asm keeps the product from being fused with the addition).
float finish(const Int8WeightView& w, int64_t n, float xs, int32_t acc) {
  float p = float(acc) * (xs * w.scales[w.per_tensor ? 0 : n]);
  __asm__("" : "+v"(p));
  return p + (w.bias ? w.bias[n] : 0.0f);
}

int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/// Σ of the 16 INT32 lanes (exact). Through memory: GCC 12's
/// _mm512_reduce_add_epi32 trips -Wuninitialized inside its own header.
int32_t hsum16(__m512i v) {
  alignas(64) int32_t t[16];
  _mm512_store_si512(t, v);
  int32_t s = 0;
  for (int32_t e : t) s += e;
  return s;
}

// ---- GEMV ---------------------------------------------------------------------

template <int R>
inline void rows_dot(const Int8WeightView& w, int64_t n0, const int8_t* xq, int32_t* out) {
  const int64_t K = w.K;
  const __m512i flip = _mm512_set1_epi8(int8_t(0x80));
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc[R], sum[R];
  for (int r = 0; r < R; ++r) acc[r] = sum[r] = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; k += 64) {
    const __mmask64 m = K - k >= 64 ? ~__mmask64(0) : (__mmask64(1) << (K - k)) - 1;
    const __m512i u = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, xq + k), flip);  // padding: u = 128, w = 0
    for (int r = 0; r < R; ++r) {
      const __m512i wv = _mm512_maskz_loadu_epi8(m, w.codes + (n0 + r) * K + k);
      acc[r] = _mm512_dpbusd_epi32(acc[r], u, wv);
      sum[r] = _mm512_dpbusd_epi32(sum[r], ones, wv);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum16(acc[r]) - 128 * hsum16(sum[r]);
}

void gemv(const Int8WeightView& w, const int8_t* xq, float xs, float* y, int threads) {
  const int64_t N = w.N;
  constexpr int R = 4;
  const int64_t groups = N / R;
  const int nt = N * w.K < (int64_t(1) << 16) ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t g = 0; g < groups; ++g) {
    int32_t a[R];
    rows_dot<R>(w, g * R, xq, a);
    for (int r = 0; r < R; ++r) y[g * R + r] = finish(w, g * R + r, xs, a[r]);
  }
  for (int64_t n = groups * R; n < N; ++n) {
    int32_t a[1];
    rows_dot<1>(w, n, xq, a);
    y[n] = finish(w, n, xs, a[0]);
  }
}

// ---- GEMM ---------------------------------------------------------------------

constexpr int64_t kRows = 32;    // weight rows per panel (two zmm of 16 INT32 lanes)
constexpr int64_t kChunk = 512;  // k per panel chunk: 32 × 512 bytes = 16 KB
constexpr int kTokens = 8;       // tokens per tile: 16 accumulators

/// panel[q·32 + r] = the 4 codes w[n0 + r][k0 + 4q .. +3] as one INT32 lane
/// (0 past K or N), gathered 16 rows at a time; rowsum[h] (rows 16h + lane)
/// += their sums.
void build_panel(const Int8WeightView& w, int64_t n0, int64_t k0, int64_t kc, int32_t* panel, __m512i rowsum[2]) {
  const int64_t K = w.K;
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(int32_t(K)));
  for (int64_t h = 0; h < 2; ++h) {
    const int64_t r0 = n0 + 16 * h;
    const int64_t valid = r0 >= w.N ? 0 : min64(16, w.N - r0);
    const __mmask16 rows = __mmask16((1u << valid) - 1u);
    const int8_t* base = w.codes + (valid > 0 ? r0 * K : 0);
    for (int64_t q = 0; q < kc / 4; ++q) {
      const int64_t k = k0 + 4 * q;
      __m512i v;
      if (k + 4 <= K) {
        v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, offsets, base + k, 1);
      } else {  // the quad that crosses K: bytes past K are 0
        alignas(64) int32_t lanes[16] = {};
        for (int64_t i = 0; i < valid; ++i) {
          int8_t b[4] = {};
          for (int64_t j = 0; j < 4 && k + j < K; ++j) b[j] = base[i * K + k + j];
          std::memcpy(&lanes[i], b, 4);
        }
        v = _mm512_load_si512(lanes);
      }
      _mm512_store_si512(panel + q * kRows + 16 * h, v);
      rowsum[h] = _mm512_dpbusd_epi32(rowsum[h], ones, v);
    }
  }
}

template <int T>
inline void tile(const uint8_t* xu, int64_t ldx, const int32_t* panel, int64_t quads, int32_t out[T][kRows]) {
  __m512i acc[T][2];
  for (int i = 0; i < T; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
  for (int64_t q = 0; q < quads; ++q) {
    const __m512i w0 = _mm512_load_si512(panel + q * kRows);
    const __m512i w1 = _mm512_load_si512(panel + q * kRows + 16);
    for (int i = 0; i < T; ++i) {
      int32_t quad;
      std::memcpy(&quad, xu + i * ldx + 4 * q, sizeof(quad));
      const __m512i xv = _mm512_set1_epi32(quad);
      acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], xv, w0);
      acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], xv, w1);
    }
  }
  for (int i = 0; i < T; ++i) {
    _mm512_storeu_si512(out[i], acc[i][0]);
    _mm512_storeu_si512(out[i] + 16, acc[i][1]);
  }
}

void gemm(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y, int threads) {
  const int64_t N = w.N, K = w.K;
  const int64_t kp = (K + 3) / 4 * 4;
  uint8_t* xu = thread_scratch_as<uint8_t>(kScratchCall0, size_t(M * kp));
  const int64_t panels = (N + kRows - 1) / kRows;
#pragma omp parallel num_threads(threads)
  {
    alignas(64) int32_t panel[kChunk / 4 * kRows];
    int32_t* c = thread_scratch_as<int32_t>(kScratchWorker0, size_t(M * kRows));  // Σ u·w of one panel [M][32]
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) xu[m * kp + k] = uint8_t(xq[m * K + k] ^ 0x80);
      for (int64_t k = K; k < kp; ++k) xu[m * kp + k] = 128;
    }
#pragma omp for schedule(static)
    for (int64_t pn = 0; pn < panels; ++pn) {
      const int64_t n0 = pn * kRows;
      const int64_t nt = min64(kRows, N - n0);
      __m512i rsum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
      for (int64_t k0 = 0; k0 < kp; k0 += kChunk) {
        const int64_t kc = min64(kChunk, kp - k0);
        build_panel(w, n0, k0, kc, panel, rsum);
        auto run = [&]<int T>(int64_t m0) {
          alignas(64) int32_t part[T][kRows];
          tile<T>(xu + m0 * kp + k0, kp, panel, kc / 4, part);
          for (int i = 0; i < T; ++i) {
            int32_t* dst = c + (m0 + i) * kRows;
            for (int r = 0; r < kRows; ++r) dst[r] = (k0 == 0 ? 0 : dst[r]) + part[i][r];
          }
        };
        int64_t m0 = 0;
        for (; m0 + kTokens <= M; m0 += kTokens) run.template operator()<kTokens>(m0);
        switch (M - m0) {
          case 7: run.template operator()<7>(m0); break;
          case 6: run.template operator()<6>(m0); break;
          case 5: run.template operator()<5>(m0); break;
          case 4: run.template operator()<4>(m0); break;
          case 3: run.template operator()<3>(m0); break;
          case 2: run.template operator()<2>(m0); break;
          case 1: run.template operator()<1>(m0); break;
          default: break;
        }
      }
      alignas(64) int32_t rowsum[kRows];
      _mm512_store_si512(rowsum, rsum[0]);
      _mm512_store_si512(rowsum + 16, rsum[1]);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < nt; ++r)
          y[m * N + n0 + r] = finish(w, n0 + r, xs[m], c[m * kRows + r] - 128 * rowsum[r]);
    }
  }
}

}  // namespace

void gemm_s8s8_f32_rowwise(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y,
                           int threads) {
  if (M == 1)
    gemv(w, xq, xs[0], y, threads);
  else
    gemm(w, xq, xs, M, y, threads);
}

}  // namespace kq::cpu::avx512vnni
