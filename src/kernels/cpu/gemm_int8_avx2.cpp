// AVX2 INT8 Linear kernels: per-token activation quantization, W8A8 GEMV/GEMM
// (INT32 accumulation, bit-identical to the reference) and weight-only INT8.
//
// W8A8 GEMV: `vpmaddubsw` multiplies unsigned by signed bytes and adds pairs
// into INT16 with saturation. With a = |w| (≤ 128 as u8, −128 included) and
// b = sign(x, w) = x·sgn(w) (|x| ≤ 127: activation codes never hold −128) the
// pair sum is at most 2·128·127 = 32512 < 32767, so it never saturates and
// a·b = w·x exactly; `vpmaddwd` with ones widens the pairs to INT32.
// W8A8 GEMM: both operands sign-extended to INT16 and multiplied with
// `vpmaddwd` (16 MACs per instruction, no saturation possible), tiles of
// 4 tokens × 3 weight rows, K in chunks so the activation block stays in L2.
#include <immintrin.h>

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

template <int R>
inline void s8_rows(const Int8WeightView& w, int64_t n0, const int8_t* xq, const int8_t* xtail, int32_t* out) {
  const int64_t K = w.K;
  const int64_t kfull = K / kS8Unit * kS8Unit;
  __m256i acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
  for (int64_t k = 0; k < kfull; k += kS8Unit) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + k));
    for (int r = 0; r < R; ++r) acc[r] = dot32_s8(xv, w.codes + (n0 + r) * K + k, acc[r]);
  }
  if (kfull < K) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xtail));
    for (int r = 0; r < R; ++r) {
      alignas(32) uint8_t buf[kS8Unit];
      copy_tail32(reinterpret_cast<const uint8_t*>(w.codes + (n0 + r) * K + kfull), K - kfull, buf);
      acc[r] = dot32_s8(xv, reinterpret_cast<const int8_t*>(buf), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum8_epi32(acc[r]);
}

/// y = float(acc) · (xs · ws) + bias, rounded exactly as the reference.
inline float s8_finish(const Int8WeightView& w, int64_t n, float xs, int32_t acc) {
  return mul_add_unfused(float(acc), xs * w.scales[w.per_tensor ? 0 : n], w.bias ? w.bias[n] : 0.0f);
}

void s8_gemv(const Int8WeightView& w, const int8_t* xq, float xs, float* y, int threads) {
  const int64_t N = w.N, K = w.K;
  const int64_t kfull = K / kS8Unit * kS8Unit;
  alignas(32) int8_t xtail[kS8Unit] = {};
  for (int64_t k = kfull; k < K; ++k) xtail[k - kfull] = xq[k];
  constexpr int R = 4;
  const int64_t groups = N / R;
  const int nt = gemv_threads(N, K, threads);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t g = 0; g < groups; ++g) {
    int32_t a[R];
    s8_rows<R>(w, g * R, xq, xtail, a);
    for (int r = 0; r < R; ++r) y[g * R + r] = s8_finish(w, g * R + r, xs, a[r]);
  }
  for (int64_t n = groups * R; n < N; ++n) {
    int32_t a[1];
    s8_rows<1>(w, n, xq, xtail, a);
    y[n] = s8_finish(w, n, xs, a[0]);
  }
}

// ---- W8A8 GEMM ----------------------------------------------------------------

constexpr int64_t kS16Unit = 16;     // k per vpmaddwd
constexpr int64_t kS8Chunk = 2048;   // k per chunk (activation block: 48 tokens × 4 KB)

/// acc[i][r] += Σ x16[i]·w[r] over [k0, k1) (k1 − k0 a multiple of 16); rows
/// w[r] point at the codes of k0. x16 rows of stride ldx.
template <int MT, int NT>
inline void s16_tile(const int16_t* x16, int64_t ldx, const int8_t* const* w, int64_t len, int32_t out[MT][NT]) {
  __m256i acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int r = 0; r < NT; ++r) acc[i][r] = _mm256_setzero_si256();
  for (int64_t k = 0; k < len; k += kS16Unit) {
    __m256i wv[NT];
    for (int r = 0; r < NT; ++r)
      wv[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r] + k)));
    for (int i = 0; i < MT; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x16 + i * ldx + k));
      for (int r = 0; r < NT; ++r) acc[i][r] = _mm256_add_epi32(acc[i][r], _mm256_madd_epi16(xv, wv[r]));
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int r = 0; r < NT; ++r) out[i][r] = hsum8_epi32(acc[i][r]);
}

void s8_gemm(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y, int threads) {
  const int64_t N = w.N, K = w.K;
  const int64_t kp = (K + kS16Unit - 1) / kS16Unit * kS16Unit;
  const int64_t kfull = K / kS16Unit * kS16Unit;
  thread_local std::vector<int16_t> xbuf;
  thread_local std::vector<int32_t> cbuf;
  int16_t* x16 = scratch(xbuf, size_t(M * kp));
  int32_t* c = scratch(cbuf, size_t(M * N));
  constexpr int MT = 4, NT = 3;
  const int64_t panels = (N + NT - 1) / NT;
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) x16[m * kp + k] = xq[m * K + k];
      for (int64_t k = K; k < kp; ++k) x16[m * kp + k] = 0;
    }
    for (int64_t k0 = 0; k0 < kp; k0 += kS8Chunk) {
      const int64_t k1 = std::min(kp, k0 + kS8Chunk);
      for (int64_t mb = 0; mb < M; mb += kMBlock) {
        const int64_t me = std::min(M, mb + kMBlock);
#pragma omp for schedule(static)
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t n0 = p * NT;
          const int64_t nt = std::min<int64_t>(NT, N - n0);
          // Rows past N repeat row n0 (computed, never stored); the K tail
          // comes from zero-padded copies so no load leaves the weight.
          alignas(16) int8_t tails[NT][kS16Unit] = {};
          const int8_t* rows[NT];
          const int8_t* trows[NT];
          for (int r = 0; r < NT; ++r) {
            const int64_t n = n0 + (r < nt ? r : 0);
            rows[r] = w.codes + n * K + k0;
            std::memcpy(tails[r], w.codes + n * K + kfull, size_t(K - kfull));
            trows[r] = tails[r];
          }
          const int64_t main_end = std::min(k1, kfull);
          auto run = [&]<int T>(int64_t m0) {
            int32_t part[T][NT];
            s16_tile<T, NT>(x16 + m0 * kp + k0, kp, rows, main_end - k0, part);
            if (k1 > kfull) {  // the zero-padded last 16 elements
              int32_t t2[T][NT];
              s16_tile<T, NT>(x16 + m0 * kp + kfull, kp, trows, kS16Unit, t2);
              for (int i = 0; i < T; ++i)
                for (int r = 0; r < NT; ++r) part[i][r] += t2[i][r];
            }
            for (int i = 0; i < T; ++i)
              for (int64_t r = 0; r < nt; ++r) {
                int32_t& dst = c[(m0 + i) * N + n0 + r];
                dst = (k0 == 0 ? 0 : dst) + part[i][r];
              }
          };
          int64_t m0 = mb;
          for (; m0 + MT <= me; m0 += MT) run.template operator()<MT>(m0);
          if (me - m0 == 3) run.template operator()<3>(m0);
          if (me - m0 == 2) run.template operator()<2>(m0);
          if (me - m0 == 1) run.template operator()<1>(m0);
        }
      }
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < M * N; ++i) y[i] = s8_finish(w, i % N, xs[i / N], c[i]);
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
