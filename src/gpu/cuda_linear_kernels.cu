// Small device kernels of the GPU Linear ops: bias add and fills.
#include <cuda_bf16.h>

#include "gpu/cuda_linear_kernels.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"

namespace kq::gpu::detail {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float bf16_to_float(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }
__device__ __forceinline__ uint16_t float_to_bf16(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

/// Grid: x covers N in blocks of kThreads, y strides over rows.
__global__ void __launch_bounds__(kThreads)
    add_bias_kernel(uint16_t* __restrict__ y, int64_t ldy, int64_t M, int64_t N, const float* __restrict__ bias) {
  kq::cuda::pdl_launch_dependents();
  kq::cuda::pdl_wait();
  const int64_t n = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (n >= N) return;
  const float b = bias[n];
  for (int64_t m = blockIdx.y; m < M; m += gridDim.y) {
    uint16_t* p = y + m * ldy + n;
    *p = float_to_bf16(bf16_to_float(*p) + b);
  }
}

__global__ void __launch_bounds__(kThreads) fill_u16_kernel(uint16_t* __restrict__ p, size_t n, uint16_t v) {
  for (size_t i = size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += size_t(gridDim.x) * kThreads) p[i] = v;
}

__global__ void __launch_bounds__(kThreads) scale_bf16_kernel(uint16_t* __restrict__ p, size_t n, float f) {
  for (size_t i = size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += size_t(gridDim.x) * kThreads)
    p[i] = float_to_bf16(bf16_to_float(p[i]) * f);
}

unsigned grid_for(size_t n) {
  const size_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? blocks : 65536);
}

}  // namespace

void add_bias_bf16(uint16_t* y, int64_t ldy, int64_t M, int64_t N, const float* bias, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid(unsigned((N + kThreads - 1) / kThreads), unsigned(M < 65535 ? M : 65535));
  cuda::launch_pdl(add_bias_kernel, grid, dim3(kThreads), 0, stream, y, ldy, M, N, bias);
}

void fill_u16(uint16_t* p, size_t n, uint16_t value, cudaStream_t stream) {
  if (n == 0) return;
  fill_u16_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, n, value);
  KQ_CUDA_CHECK_LAUNCH();
}

void scale_bf16(uint16_t* p, size_t n, float factor, cudaStream_t stream) {
  if (n == 0) return;
  scale_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(p, n, factor);
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace kq::gpu::detail
