// AVX2 INT8 Linear kernels: per-token activation quantization, W8A8 GEMV/GEMM
// (INT32 accumulation, bit-identical to the reference) and weight-only INT8.
//
// W8A8 GEMV: `vpmaddubsw` multiplies unsigned by signed bytes and adds pairs
// into INT16 with saturation. With a = |w| (≤ 128 as u8, −128 included) and
// b = sign(x, w) = x·sgn(w) (|x| ≤ 127: activation codes never hold −128) the
// pair sum is at most 2·128·127 = 32512 < 32767, so it never saturates and
// a·b = w·x exactly; `vpmaddwd` with ones widens the pairs to INT32.
// W8A8 GEMM: both operands sign-extended to INT16 and multiplied with
// `vpmaddwd` (no saturation possible), see the GEMM section below.
#include <immintrin.h>
#include <omp.h>

#include <cmath>

#include "formats/int8.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"
#include "kernels/cpu/rowwise8_avx2.hpp"

namespace kq::cpu::avx2 {
namespace {

// ---- activation quantization -------------------------------------------------

/// Largest |x[i]|, NaN ignored (as formats::absmax; max is order-independent).
float absmax(const float* x, int64_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 m = _mm256_setzero_ps();
  int64_t i = 0;
  // vmaxps returns its second operand when either is NaN: NaN lanes keep m.
  for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask), m);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float r = 0.0f;
  for (float v : lanes) r = v > r ? v : r;
  for (; i < n; ++i) {
    const float a = std::fabs(x[i]);
    r = a > r ? a : r;
  }
  return r;
}

/// codes[i] = formats::int8_encode(x[i], scale): round half to even, NaN → 0, clamp ±127.
void encode_row(const float* x, int64_t n, float scale, int8_t* codes) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto q8 = [&](const float* p) {
    __m256 q = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(p), s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_and_ps(q, _mm256_cmp_ps(q, q, _CMP_ORD_Q));  // NaN → 0
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(q, lo), hi));
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_packs_epi32(q8(x + i), q8(x + i + 8));        // lane-interleaved INT16
    const __m256i b = _mm256_packs_epi32(q8(x + i + 16), q8(x + i + 24));
    const __m256i c = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), c);
  }
  for (; i < n; ++i) codes[i] = formats::int8_encode(x[i], scale);
}

// ---- W8A8 GEMV ----------------------------------------------------------------

constexpr int64_t kS8Unit = 32;

/// Σ_k x[k]·w[k] of 32 codes, added to acc as 8 INT32 lanes.
inline __m256i dot32_s8(__m256i xv, const int8_t* w, __m256i acc) {
  const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/// y = float(acc) · (xs · ws) + bias, rounded exactly as the reference.
inline float s8_finish(const Int8WeightView& w, int64_t n, float xs, int32_t acc) {
  return mul_add_unfused(float(acc), xs * w.scales[w.per_tensor ? 0 : n], w.bias ? w.bias[n] : 0.0f);
}

/// Σ_k xq[k]·w[n, k] of one whole row, front to back (two accumulators).
inline int32_t s8_row_dot(const Int8WeightView& w, int64_t n, const int8_t* xq, const int8_t* xtail) {
  const int64_t K = w.K;
  const int64_t kfull = K / kS8Unit * kS8Unit;
  const int8_t* row = w.codes + n * K;
  __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 2 * kS8Unit <= kfull; k += 2 * kS8Unit) {
    a0 = dot32_s8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k)), row + k, a0);
    a1 = dot32_s8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k + kS8Unit)), row + k + kS8Unit, a1);
  }
  if (k < kfull) a0 = dot32_s8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k)), row + k, a0);
  if (kfull < K) {
    alignas(32) uint8_t buf[kS8Unit];
    copy_tail32(reinterpret_cast<const uint8_t*>(row + kfull), K - kfull, buf);
    a1 = dot32_s8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xtail)), reinterpret_cast<const int8_t*>(buf), a1);
  }
  return hsum8_epi32(_mm256_add_epi32(a0, a1));
}

/// Σ_k xq[k]·w[n, k] for the 4 rows rows[0..3] (anywhere in the matrix) in lockstep.
inline void s8_rows4_dot(const Int8WeightView& w, const int64_t rows[4], const int8_t* xq, const int8_t* xtail,
                         int32_t out[4]) {
  const int64_t K = w.K;
  const int64_t kfull = K / kS8Unit * kS8Unit;
  const int8_t* p[4];
  __m256i acc[4];
  for (int r = 0; r < 4; ++r) {
    p[r] = w.codes + rows[r] * K;
    acc[r] = _mm256_setzero_si256();
  }
  for (int64_t k = 0; k < kfull; k += kS8Unit) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k));
    for (int r = 0; r < 4; ++r) acc[r] = dot32_s8(xv, p[r] + k, acc[r]);
  }
  if (kfull < K) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xtail));
    for (int r = 0; r < 4; ++r) {
      alignas(32) uint8_t buf[kS8Unit];
      copy_tail32(reinterpret_cast<const uint8_t*>(p[r] + kfull), K - kfull, buf);
      acc[r] = dot32_s8(xv, reinterpret_cast<const int8_t*>(buf), acc[r]);
    }
  }
  for (int r = 0; r < 4; ++r) out[r] = hsum8_epi32(acc[r]);
}

