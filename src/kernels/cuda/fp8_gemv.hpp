#pragma once
// W8A8 decode GEMVs (M <= 16 tokens) on the tensor cores through mma.sync
// m16n8k32: FP8 E4M3 (cc >= 8.9, FP32 accumulators) and INT8 (cc >= 8.0,
// exact INT32 accumulators). One warp owns 16 weight rows and a slice of K,
// reads each weight byte once with 16-byte loads, and the per-channel x
// per-token scales are applied to the accumulators. One kernel template
// serves both (fp8_gemv.cu).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace kq::cuda {

/// y[m, n] = BF16(scale_x[m] · scale_w[n] · Σ_k x8[m, k] · w8[n, k]) for m < M, n < N.
/// x8: E4M3 [M, K_pad]; w8: E4M3 [>= N, K_pad] rows (16-byte aligned, K_pad a
/// multiple of 128, zeros beyond K in both); scale_x [M], scale_w [N] FP32;
/// y: BF16 bits [M, ldy]. 1 <= M <= 16 (two halves of 8 tokens above 8). Launch errors throw kq::Error.
void fp8_gemv(const uint8_t* x8, const float* scale_x, const uint8_t* w8, const float* scale_w, int64_t K_pad,
              uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream);

/// y[m, n] = BF16(scale_x[m] · scale_w[n] · Σ_k x8[m, k] · w8[n, k]) with the
/// sum over INT8 codes computed exactly in INT32 (as cuBLASLt's IMMA GEMM
/// does), then converted to FP32 once. Layouts and limits as fp8_gemv.
void int8_gemv(const int8_t* x8, const float* scale_x, const int8_t* w8, const float* scale_w, int64_t K_pad,
               uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream);

}  // namespace kq::cuda
