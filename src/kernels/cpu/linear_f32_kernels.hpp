#pragma once
// FP32 GEMM/GEMV kernels behind make_linear_f32 (exposed for tests and benchmarks).
#include <cstdint>

namespace kq::cpu {

/// y[M, N] = x[M, K] · W[N, K]ᵀ through oneDNN's dnnl_sgemm (row-major), with
/// `threads` OpenMP threads (0 = OpenMP default). No bias. Never throws.
void gemm_f32_dnnl(const float* x, int64_t M, const float* w, int64_t N, int64_t K, float* y, int threads);

/// As gemm_f32_dnnl, writing y's rows with a stride of `ldy` (>= N) floats:
/// the N output columns of a wider y (a panel of a larger weight). Never throws.
void gemm_f32_dnnl_ldy(const float* x, int64_t M, const float* w, int64_t N, int64_t K, float* y, int64_t ldy,
                       int threads);

/// y[N] = W[N, K] · x[K] (GEMV, the decode path): AVX2+FMA, 4 rows of W per
/// pass so x is loaded once per 4 rows, rows split over `threads` threads.
/// Requires a CPU with AVX2 and FMA (check cpu_features()). Never throws.
void gemv_f32_avx2(const float* w, int64_t N, int64_t K, const float* x, float* y, int threads);

/// true when gemv_f32_avx2 may run on this CPU.
bool gemv_f32_avx2_supported();

}  // namespace kq::cpu