// Decode GEMV. Each thread owns a contiguous range of rows (one contiguous
// block of memory) and cuts it into 4 equal quarters that it walks in
// lockstep, row after row: 4 long sequential streams per core, which the
// hardware prefetchers follow at full speed while the 4 streams keep several
// misses in flight. (4 ADJACENT rows in lockstep with software prefetch gave
// short 2 KB streams: 9.8 GB/s from memory at 2048 x 2048 on the 2-core EPYC,
// see docs/PERFORMANCE.md.) INT32 sums are exact: the same bits in any order.
void s8_gemv(const Int8WeightView& w, const int8_t* xq, float xs, float* y, int threads) {
  const int64_t N = w.N, K = w.K;
  const int64_t kfull = K / kS8Unit * kS8Unit;
  alignas(32) int8_t xtail[kS8Unit] = {};
  for (int64_t k = kfull; k < K; ++k) xtail[k - kfull] = xq[k];
  for_each_row_quartered(
      N, K, threads,
      [&](const int64_t* rows) {
        int32_t a[4];
        s8_rows4_dot(w, rows, xq, xtail, a);
        for (int r = 0; r < 4; ++r) y[rows[r]] = s8_finish(w, rows[r], xs, a[r]);
      },
      [&](int64_t n) { y[n] = s8_finish(w, n, xs, s8_row_dot(w, n, xq, xtail)); });
}

// ---- W8A8 GEMM ----------------------------------------------------------------
//
// Broadcast layout: a panel of 16 weight rows × one K chunk is widened to
// INT16 and stored pair-interleaved, panel[p][r] = (w[r][2p], w[r][2p+1]) as
// one 32-bit lane, so one `vpmaddwd` of a panel vector (8 rows) with the
// broadcast activation pair (x[2p], x[2p+1]) adds 2 products to 8 outputs.
// Tiles of 6 tokens × 16 rows keep 12 INT32 accumulators in registers.

constexpr int64_t kPanelRows = 16;
constexpr int64_t kS8Chunk = 512;  // K per chunk: a 16 KB panel (L1)
constexpr int kS8Tokens = 6;       // tokens per tile

/// Writes the INT16 pair-interleaved panel of rows [n0, n0 + 16) ∩ [0, N),
/// elements [k0, k0 + kc) (kc even; elements past K and rows past N are 0).
void build_panel(const Int8WeightView& w, int64_t n0, int64_t k0, int64_t kc, int32_t* panel) {
  const int64_t K = w.K;
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t p0 = 0; p0 < kc / 2; p0 += 8) {  // 8 pairs = 16 elements per step
      __m256i R[8];
      for (int i = 0; i < 8; ++i) {
        const int64_t n = n0 + 8 * h + i;
        const int64_t k = k0 + 2 * p0;
        alignas(16) int8_t buf[16] = {};
        const int8_t* src = buf;
        if (n < w.N) {
          if (k + 16 <= K)
            src = w.codes + n * K + k;
          else if (k < K)
            std::memcpy(buf, w.codes + n * K + k, size_t(K - k));
        }
        R[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
      }
      // 8×8 transpose of 32-bit lanes: R[i] lane j = pair p0+j of row i.
      const __m256i t0 = _mm256_unpacklo_epi32(R[0], R[1]), t1 = _mm256_unpackhi_epi32(R[0], R[1]);
      const __m256i t2 = _mm256_unpacklo_epi32(R[2], R[3]), t3 = _mm256_unpackhi_epi32(R[2], R[3]);
      const __m256i t4 = _mm256_unpacklo_epi32(R[4], R[5]), t5 = _mm256_unpackhi_epi32(R[4], R[5]);
      const __m256i t6 = _mm256_unpacklo_epi32(R[6], R[7]), t7 = _mm256_unpackhi_epi32(R[6], R[7]);
      const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
      const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
      const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
      const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
      const __m256i out[8] = {
          _mm256_permute2x128_si256(u0, u4, 0x20), _mm256_permute2x128_si256(u1, u5, 0x20),
          _mm256_permute2x128_si256(u2, u6, 0x20), _mm256_permute2x128_si256(u3, u7, 0x20),
          _mm256_permute2x128_si256(u0, u4, 0x31), _mm256_permute2x128_si256(u1, u5, 0x31),
          _mm256_permute2x128_si256(u2, u6, 0x31), _mm256_permute2x128_si256(u3, u7, 0x31)};
      for (int j = 0; j < 8 && p0 + j < kc / 2; ++j)
        _mm256_store_si256(reinterpret_cast<__m256i*>(panel + (p0 + j) * kPanelRows + 8 * h), out[j]);
    }
  }
}

