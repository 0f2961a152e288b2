#pragma once
// Per-token activation codecs of the W8A8 paths (FP8 E4M3, INT8) and the
// block reduction they use: shared by the quantizer kernels (w8a8_kernels.cu)
// and the decode GEMVs that quantize x themselves (fp8_gemv.cu), so both give
// the same codes and scales: s = absmax / kMax (1 for an all-zero row),
// code = encode(x / s) with IEEE division.
#include <cuda_fp8.h>

#include <cstdint>

namespace kq::cuda::w8codec {

/// Block-wide max of non-negative values (kThreads threads).
template <int kThreads>
__device__ __forceinline__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

struct Fp8Codec {
  static constexpr float kMax = 448.0f;
  using Out = uint8_t;
  __device__ static Out encode(float v) {
    return Out(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
  }
};

struct Int8Codec {
  static constexpr float kMax = 127.0f;
  using Out = int8_t;
  __device__ static Out encode(float v) {
    const int q = __float2int_rn(v);
    return Out(q > 127 ? 127 : (q < -127 ? -127 : q));
  }
};

}  // namespace kq::cuda::w8codec
