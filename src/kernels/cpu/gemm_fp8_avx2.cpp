// AVX2 FP8 (OCP E4M3 / E5M2) Linear kernels: GEMV (decode) and GEMM (prefill).
//
// Decoding in registers, 32 codes at a time: a code c placed in the high byte
// of a 16-bit lane (c << 8) IS the FP16 bit pattern of the E5M2 value (same
// sign/exponent/bias, mantissa padded with zeros). For E4M3, (c << 8) shifted
// right arithmetically by one with bit 14 cleared gives sign | (c & 0x7f) << 7,
// the FP16 pattern of value · 2⁻⁸ for normal AND subnormal codes (the exponent
// biases differ by 8); the 2⁸ is applied to the F32 sum (exact). `vcvtph2ps`
// then widens to F32. E4M3 NaN codes (S.1111.111) would decode to ±480·2⁻⁸, so
// ops whose weights hold them use the reference kernel (linear_fp8.cpp); the
// round-to-nearest quantizer never writes them (it rejects non-finite weights
// and saturates).
// Prefill from kFp8SgemmMinM tokens on: panels of rows decoded the same way to
// their exact FP8 values in F32 and multiplied with oneDNN's sgemm
// (dequant_gemm.hpp); the scales and bias are applied to the sums as above.
#include <immintrin.h>

#include <cfloat>

#include "formats/fp8.hpp"
#include "kernels/cpu/dequant_gemm.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"
#include "kernels/cpu/rowwise8_avx2.hpp"

namespace kq::cpu::avx2 {
namespace {

/// The 32 codes at p → F32 vectors f[0..3] = elements 0–7, 8–15, 16–23, 24–31.
template <bool E4M3>
inline void decode32(const uint8_t* p, __m256 f[4]) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i z = _mm256_setzero_si256();
  __m256i lo = _mm256_unpacklo_epi8(z, v);  // c << 8 for bytes 0–7 | 16–23
  __m256i hi = _mm256_unpackhi_epi8(z, v);  // bytes 8–15 | 24–31
  if constexpr (E4M3) {
    const __m256i keep = _mm256_set1_epi16(int16_t(0xBFFF));
    lo = _mm256_and_si256(_mm256_srai_epi16(lo, 1), keep);
    hi = _mm256_and_si256(_mm256_srai_epi16(hi, 1), keep);
  }
  f[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(lo));
  f[1] = _mm256_cvtph_ps(_mm256_castsi256_si128(hi));
  f[2] = _mm256_cvtph_ps(_mm256_extracti128_si256(lo, 1));
  f[3] = _mm256_cvtph_ps(_mm256_extracti128_si256(hi, 1));
}

/// Factor between the decoded vectors and the FP8 values.
template <bool E4M3>
constexpr float kUnscale = E4M3 ? 256.0f : 1.0f;

struct Finish {
  const Fp8WeightView& w;
  const float* xs;
  float unscale;
  float operator()(int64_t m, int64_t n, float total) const {
    const float ws = w.scales[w.per_tensor ? 0 : n];
    return mul_add_unfused(total * unscale, xs ? xs[m] * ws : ws, w.bias ? w.bias[n] : 0.0f);
  }
};

template <bool E4M3>
struct Decoder {
  void operator()(const uint8_t* p, __m256 f[4]) const { decode32<E4M3>(p, f); }
};

/// DequantRowsFn of the prefill path: rows [n0, n1) of the Fp8WeightView at
/// ctx as their FP8 values (formats::fp8_decode, exact in F32; the scales are
/// applied to the sums, as in the reference).
template <bool E4M3>
void dequant_rows(const void* ctx, int64_t n0, int64_t n1, float* out) {
  const Fp8WeightView& w = *static_cast<const Fp8WeightView*>(ctx);
  const float* table = formats::fp8_table(w.format).data();
  const __m256 unscale = _mm256_set1_ps(kUnscale<E4M3>);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* p = w.codes + n * w.K;
    float* o = out + (n - n0) * w.K;
    int64_t k = 0;
    for (; k + kByteUnit <= w.K; k += kByteUnit) {
      __m256 f[4];
      decode32<E4M3>(p + k, f);
      for (int j = 0; j < 4; ++j) _mm256_storeu_ps(o + k + 8 * j, _mm256_mul_ps(f[j], unscale));
    }
    for (; k < w.K; ++k) o[k] = table[p[k]];
  }
}

template <bool E4M3>
void run(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y, int threads) {
  if (M >= kFp8SgemmMinM) {
    gemm_f32_dequant_panels(x, M, w.N, w.K, dequant_rows<E4M3>, &w, nullptr, y, threads);
    const Finish fin{w, xs, 1.0f};
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && M * w.N >= (int64_t(1) << 16))
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < w.N; ++n) y[m * w.N + n] = fin(m, n, y[m * w.N + n]);
    return;
  }
  const Finish fin{w, xs, kUnscale<E4M3>};
  if (M == 1)
    rowwise8_gemv(w.codes, w.N, w.K, x, y, threads, Decoder<E4M3>{}, fin);
  else
    rowwise8_gemm(w.codes, w.N, w.K, x, M, y, threads, Decoder<E4M3>{}, fin);
}

