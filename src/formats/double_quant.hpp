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
