#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/w8a8_kernels.hpp"

namespace kq::cuda {
namespace {

constexpr int kQuantThreads = 256;

__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

/// Block-wide max of non-negative values (kQuantThreads threads).
__device__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kQuantThreads / 32 ? red[lane] : 0.0f;
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

/// One block per row of q (M_pad rows).
template <class Codec>
__global__ void __launch_bounds__(kQuantThreads)
    quantize_rows_kernel(const uint16_t* __restrict__ x, int64_t ldx, int64_t M, int64_t K,
                         typename Codec::Out* __restrict__ q, int64_t ldq, float* __restrict__ scale) {
  __shared__ float red[kQuantThreads / 32];
  const int64_t m = blockIdx.x;
  typename Codec::Out* qrow = q + m * ldq;
  if (m >= M) {
    for (int64_t k = threadIdx.x; k < ldq; k += kQuantThreads) qrow[k] = 0;
    if (threadIdx.x == 0) scale[m] = 0.0f;
    return;
  }
  const uint16_t* xrow = x + m * ldx;
  float amax = 0.0f;
  for (int64_t k = threadIdx.x; k < K; k += kQuantThreads) amax = fmaxf(amax, fabsf(bf16_bits_to_float(xrow[k])));
  amax = block_max(amax, red);
  float s = amax / Codec::kMax;
  if (!(s > 0.0f)) s = 1.0f;  // all-zero row (or underflow): scale 1, as the CPU formats
  for (int64_t k = threadIdx.x; k < ldq; k += kQuantThreads) {
    typename Codec::Out v = 0;
    if (k < K) v = Codec::encode(__fdiv_rn(bf16_bits_to_float(xrow[k]), s));
    qrow[k] = v;
  }
  if (threadIdx.x == 0) scale[m] = s;
}

constexpr int kEpiThreads = 256;
constexpr int kEpiPerThread = 4;

template <class T>
__global__ void __launch_bounds__(kEpiThreads)
    scale_rows_cols_kernel(const T* __restrict__ d, int64_t ldd, const float* __restrict__ sx,
                           const float* __restrict__ sw, __nv_bfloat16* __restrict__ y, int64_t ldy, int64_t N) {
  const int64_t m = blockIdx.x;
  const float s = sx[m];
  const int64_t n0 = int64_t(blockIdx.y) * kEpiThreads * kEpiPerThread + threadIdx.x;
#pragma unroll
  for (int i = 0; i < kEpiPerThread; ++i) {
    const int64_t n = n0 + int64_t(i) * kEpiThreads;
    if (n < N) y[m * ldy + n] = __float2bfloat16_rn(float(d[m * ldd + n]) * s * sw[n]);
  }
}

template <class T>
void launch_scale(const T* d, int64_t ldd, const float* sx, const float* sw, uint16_t* y, int64_t ldy, int64_t M,
                  int64_t N, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const dim3 grid(unsigned(M), unsigned((N + kEpiThreads * kEpiPerThread - 1) / (kEpiThreads * kEpiPerThread)));
  scale_rows_cols_kernel<T><<<grid, kEpiThreads, 0, stream>>>(d, ldd, sx, sw,
                                                              reinterpret_cast<__nv_bfloat16*>(y), ldy, N);
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace

void quantize_rows_fp8(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, uint8_t* q, int64_t ldq,
                       int64_t M_pad, float* scale, cudaStream_t stream) {
  if (M_pad <= 0) return;
  quantize_rows_kernel<Fp8Codec><<<unsigned(M_pad), kQuantThreads, 0, stream>>>(x, ldx, M, K, q, ldq, scale);
  KQ_CUDA_CHECK_LAUNCH();
}

void quantize_rows_int8(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, int8_t* q, int64_t ldq,
                        int64_t M_pad, float* scale, cudaStream_t stream) {
  if (M_pad <= 0) return;
  quantize_rows_kernel<Int8Codec><<<unsigned(M_pad), kQuantThreads, 0, stream>>>(x, ldx, M, K, q, ldq, scale);
  KQ_CUDA_CHECK_LAUNCH();
}

void scale_rows_cols_to_bf16(const float* d, int64_t ldd, const float* sx, const float* sw, uint16_t* y,
                             int64_t ldy, int64_t M, int64_t N, cudaStream_t stream) {
  launch_scale(d, ldd, sx, sw, y, ldy, M, N, stream);
}

void scale_rows_cols_to_bf16(const int32_t* d, int64_t ldd, const float* sx, const float* sw, uint16_t* y,
                             int64_t ldy, int64_t M, int64_t N, cudaStream_t stream) {
  launch_scale(d, ldd, sx, sw, y, ldy, M, N, stream);
}

}  // namespace kq::cuda
