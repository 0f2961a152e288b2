#pragma once
// Integer 4-bit group quantization, round-to-nearest: one F32 scale per group
// of B consecutive K elements (B = 128 by default), packed4.hpp planes.
//
// Symmetric (GPTQ's RTN rule, Frantar et al. 2023, reference quant.py
// Quantizer.find_params with sym = True: xmax = absmax, xmin = −absmax,
// scale = (xmax − xmin) / 15, zero = 8):
//              scale = 2·absmax / 15, q = clamp(round(w / scale), −8, 7),
//              stored code = q + 8 (0..15), w ≈ (code − 8) · scale.
//              All 16 levels are used: w / scale spans [−7.5, 7.5], so −absmax
//              is a tie that goes to even −8 (code 0; code 1 when the F32
//              rounding of the scale puts it just inside) and +absmax clips to
//              code 15 (7 · scale = 0.933 · absmax), as torch.round in GPTQ.
//              Earlier kq versions used absmax / 7 (the zero_point = False
//              branch of AWQ's reference pseudo_quantize_tensor, which AWQ
//              itself does not use; code 0 never produced): about 11 % more
//              weight error. Their folders decode unchanged (same storage).
// Asymmetric (GPTQ's find_params with sym = False):
//              lo = min(0, min w), hi = max(0, max w), scale = (hi − lo) / 15,
//              zero = clamp(round(−lo / scale), 0, 15) stored as one U8 per group,
//              code = clamp(round(w / scale) + zero, 0, 15), w ≈ (code − zero) · scale.
//              (AWQ's own asymmetric rule spans [min w, max w] without 0; the two
//              agree for every group that holds both signs.)
// Rounding: to nearest, ties to even. A zero group gets scale 0 and decodes to 0.
// Bits per weight at group B: 4 + 32/B (symmetric), 4 + 40/B (asymmetric; the
// zero point is held in a whole byte).
#include <cstdint>

namespace kq::formats {

inline constexpr int kInt4SymOffset = 8;
inline constexpr int kInt4Levels = 15;

/// Symmetric scale for a group's absmax (F32, >= 0): 2·absmax / 15 (GPTQ),
/// computed as absmax / 7.5 (the same value, one rounding, no overflow of
/// 2·absmax near F32's largest value).
float int4_sym_scale(float absmax);

/// Stored code (0..15) of w under a symmetric scale: clamp(round(w / scale), −8, 7) + 8,
/// ties to even (scale 0 or NaN w / scale gives code 8).
uint8_t int4_sym_encode(float w, float scale);

/// Asymmetric scale and zero point of a group spanning [min(0, lo), max(0, hi)].
void int4_asym_params(float lo, float hi, float* scale, uint8_t* zero);

/// Stored code (0..15) of w under an asymmetric scale and zero point (scale 0 gives `zero`).
uint8_t int4_asym_encode(float w, float scale, uint8_t zero);

}  // namespace kq::formats
