#pragma once
// Integer 4-bit group quantization, round-to-nearest (the RTN baseline of
// AWQ, Lin et al. 2024, and GPTQ): one F32 scale per group of B consecutive
// K elements (B = 128 by default), packed4.hpp planes.
//
// Symmetric:   scale = absmax / 7, q = clamp(round(w / scale), −8, 7),
//              stored code = q + 8 (0..15), w ≈ (code − 8) · scale.
//              (RTN never produces code 0 = −8; it decodes for clipped scales.)
// Asymmetric:  lo = min(0, min w), hi = max(0, max w), scale = (hi − lo) / 15,
//              zero = clamp(round(−lo / scale), 0, 15) stored as one U8 per group,
//              code = clamp(round(w / scale) + zero, 0, 15), w ≈ (code − zero) · scale.
// Rounding: to nearest, ties to even. A zero group gets scale 0 and decodes to 0.
// Bits per weight at group B: 4 + 32/B (symmetric), 4 + 40/B (asymmetric; the
// zero point is held in a whole byte).
#include <cstdint>

namespace kq::formats {

inline constexpr int kInt4SymOffset = 8;
inline constexpr int kInt4Levels = 15;

/// Symmetric scale for a group's absmax: absmax / 7.
float int4_sym_scale(float absmax);

/// Stored code (0..15) of w under a symmetric scale (scale 0 gives code 8).
uint8_t int4_sym_encode(float w, float scale);

/// Asymmetric scale and zero point of a group spanning [min(0, lo), max(0, hi)].
void int4_asym_params(float lo, float hi, float* scale, uint8_t* zero);

/// Stored code (0..15) of w under an asymmetric scale and zero point (scale 0 gives `zero`).
uint8_t int4_asym_encode(float w, float scale, uint8_t zero);

}  // namespace kq::formats
