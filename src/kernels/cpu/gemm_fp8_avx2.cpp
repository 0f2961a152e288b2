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
#include <immintrin.h>

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

template <bool E4M3>
void run(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y, int threads) {
  const Finish fin{w, xs, kUnscale<E4M3>};
  if (M == 1)
    rowwise8_gemv(w.codes, w.N, w.K, x, y, threads, Decoder<E4M3>{}, fin);
  else
    rowwise8_gemm(w.codes, w.N, w.K, x, M, y, threads, Decoder<E4M3>{}, fin);
}

}  // namespace

void gemm_f32fp8_f32_rowwise(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y,
                             int threads) {
  if (w.format == FP8Format::E4M3)
    run<true>(w, x, xs, M, y, threads);
  else
    run<false>(w, x, xs, M, y, threads);
}

}  // namespace kq::cpu::avx2
