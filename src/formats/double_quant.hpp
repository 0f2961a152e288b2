#pragma once
// Double quantization of per-block scales (QLoRA, Dettmers et al. 2023, §3
// "Double Quantization"): the F32 block scales of a tensor are themselves
// quantized to 8 bits.
//
// Layout, for the nb_total = N · nb per-block scales s_i of a weight [N, K]
// taken in row-major order over [N, nb] (groups cross row boundaries):
//   mean      F32 [1]              mean of all s_i (computed in double, rounded to F32)
//   dq_scale  F32 [ceil(nb_total/256)]  c_g = max_{i ∈ group g} |s_i − mean| / 127 (0 if all equal)
//   codes     I8  [N, nb]          q_i = clamp(round_half_even((s_i − mean) / c_g), −127, 127)
// Decode: ŝ_i = fma(q_i, c_g, mean), a single rounding so every kernel
// (scalar or SIMD FMA) reproduces the same F32 value bit for bit.
// Cost per weight at block B: 8/B + 32/(256·B) bits (+ 32 bits per tensor);
// at B = 64 that is 0.127 bits, so NF4 takes ≈ 4.127 bits per weight.
//
// The 8-bit code is symmetric linear INT8 of the mean-centred scales, not
// bitsandbytes' dynamic (tree) FP8 map: (1) its error is bounded uniformly,
// |ŝ − s| ≤ c_g/2, which the tests check; (2) decoding is one FMA, no table;
// (3) within a group of 256 blocks of one layer the absmax values cluster
// around their mean, so a uniform grid loses little against a log-spaced one
// (the scale error, at most 1/254 ≈ 0.4 % of the group's largest |s − mean|,
// is far below the ≈ 7–30 % steps of the 4-bit codebook it multiplies).
// Codes are then chosen against ŝ (not s), so each weight decodes to the
// codebook entry nearest to w / ŝ.
//
// Limitation (tester 28 F6): (3) assumes no outlier block. One block whose
// absmax is far above the others sets c_g for its whole group, so each of the
// other 255 scales of that group gets an absolute error up to c_g/2 ≈
// (outlier absmax − mean)/254, which can be most of their own size; a
// scale far below the mean can even decode slightly negative (its codes are
// then chosen against the negative ŝ, so the signs stay right). QLoRA's
// dynamic map (bitsandbytes create_dynamic_map, log-spaced over 7 decades)
// keeps small deviations precise. Measured (llama-small o_proj rows 0..63 =
// one group, one weight set to f × the layer's absmax; NF4 error of the
// group's other weights vs no double quantization): f = 20: +10.2 % (dynamic
// map −0.1 %), f = 100: +19.8 % (+0.9 %), f = 1000: +360 % (+47 %); the
// whole o_proj at f = 100: +5.8 % (+0.3 %); one block of absmax 57344 beside
// blocks of 0.02 zeroes the group's other blocks (ŝ = −223). The shipped
// models have no such blocks (kq's map is there slightly better than the
// dynamic one). With outlier weights, quantize with `-nodq` (F32 block
// scales). The stored format is unchanged; a fallback (per-group F32 scales,
// or a nonuniform map) is not implemented.
#include <cmath>
#include <cstdint>

namespace kq::formats {

/// Scales per double-quantization group.
inline constexpr int64_t kDqGroup = 256;

/// Decoded scale ŝ = fma(q, c, mean).
inline float dq_decode(int8_t q, float group_scale, float mean) { return std::fma(float(q), group_scale, mean); }

/// Double-quantizes s[0, n): writes codes[0, n) and group_scales[0, ceil(n/256)); returns the mean.
float double_quantize(const float* s, int64_t n, int8_t* codes, float* group_scales);

/// out[i] = dq_decode(codes[i], group_scales[i / 256], mean) for i < n.
void double_dequantize(const int8_t* codes, const float* group_scales, float mean, int64_t n, float* out);

}  // namespace kq::formats
