// x ⊙ x_scale for the W4A16 paths that cannot apply a weight's input scales
// (W4Weight::x_scale, AWQ's 1 / s) themselves: the batch and split-K decode
// GEMVs and the fused prefill GEMM read x straight into shared memory.
#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"
#include "kernels/cuda/w4a16_launch.hpp"

namespace kq::cuda {
namespace {

constexpr int kThreads = 256;

/// Grid: x covers K in blocks of kThreads, y strides over rows.
__global__ void __launch_bounds__(kThreads)
    scale_input_kernel(const uint16_t* __restrict__ x, int64_t ldx, int64_t M, int64_t K,
                       const float* __restrict__ scale, uint16_t* __restrict__ out, int64_t ldo) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t k = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (k >= K) return;
  const float s = scale[k];
  for (int64_t m = blockIdx.y; m < M; m += gridDim.y) {
    const float v = __uint_as_float(uint32_t(x[m * ldx + k]) << 16) * s;
    out[m * ldo + k] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
  }
}

}  // namespace

void w4_scale_input_launch(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, const float* scale, uint16_t* out,
                           int64_t ldo, cudaStream_t stream) {
  if (M <= 0 || K <= 0) return;
  const dim3 grid(unsigned((K + kThreads - 1) / kThreads), unsigned(std::min<int64_t>(M, 65535)));
  launch_pdl(scale_input_kernel, grid, dim3(kThreads), 0, stream, x, ldx, M, K, scale, out, ldo);
}

}  // namespace kq::cuda
