#pragma once
// FP8 element codec: OCP 8-bit Floating Point Specification (OFP8) rev 1.0.
//
// One byte per element, bit 7 = sign S, then exponent E and mantissa M:
//   E4M3  S.EEEE.MMM  bias 7.  E=0: subnormal (M/8)·2^-6; else (1+M/8)·2^(E-7).
//         S.1111.111 is NaN (the only NaN pattern, both signs); there is no Inf.
//         Max finite 0x7E = 1.75·2^8 = 448; min subnormal 2^-9.
//   E5M2  S.EEEEE.MM  bias 15. E=0: subnormal (M/4)·2^-14; E=31: M=0 ±Inf, M≠0 NaN;
//         else (1+M/4)·2^(E-15). Max finite 0x7B = 1.75·2^15 = 57344; min subnormal 2^-16.
// Bits per element: exactly 8.
//
// Conversion from F32 rounds to nearest, ties to even. Overflow is decided
// after rounding: in saturating mode any result above max (±Inf included)
// becomes ±max; in non-saturating mode it becomes NaN (E4M3) or ±Inf (E5M2).
// NaN stays NaN (sign kept), ±0 keeps its sign, F32 values below half the
// smallest subnormal become ±0.
//
// As a weight format (src/formats/traits.hpp): codes U8 [N, K] row-major plus
// F32 scales [N] (per-channel) or [1] (per-tensor); w ≈ decode(code) · scale
// with scale = absmax / max.
#include <array>
#include <cstdint>

#include "kq/quantize.hpp"

namespace kq::formats {

/// Canonical NaN codes (positive sign) and the largest finite codes.
inline constexpr uint8_t kE4M3NaN = 0x7F;
inline constexpr uint8_t kE5M2NaN = 0x7F;
inline constexpr uint8_t kE5M2Inf = 0x7C;
inline constexpr uint8_t kE4M3MaxCode = 0x7E;
inline constexpr uint8_t kE5M2MaxCode = 0x7B;
inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kE5M2Max = 57344.0f;

/// The 256 decoded values of a format, indexed by code (NaN codes decode to quiet NaN).
const std::array<float, 256>& fp8_table(FP8Format f);

/// Decodes one code (table lookup).
inline float fp8_decode(uint8_t code, FP8Format f) { return fp8_table(f)[code]; }

/// Encodes one F32 value (round to nearest even; see the header comment for
/// overflow, NaN, ±0 and subnormals).
uint8_t fp8_encode(float x, FP8Format f, bool saturate);

/// Largest |x| over finite values of x[0, n) (NaN and ±Inf are skipped); 0 when none.
float finite_absmax(const float* x, int64_t n);

/// Dynamic scale for values with the given finite absmax: absmax / max, or 1 when absmax is 0.
/// When absmax / max is below the smallest normal float (absmax < ~5e-36 for E4M3), the
/// smallest float >= denorm_min for which absmax / scale <= max: never 0 (absmax / 448
/// underflowed to 0 for absmax ~1e-44, and scale 1 then decoded everything to 0).
float fp8_scale_for(float absmax, FP8Format f);

/// codes[i] = fp8_encode(x[i] / scale) for i < n.
void fp8_quantize_row(const float* x, int64_t n, float scale, FP8Format f, bool saturate, uint8_t* codes);

/// out[i] = decode(codes[i]) · scale for i < n.
void fp8_dequantize_row(const uint8_t* codes, int64_t n, float scale, FP8Format f, float* out);

}  // namespace kq::formats
