#pragma once
// Declarations of the AVX2 + FMA + F16C quantized kernels (gemm_*_avx2.cpp).
// Call them only through dispatch.hpp: they execute AVX2 instructions and
// fault on a CPU without them. Semantics: QuantKernels in dispatch.hpp.
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/linear_fp8_ref.hpp"
#include "kernels/cpu/linear_int4_ref.hpp"
#include "kernels/cpu/linear_int8_ref.hpp"
#include "kernels/cpu/linear_w16_ref.hpp"

namespace kq::cpu::avx2 {

/// Per-token INT8 quantization, bit-identical to formats::int8_quantize_dynamic.
void quantize_rows_s8(const float* x, int64_t M, int64_t K, int8_t* xq, float* xs, int threads);

/// W8A8 INT8. GEMV (M = 1): u8·s8 `vpmaddubsw` on |w| and sign(x, w), 4 rows per pass.
/// GEMM: `vpmaddwd` on INT16 weight panels (16 rows) × broadcast activation pairs, tiles of 6 tokens.
void gemm_s8s8_f32_rowwise(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y,
                           int threads);

/// Weight-only INT8: codes sign-extended and converted to F32 in registers.
void gemm_f32s8_f32_rowwise(const Int8WeightView& w, const float* x, int64_t M, float* y, int threads);

/// Per-token FP8 quantization (W8A8 FP8), bit-identical to fp8_encode + decode:
/// round-to-nearest-even on the F32 bits (normals) or on x·2^(bias−1+mbits) (subnormals).
void quantize_rows_fp8(const float* x, int64_t M, int64_t K, FP8Format f, bool saturate, float* xd, float* xs,
                       int threads);

/// Prefill thresholds: from this many tokens on, the FP8 and 4-bit kernels
/// dequantize panels of weight rows to F32 (the reference's values) and run
/// oneDNN's sgemm (dequant_gemm.hpp), which sums in its own order; below it
/// they run the GEMV / GEMM of the canonical order (simd_avx2.hpp), which are
/// faster up to 64 tokens and slower from 128 at 2048² (AVX2 and AVX-512
/// tables; docs/PERFORMANCE.md, "Prefill through sgemm").
inline constexpr int64_t kFp8SgemmMinM = 96;
inline constexpr int64_t kQ4SgemmMinM = 96;

/// FP8: codes widened to FP16 bit patterns (E5M2 exactly, E4M3 as value·2⁻⁸) and
/// converted with `vcvtph2ps`. M >= kFp8SgemmMinM: dequantized panels and sgemm.
void gemm_f32fp8_f32_rowwise(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y,
                             int threads);

/// 4-bit formats: nibbles looked up with `vpshufb` in byte planes of the
/// format's 16-value codebook, block scales applied once per block; compute
/// dtype BF16: the reference kernel. M >= kQ4SgemmMinM (both compute dtypes):
/// dequantized panels and sgemm.
void gemm_f32q4_f32_blockwise(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads);

/// 16-bit (BF16 / F16) weights, F32 activations. GEMV (M = 1): weights converted
/// in registers (BF16 shifted, F16 `vcvtph2ps`), 4 rows per pass. GEMM: panels
/// converted to F32 scratch, then oneDNN sgemm (linear_w16_avx2.cpp).
void gemm_f32w16_f32(const W16WeightView& w, const float* x, int64_t M, float* y, int threads);

/// Memory probe: Σ of p[0, n) with 256-bit loads and a 1 KB software prefetch.
uint64_t stream_read(const uint64_t* p, size_t n);

}  // namespace kq::cpu::avx2
