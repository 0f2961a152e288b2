#pragma once
// Device helpers shared by the model-op kernels (model_ops_*.cu): BF16 bit
// conversions, block reductions, launch sizing.
#include <cuda_bf16.h>

#include <cstdint>

namespace kq::cuda::ops {

/// BF16 bits -> float (exact).
__device__ __forceinline__ float bf(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

/// float -> BF16 bits, round to nearest even (NaN stays NaN).
__device__ __forceinline__ uint16_t to_bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

/// The two BF16 halves of a 32-bit word (low half = lower address).
__device__ __forceinline__ float bf_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf_hi(uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }

/// Packs two floats as BF16 (a at the lower address), round to nearest even.
__device__ __forceinline__ uint32_t pack_bf2(float a, float b) {
  return uint32_t(to_bf(a)) | (uint32_t(to_bf(b)) << 16);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Sum over a block of kThreads threads; every thread gets the result.
/// red: shared float[32]. Contains barriers (call from all threads).
template <int kThreads>
__device__ __forceinline__ float block_sum(float v, float* red) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block size");
  v = warp_sum(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? red[lane] : 0.0f;
  return warp_sum(v);
}

/// Grid size for a grid-stride loop over `count` items, `threads` per block.
inline unsigned grid_for(int64_t count, int threads, int64_t max_blocks = 65535) {
  int64_t b = (count + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return unsigned(b);
}

}  // namespace kq::cuda::ops
