#pragma once
// bitsandbytes' FP4 ("fp4" quant_type of bitsandbytes.functional.quantize_4bit,
// transformers' BitsAndBytesConfig default when bnb_4bit_quant_type is absent):
// a 4-bit sign-magnitude float with 2 exponent bits (bias 3 in bitsandbytes'
// comments) and 1 mantissa bit, whose subnormal is 0.0625, normalised so the
// largest magnitude is 1. It is NOT OCP E2M1 (kq's FP4, fp4.hpp): the
// magnitudes {0, 0.0625, 2, 3, 4, 6, 8, 12} / 12 are E2M1's {0, 0.5, 1, 1.5,
// 2, 3, 4, 6} / 6 except the smallest nonzero one (1/192 ≈ 0.0052 instead of
// 1/12 ≈ 0.0833), and the codes are in another order.
//
// Source (bitsandbytes, functional.py get_4bit_type("fp4")): the values in code
// order are [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3]
// as an F32 tensor divided by its absmax 12 (the Python literal "-0" is the
// integer 0, so code 8 is stored as +0.0 in a checkpoint's quant_map); the CUDA
// dequantizer dDequantizeFP4Tree (csrc/kernels.cu) returns the same constants
// (0.16666667f, 0.33333333f, 0.5f, 0.66666667f, 0.25f, 1.0f, 5.208333333e-03f
// times absmax times sign, code bit 3 the sign), each equal to the F32 quotient
// v / 12 of the table above. So, by code c = S.b2.b1.b0:
//   c & 7:   0   1      2    3   4    5    6    7
//   value:   0   1/192  2/3  1   1/3  1/2  1/6  1/4
// and c ≥ 8 is the negative of c − 8 (code 8: −0 here; +0 in quant_map).
//
// Block layout: as NF4 (nf4.hpp): packed4.hpp planes with per-block scale =
// absmax of the block (optionally double-quantized). w ≈ kFP4Bnb[code] · absmax,
// computed in F32 as bitsandbytes' dequantize_4bit does (its kernel then rounds
// to the compute dtype).
//
// Encoding: bitsandbytes' quantizer (dQuantizeFP4, csrc/kernels.cu, applied by
// kQuantizeBlockwise to w · (1 / absmax) in F32) is a decision tree comparing
// |x| with the F32 literals 0.29166667f, 0.583333f, 0.8333333f, 0.4166667f,
// 0.0859375f, 0.20833333f, 0.00260417f (the midpoints 7/24, 7/12, 5/6, 5/12,
// 11/128, 5/24, 1/384 of neighbouring magnitudes, written to 6-8 digits) with
// strict '>', and sets the sign bit for x < 0 (so −0 and NaN give code 0, a tiny
// negative code 8, −0). It is the nearest magnitude, ties to the smaller one,
// except just below 0.583333f's rounding: 0.583333f is 3.2e-7 under 7/12, so a
// ratio in (0.583333f, 7/12] (float(7/12) = 0.58333331 among them) takes 2/3
// where the nearest is 1/2. fp4_bnb_encode uses the same literals and
// comparisons, and kq's quantizer (formats/traits.cpp) the same w · (1 / scale),
// so for the same block scale the codes are bitsandbytes' own. (With double
// quantization kq encodes against the decoded scale, and its blocks lie within
// a row; bitsandbytes encodes against the exact absmax of flat blocks.)
#include <array>
#include <cstdint>

namespace kq::formats {

/// bitsandbytes' FP4 value of each 4-bit code (normalised, max magnitude 1), in
/// code order (not ascending); code 8 is −0.
inline constexpr std::array<float, 16> kFP4Bnb = {
    0.0f,          0.0625f / 12.0f,  8.0f / 12.0f,  1.0f,  4.0f / 12.0f,  0.5f,  2.0f / 12.0f,  0.25f,
    -0.0f,         -0.0625f / 12.0f, -8.0f / 12.0f, -1.0f, -4.0f / 12.0f, -0.5f, -2.0f / 12.0f, -0.25f,
};

/// bitsandbytes' FP4 code of x (x = w · (1 / block absmax)), chosen exactly as
/// bitsandbytes' dQuantizeFP4 does (see above: its thresholds, nearly the
/// nearest value with ties to the smaller magnitude); |x| > 1 gives ±1 (code 3
/// or 11), the sign bit is set for x < 0 (−0 gives code 0), NaN gives code 0.
uint8_t fp4_bnb_encode(float x);

}  // namespace kq::formats