// ---- activation quantization (W8A8 FP8) ---------------------------------------

/// Largest finite |x[i]| (NaN and ±Inf skipped), as formats::finite_absmax.
float finite_absmax(const float* x, int64_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 fmax = _mm256_set1_ps(FLT_MAX);
  __m256 m = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    m = _mm256_max_ps(_mm256_and_ps(a, _mm256_cmp_ps(a, fmax, _CMP_LE_OQ)), m);  // NaN, Inf → 0
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float r = 0.0f;
  for (float v : lanes) r = v > r ? v : r;
  return std::max(r, formats::finite_absmax(x + i, n - i));
}

/// FP8 parameters of one format.
struct Fp8Params {
  int mbits;          ///< mantissa bits
  float sub_scale;    ///< 2^(bias − 1 + mbits): subnormal steps per unit
  float min_normal;   ///< 2^(1 − bias)
  float max;          ///< largest finite value
  float overflow;     ///< value of a non-saturated overflow: NaN (E4M3) or +Inf (E5M2)
};

Fp8Params fp8_params(FP8Format f) {
  if (f == FP8Format::E4M3) return {3, 512.0f, 0.015625f, formats::kE4M3Max, __builtin_nanf("")};
  return {2, 65536.0f, 6.103515625e-05f, formats::kE5M2Max, __builtin_inff()};
}

/// out[i] = decode(fp8_encode(x[i] / scale)) for 8 lanes: the value rounded to
/// the FP8 grid, nearest-even, with fp8_encode's overflow and NaN rules.
inline __m256 fp8_round8(__m256 x, __m256 scale, const Fp8Params& p, bool saturate) {
  const __m256 q = _mm256_div_ps(x, scale);
  const __m256 sign = _mm256_and_ps(q, _mm256_castsi256_ps(_mm256_set1_epi32(int(0x80000000u))));
  const __m256 a = _mm256_andnot_ps(sign, q);
  // Normal range: round the F32 mantissa to mbits bits (a carry into the exponent is correct).
  const int shift = 23 - p.mbits;
  const __m256i u = _mm256_castps_si256(a);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, shift), _mm256_set1_epi32(1));
  __m256i rn = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32((1 << (shift - 1)) - 1)), odd);
  rn = _mm256_and_si256(rn, _mm256_set1_epi32(~((1 << shift) - 1)));
  // Subnormal range: a multiple of the smallest subnormal (scalings by powers of two are exact).
  const __m256 ss = _mm256_set1_ps(p.sub_scale);
  const __m256 rs =
      _mm256_div_ps(_mm256_round_ps(_mm256_mul_ps(a, ss), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), ss);
  __m256 r = _mm256_blendv_ps(_mm256_castsi256_ps(rn), rs, _mm256_cmp_ps(a, _mm256_set1_ps(p.min_normal), _CMP_LT_OQ));
  const __m256 over = _mm256_cmp_ps(r, _mm256_set1_ps(p.max), _CMP_GT_OQ);
  r = _mm256_blendv_ps(r, _mm256_set1_ps(saturate ? p.max : p.overflow), over);
  r = _mm256_blendv_ps(r, _mm256_set1_ps(__builtin_nanf("")), _mm256_cmp_ps(a, a, _CMP_UNORD_Q));  // NaN stays NaN
  return _mm256_or_ps(r, sign);
}

}  // namespace

void quantize_rows_fp8(const float* x, int64_t M, int64_t K, FP8Format f, bool saturate, float* xd, float* xs,
                       int threads) {
  const Fp8Params p = fp8_params(f);
  const float* table = formats::fp8_table(f).data();
#pragma omp parallel for num_threads(threads) schedule(static) if (M > 1)
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    float* d = xd + m * K;
    xs[m] = formats::fp8_scale_for(finite_absmax(xr, K), f);
    const __m256 s = _mm256_set1_ps(xs[m]);
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) _mm256_storeu_ps(d + k, fp8_round8(_mm256_loadu_ps(xr + k), s, p, saturate));
    for (; k < K; ++k) d[k] = table[formats::fp8_encode(xr[k] / xs[m], f, saturate)];
  }
}

void gemm_f32fp8_f32_rowwise(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y,
                             int threads) {
  if (w.format == FP8Format::E4M3)
    run<true>(w, x, xs, M, y, threads);
  else
    run<false>(w, x, xs, M, y, threads);
}

}  // namespace kq::cpu::avx2
