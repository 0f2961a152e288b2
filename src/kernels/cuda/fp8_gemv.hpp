#pragma once
// W8A8 decode GEMVs (M <= 8 tokens) on the tensor cores through mma.sync
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
/// y: BF16 bits [M, ldy]. 1 <= M <= 8. Launch errors throw kq::Error.
void fp8_gemv(const uint8_t* x8, const float* scale_x, const uint8_t* w8, const float* scale_w, int64_t K_pad,
              uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream);

/// y[m, n] = BF16(scale_x[m] · scale_w[n] · Σ_k x8[m, k] · w8[n, k]) with the
/// sum over INT8 codes computed exactly in INT32 (as cuBLASLt's IMMA GEMM
/// does), then converted to FP32 once. Layouts and limits as fp8_gemv.
void int8_gemv(const int8_t* x8, const float* scale_x, const int8_t* w8, const float* scale_w, int64_t K_pad,
               uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream);

/// Largest K_pad the *_quantize_x GEMVs take: each block holds x in shared
/// memory as BF16 and as codes (3·K_pad bytes <= 48 KB, no opt-in needed).
inline constexpr int64_t kFusedQuantMaxKPad = 16 * 1024;

/// Decode of one token with its per-token quantization fused: every block
/// quantizes x (BF16 [K]) itself, with the codes and scale quantize_rows_fp8 /
/// quantize_rows_int8 give, then computes y [N] as fp8_gemv / int8_gemv. One
/// launch instead of two. K_pad <= kFusedQuantMaxKPad (the caller checks).
void fp8_gemv_quantize_x(const uint16_t* x, int64_t K, const uint8_t* w8, const float* scale_w, int64_t K_pad,
                         uint16_t* y, int64_t N, cudaStream_t stream);
void int8_gemv_quantize_x(const uint16_t* x, int64_t K, const int8_t* w8, const float* scale_w, int64_t K_pad,
                          uint16_t* y, int64_t N, cudaStream_t stream);

}  // namespace kq::cuda
