#pragma once
// Per-format tolerances shared by every quantization/kernel test.
#include <cmath>
#include <cstdint>
#include <string_view>

#include "kq/quantize.hpp"

namespace kq::testing {

/// Unit roundoff of F32 (2^-24).
inline constexpr double kF32Eps = 5.9604644775390625e-08;

/// Bound on |y − y_ref| for an F32 dot product of K terms against a double
/// reference: the classic worst-case summation bound (K + 8) · u · Σ|x_k·w_k|
/// (the +8 covers the final scale and bias roundings), doubled for safety,
/// plus an absolute floor for cancellation to ~0.
inline double forward_tolerance(int64_t K, double sum_abs_terms) {
  return 2.0 * double(K + 8) * kF32Eps * sum_abs_terms + 1e-30;
}

/// Upper bound on the relative RMS reconstruction error ‖W − Ŵ‖ / ‖W‖ of
/// round-to-nearest quantization of i.i.d. Gaussian weights (rows of 688),
/// about 10–30 % above the measured values (in parentheses):
///   INT8 per-channel: step absmax/127 ≈ 3.2σ/127, RMS step/√12 ≈ 0.0073 (0.0075)
///   FP8: relative step 2^-3..2^-4 (E4M3, 0.0265) or 2^-2..2^-3 (E5M2, 0.053)
///   NF4 (0.087 at block 32 .. 0.098 at 256), FP4 (0.101 .. 0.111), bitsandbytes' FP4 (0.114 .. 0.133: no
///   value between 1/192 and 1/6, where E2M1 / 6 has 1/12),
///   INT4 symmetric (0.096 at group 32 .. 0.125 at 256), asymmetric 15 % lower
inline double max_rel_rms_error(const QuantSpec& s) {
  switch (s.format) {
    case PrecisionFormat::INT8: return s.weight_scales == ScaleGranularity::PerTensor ? 0.012 : 0.0085;
    case PrecisionFormat::FP8_E4M3: return 0.03;
    case PrecisionFormat::FP8_E5M2: return 0.06;
    case PrecisionFormat::NF4: return 0.098 + 0.00004 * s.block_size;
    case PrecisionFormat::FP4: return 0.114 + 0.00004 * s.block_size;
    case PrecisionFormat::FP4_BNB: return 0.128 + 0.00009 * s.block_size;
    case PrecisionFormat::INT4: return (s.symmetric ? 0.107 : 0.092) + 0.0001 * s.block_size;
    default: return 0.0;
  }
}

/// FP8 conversion of a normal value: relative error ≤ 2^-(mbits+1) (half an ulp).
inline double fp8_rel_error_bound(FP8Format f) { return f == FP8Format::E4M3 ? 0.0625 : 0.125; }

/// Largest |ŝ − s| of a double-quantized scale, relative to its group's largest
/// |s − mean| (half a step of the 127-level symmetric code, plus F32 rounding).
inline constexpr double kDoubleQuantRelError = 0.5 / 127.0 + 1e-6;

/// NF4 codebook values computed from normal quantiles vs the published ones.
inline constexpr double kNF4ConstructionTol = 1e-6;

}  // namespace kq::testing
