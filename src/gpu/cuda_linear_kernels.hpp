#pragma once
// Small device kernels of the GPU Linear ops (src/gpu/cuda_linear_kernels.cu).
// C++17 and CUDA-runtime-only so the .cu file can include it. All pointers are
// device pointers; work is enqueued on `stream`; launch errors throw kq::Error.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kq::gpu::detail {

/// y[m, n] = BF16(float(y[m, n]) + bias[n]) for m < M, n < N; y: BF16 bits
/// [M, ldy]; bias: F32 [N]. Nothing happens for M or N <= 0.
void add_bias_bf16(uint16_t* y, int64_t ldy, int64_t M, int64_t N, const float* bias, cudaStream_t stream);

/// p[i] = value for i < n (e.g. a constant BF16 zero point).
void fill_u16(uint16_t* p, size_t n, uint16_t value, cudaStream_t stream);

/// Rescales BF16 values in place: p[i] = BF16(float(p[i]) · factor), i < n.
void scale_bf16(uint16_t* p, size_t n, float factor, cudaStream_t stream);

}  // namespace kq::gpu::detail
