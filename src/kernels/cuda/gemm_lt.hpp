#pragma once
// GEMMs through cuBLASLt: y[M, N] = x[M, K] · W[N, K]ᵀ with row-major x, W, y
// (nn.Linear layout), i.e. cuBLASLt's "TN" form, the one FP8 requires on Hopper.
// Element types on the host side of these signatures: BF16 as uint16_t bits,
// FP8 E4M3 (OCP OFP8) as uint8_t bits. All pointers are device pointers; work
// is enqueued on ctx.stream(). Throws kq::Unsupported when cuBLASLt has no
// algorithm for the shapes/alignments, kq::InvalidArgument for bad sizes.
#include <cstdint>

#include "kernels/cuda/gpu_context.hpp"

namespace kq::cuda {

/// BF16 baseline: y = x·Wᵀ, BF16 operands and output, FP32 accumulation.
/// ldx, ldw, ldy: row strides in elements (>= K, K, N).
void gemm_bf16(GpuContext& ctx, const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw,
               uint16_t* y, int64_t ldy, int64_t M, int64_t N, int64_t K);

/// How an FP8 GEMM applies its scales.
enum class Fp8Scaling {
  PerTensor,  ///< y = scale_w[0] · scale_x[0] · (x8·W8ᵀ): cuBLASLt A/B scale pointers
  Rowwise,    ///< y[m, n] = scale_x[m] · scale_w[n] · (x8·W8ᵀ)[m, n]: OUTER_VEC_32F scale vectors
};

/// FP8 E4M3 W8A8: x8 [M, ldx] and W8 [N, ldw] E4M3 codes, FP32 accumulation,
/// BF16 output y [M, ldy]. scale_w / scale_x: device FP32, one value each
/// (PerTensor) or N / M values (Rowwise). cuBLASLt on Hopper wants K, ldx,
/// ldw multiples of 16 and 16-byte aligned pointers (fp8_w8a8.hpp pads for you).
void gemm_fp8(GpuContext& ctx, const uint8_t* x8, int64_t ldx, const uint8_t* w8, int64_t ldw,
              uint16_t* y, int64_t ldy, int64_t M, int64_t N, int64_t K, Fp8Scaling scaling,
              const float* scale_w, const float* scale_x);

/// true when cuBLASLt has a fused Rowwise FP8 algorithm for this GEMM (cuBLASLt >= 12.9 on cc 9.0).
bool gemm_fp8_rowwise_supported(GpuContext& ctx, const uint8_t* x8, int64_t ldx, const uint8_t* w8,
                                int64_t ldw, uint16_t* y, int64_t ldy, int64_t M, int64_t N, int64_t K,
                                const float* scale_w, const float* scale_x);

/// FP8 E4M3 GEMM with unscaled FP32 output d [M, ldd] (for epilogue kernels).
void gemm_fp8_f32(GpuContext& ctx, const uint8_t* x8, int64_t ldx, const uint8_t* w8, int64_t ldw,
                  float* d, int64_t ldd, int64_t M, int64_t N, int64_t K);

/// INT8 W8A8: d [M, ldd] INT32 = x8 [M, ldx] · W8 [N, ldw]ᵀ with INT32
/// accumulation on the integer tensor cores (IMMA). Wants K, N, ldx, ldw, ldd
/// multiples of 16 and 16-byte aligned pointers (int8_w8a8.hpp pads for you).
void gemm_int8(GpuContext& ctx, const int8_t* x8, int64_t ldx, const int8_t* w8, int64_t ldw,
               int32_t* d, int64_t ldd, int64_t M, int64_t N, int64_t K);

}  // namespace kq::cuda