/// out[i][0..16) = Σ over the chunk's pairs of panel · x16 pairs, for T tokens
/// (x16 rows of stride ldx, pointing at the chunk start). The accumulators are
/// locals: written through `out` (may-alias vector type) inside the loop they
/// would be stored to memory on every step.
template <int T>
inline void s16_tile(const int16_t* x16, int64_t ldx, const int32_t* panel, int64_t pairs,
                     int32_t out[T][kPanelRows]) {
  __m256i acc[T][2];
  for (int i = 0; i < T; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
  for (int64_t p = 0; p < pairs; ++p) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + p * kPanelRows));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + p * kPanelRows + 8));
    for (int i = 0; i < T; ++i) {
      int32_t pair;
      std::memcpy(&pair, x16 + i * ldx + 2 * p, sizeof(pair));
      const __m256i xv = _mm256_set1_epi32(pair);
      acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(w0, xv));
      acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(w1, xv));
    }
  }
  for (int i = 0; i < T; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[i]), acc[i][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[i] + 8), acc[i][1]);
  }
}

void s8_gemm(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y, int threads) {
  const int64_t N = w.N, K = w.K;
  const int64_t kp = (K + 1) / 2 * 2;
  int16_t* x16 = thread_scratch_as<int16_t>(kScratchCall0, size_t(M * kp));
  const int64_t panels = (N + kPanelRows - 1) / kPanelRows;
#pragma omp parallel num_threads(threads)
  {
    alignas(64) int32_t panel[kS8Chunk / 2 * kPanelRows];
    int32_t* c = thread_scratch_as<int32_t>(kScratchWorker0, size_t(M * kPanelRows));  // sums of one panel [M][16]
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      int64_t k = 0;
      for (; k + 16 <= K; k += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(x16 + m * kp + k),
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + m * K + k))));
      for (; k < K; ++k) x16[m * kp + k] = xq[m * K + k];
      for (; k < kp; ++k) x16[m * kp + k] = 0;
    }
    // Panel-major: a panel's sums stay in L1 over all chunks; the activations
    // stream through (0.125 bytes per multiply-add).
#pragma omp for schedule(static)
    for (int64_t pn = 0; pn < panels; ++pn) {
      const int64_t n0 = pn * kPanelRows;
      const int64_t nt = std::min(kPanelRows, N - n0);
      for (int64_t k0 = 0; k0 < kp; k0 += kS8Chunk) {
        const int64_t kc = std::min(kS8Chunk, kp - k0);
        build_panel(w, n0, k0, kc, panel);
        auto run = [&]<int T>(int64_t m0) {
          alignas(32) int32_t part[T][kPanelRows];
          s16_tile<T>(x16 + m0 * kp + k0, kp, panel, kc / 2, part);
          for (int i = 0; i < T; ++i) {
            int32_t* dst = c + (m0 + i) * kPanelRows;
            for (int r = 0; r < kPanelRows; ++r) dst[r] = (k0 == 0 ? 0 : dst[r]) + part[i][r];
          }
        };
        int64_t m0 = 0;
        for (; m0 + kS8Tokens <= M; m0 += kS8Tokens) run.template operator()<kS8Tokens>(m0);
        switch (M - m0) {
          case 5: run.template operator()<5>(m0); break;
          case 4: run.template operator()<4>(m0); break;
          case 3: run.template operator()<3>(m0); break;
          case 2: run.template operator()<2>(m0); break;
          case 1: run.template operator()<1>(m0); break;
          default: break;
        }
      }
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < nt; ++r) y[m * N + n0 + r] = s8_finish(w, n0 + r, xs[m], c[m * kPanelRows + r]);
    }
  }
}

// ---- weight-only INT8 ---------------------------------------------------------

struct DecodeS8 {
  void operator()(const uint8_t* p, __m256 f[4]) const {
    for (int j = 0; j < 4; ++j)
      f[j] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j))));
  }
};

struct FinishS8 {
  const Int8WeightView& w;
  float operator()(int64_t, int64_t n, float total) const {
    return mul_add_unfused(total, w.scales[w.per_tensor ? 0 : n], w.bias ? w.bias[n] : 0.0f);
  }
};

}  // namespace

void quantize_rows_s8(const float* x, int64_t M, int64_t K, int8_t* xq, float* xs, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (M > 1)
  for (int64_t m = 0; m < M; ++m) {
    xs[m] = formats::int8_scale_for(absmax(x + m * K, K));
    encode_row(x + m * K, K, xs[m], xq + m * K);
  }
}

void gemm_s8s8_f32_rowwise(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y,
                           int threads) {
  if (M == 1)
    s8_gemv(w, xq, xs[0], y, threads);
  else
    s8_gemm(w, xq, xs, M, y, threads);
}

void gemm_f32s8_f32_rowwise(const Int8WeightView& w, const float* x, int64_t M, float* y, int threads) {
  const auto* codes = reinterpret_cast<const uint8_t*>(w.codes);
  if (M == 1)
    rowwise8_gemv(codes, w.N, w.K, x, y, threads, DecodeS8{}, FinishS8{w});
  else
    rowwise8_gemm(codes, w.N, w.K, x, M, y, threads, DecodeS8{}, FinishS8{w});
}

}  // namespace kq::cpu::avx2
