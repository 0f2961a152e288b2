#pragma once
// Prefill GEMM of the Linear ops whose weights are not F32 (16-bit, 4-bit,
// FP8): panels of weight rows are dequantized to F32 in per-thread scratch and
// multiplied with oneDNN's sgemm (gemm_f32_dnnl_ldy), as the FP32 Linear does.
// The dequantization is read once per panel and call, against M·N·K
// multiply-adds, so from a few tokens on the op runs at sgemm's rate.
// Baseline-compiled (dequant_gemm.cpp): the ISA kernels pass their row
// decoder as a plain function pointer, so no template is shared between files
// built with different -m flags (see scratch.hpp).
#include <cstdint>

namespace kq::cpu {

/// Writes the F32 values of weight rows [n0, n1) to out (row stride K, rows
/// n0..n1 at out[0..]); `ctx` is the caller's weight view. Called from the
/// threads of an OpenMP region, on disjoint row ranges. Never throws.
using DequantRowsFn = void (*)(const void* ctx, int64_t n0, int64_t n1, float* out);

/// y[M, N] = x[M, K] · Ŵ[N, K]ᵀ (+ bias[n] when `bias` is not null), Ŵ the
/// values `dequant` writes: panels of up to 2^22 F32 elements (16 MiB, whole
/// multiples of 16 rows) are dequantized by `threads` OpenMP threads into the
/// calling thread's kScratchCall0 slot, then multiplied with oneDNN's sgemm on
/// `threads` threads. Sums in sgemm's order (which depends on M and may depend
/// on the thread count). Never throws (aborts via std::bad_alloc on exhaustion).
void gemm_f32_dequant_panels(const float* x, int64_t M, int64_t N, int64_t K, DequantRowsFn dequant,
                             const void* ctx, const float* bias, float* y, int threads);

}  // namespace kq::cpu
