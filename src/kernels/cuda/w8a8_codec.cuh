#pragma once
// Device side of the per-token W8A8 activation codes (w8a8_kernels.hpp):
// one place for the FP8 E4M3 and INT8 encodings and the row absmax, shared
// by the stand-alone quantizers (w8a8_kernels.cu) and the kernels that
// quantize the activations they produce (the decode step's RMSNorm and
// SwiGLU, model_ops_norm.cu / model_ops_swiglu_quant.cu), so both give the
// same codes and scales bit for bit.
#include <cuda_fp8.h>

#include <cstdint>

namespace kq::cuda {

/// E4M3 (OCP OFP8 rev 1.0): round to nearest even, saturate to ±448.
struct Fp8Codec {
  static constexpr float kMax = 448.0f;
  using Out = uint8_t;
  __device__ static Out encode(float v) { return Out(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3)); }
};

/// Symmetric INT8: round half to even, clamp to ±127.
struct Int8Codec {
  static constexpr float kMax = 127.0f;
  using Out = int8_t;
  __device__ static Out encode(float v) {
    const int q = __float2int_rn(v);
    return Out(q > 127 ? 127 : (q < -127 ? -127 : q));
  }
};

/// The per-token scale from the row's absmax: absmax / kMax, or 1 for an
/// all-zero row (or an underflow), as the CPU formats.
template <class Codec>
__device__ __forceinline__ float row_scale(float amax) {
  const float s = amax / Codec::kMax;
  return s > 0.0f ? s : 1.0f;
}

/// Code of BF16 value v (as float) at scale s, as a byte.
template <class Codec>
__device__ __forceinline__ uint32_t code_byte(float v, float s) {
  return uint8_t(Codec::encode(__fdiv_rn(v, s)));
}

/// Block-wide max of non-negative values (kThreads threads, every thread
/// gets it). red: shared float[32]. Contains barriers.
template <int kThreads>
__device__ __forceinline__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // red may still be read by a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? red[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace kq::cuda
