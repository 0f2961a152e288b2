#pragma once
// FP4 E2M1 (OCP Microscaling Formats (MX) v1.0 element type): 1 sign bit,
// 2 exponent bits (bias 1), 1 mantissa bit, no Inf/NaN.
//   code = S.EE.M; E=0: subnormal M·0.5; else (1 + M/2)·2^(E−1).
//   magnitudes by code 0..7: 0, 0.5, 1, 1.5, 2, 3, 4, 6; code 8 is −0.
//
// Block layout: packed4.hpp planes; the per-block scale is absmax / 6 so the
// block's largest magnitude maps to 6 (optionally double-quantized).
// w ≈ kE2M1[code] · scale. Rounding to nearest, ties to even mantissa; values
// beyond ±6 saturate. Bits per weight: as NF4 (4 + 32/B, or ≈ 4.127 at B = 64 with double quant).
#include <array>
#include <cstdint>

namespace kq::formats {

/// Decoded value of each 4-bit E2M1 code.
inline constexpr std::array<float, 16> kE2M1 = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/// Largest E2M1 magnitude.
inline constexpr float kE2M1Max = 6.0f;

/// Nearest E2M1 code to x (ties to even mantissa, saturating at ±6; NaN gives 0).
uint8_t fp4_encode(float x);

}  // namespace kq::formats
