#pragma once
// Error tolerances of the GPU kernels, one place for every tests/cuda test.
// Measure: relative L2 error ‖y − ref‖₂ / ‖ref‖₂ against a float64 reference
// computed on the host from the very operands the kernel sees (BF16
// activations, the quantized codes and scales), so the numbers below bound the
// kernels' arithmetic, not the quantization error of the formats.
namespace kq::testing::tol {

/// BF16 output rounding alone gives ~1.5e-3 (half an ulp of 2^-7, uniform);
/// FP32 accumulation adds ~1e-6 at K = 4096.
inline constexpr double kBf16Gemm = 4e-3;
/// FP8 E4M3 operands are exact in the reference; FP32 accumulation, FP32
/// scales, BF16 output.
inline constexpr double kFp8Gemm = 4e-3;
/// INT32 accumulation is exact; FP32 scaling, BF16 output.
inline constexpr double kInt8Gemm = 4e-3;
/// W4A16 GEMV: block scales held in BF16 and NF4 code values rounded to BF16
/// (each ~1.5e-3 rms), FP32 accumulation, BF16 output rounding.
inline constexpr double kW4Gemv = 1e-2;
/// W4A16 prefill against the exact weights: weights dequantized to BF16 (one
/// rounding, ~1.5e-3 rms), FP32 accumulation, BF16 output.
inline constexpr double kW4Prefill = 8e-3;
/// W4A16 prefill GEMM against a reference with the same BF16-rounded weights:
/// FP32 accumulation and BF16 output rounding only, as the BF16 GEMM.
inline constexpr double kW4Gemm = 4e-3;

}  // namespace kq::testing::tol
