#pragma once
// Device helpers shared by the decode GEMV kernels (w4a16*.cu, fp8_gemv.cu: FP8 and INT8).
//
// Warp tile: a warp owns 16 weight rows (n0 .. n0+15) and computes, with the
// tensor cores' m16n8kK shape, C[16 rows, 8 tokens] += W[16, k] · X[8, k]ᵀ.
// Lane = 4·g + t (g = lane / 4 in 0..7, t = lane % 4) holds weight rows g and
// g+8, token column g of X, and accumulators C[g][2t, 2t+1], C[g+8][2t, 2t+1].
// Since a dot product may sum its k terms in any order, each lane t maps the
// mma's k slots onto its own 32 consecutive k (a 16-byte load of 4-bit codes,
// two of 8-bit codes), the same mapping for W and X; so every lane reads
// contiguous memory and no shuffles are needed.
#include <cuda_bf16.h>

#include <cstdint>

namespace kq::cuda::gemv {

constexpr int kTileK = 128;  ///< k per warp tile: 4 lanes x 32

/// 16-byte global load that bypasses L1 allocation (weights are read once).
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

/// Word i (0..3) of a uint4; i must be a compile-time constant after unrolling.
__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}

/// Sums the 4 accumulators of each lane over the block's warps (split K) and
/// lets warp 0 write y[m, n] = BF16(scale(m, n) · acc) for m < M, n < N.
/// T: float, or int32_t for integer mma (summed exactly, converted once).
/// red: shared T [warps][4][32]. Ends with a barrier, so red can be reused.
template <int kWarps, class T, class Scale>
__device__ __forceinline__ void reduce_store(T (&c)[4], T* red, int64_t n0, int64_t N, int M,
                                             __nv_bfloat16* __restrict__ y, int64_t ldy, Scale scale) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < 4; ++i) red[(warp * 4 + i) * 32 + lane] = c[i];
  __syncthreads();
  if (warp == 0) {
    T s[4] = {0, 0, 0, 0};
#pragma unroll
    for (int w = 0; w < kWarps; ++w)
#pragma unroll
      for (int i = 0; i < 4; ++i) s[i] += red[(w * 4 + i) * 32 + lane];
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int m = 2 * t + (i & 1);
      const int64_t n = n0 + g + (i >> 1) * 8;
      if (m < M && n < N) y[int64_t(m) * ldy + n] = __float2bfloat16_rn(scale(m, n) * float(s[i]));
    }
  }
  __syncthreads();
}

}  // namespace kq::cuda::gemv
