#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"
#include "kernels/cuda/w8a8_codec.cuh"
#include "kernels/cuda/w8a8_kernels.hpp"

namespace kq::cuda {
namespace {

constexpr int kQuantThreads = 256;

__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

/// One block per row of q (M_pad rows).
template <class Codec>
__global__ void __launch_bounds__(kQuantThreads)
    quantize_rows_kernel(const uint16_t* __restrict__ x, int64_t ldx, int64_t M, int64_t K,
                         typename Codec::Out* __restrict__ q, int64_t ldq, float* __restrict__ scale) {
  __shared__ float red[kQuantThreads / 32];
  pdl_launch_dependents();
  pdl_wait();
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
  amax = block_max<kQuantThreads>(amax, red);
  const float s = row_scale<Codec>(amax);
  for (int64_t k = threadIdx.x; k < ldq; k += kQuantThreads) {
    typename Codec::Out v = 0;
    if (k < K) v = Codec::encode(__fdiv_rn(bf16_bits_to_float(xrow[k]), s));
    qrow[k] = v;
  }
  if (threadIdx.x == 0) scale[m] = s;
}

constexpr int kRegThreads = 512;

/// The same for rows held in registers: 8 BF16 per 16-byte load, K <= kIt·8·512,
/// every load issued before the absmax, codes stored 8 at a time. Needs K % 8
/// == 0, 16-byte-aligned x rows (ldx % 8 == 0) and 8-byte-aligned q rows.
/// Same codes and scales as quantize_rows_kernel (same operations per element).
template <class Codec, int kIt>
__global__ void __launch_bounds__(kRegThreads)
    quantize_rows_reg_kernel(const uint16_t* __restrict__ x, int64_t ldx, int64_t M, int64_t K,
                             typename Codec::Out* __restrict__ q, int64_t ldq, float* __restrict__ scale) {
  __shared__ float red[kRegThreads / 32];
  pdl_launch_dependents();
  pdl_wait();
  const int64_t m = blockIdx.x;
  typename Codec::Out* qrow = q + m * ldq;
  const int n8 = int(K / 8), nq8 = int(ldq / 8);
  if (m >= M) {
    for (int i = threadIdx.x; i < nq8; i += kRegThreads) reinterpret_cast<uint2*>(qrow)[i] = make_uint2(0, 0);
    if (threadIdx.x == 0) scale[m] = 0.0f;
    return;
  }
  const uint4* xrow = reinterpret_cast<const uint4*>(x + m * ldx);
  uint4 v[kIt];
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kRegThreads;
    v[j] = i < n8 ? __ldg(xrow + i) : make_uint4(0, 0, 0, 0);
  }
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const uint32_t w4[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
#pragma unroll
    for (int e = 0; e < 4; ++e)
      amax = fmaxf(amax, fmaxf(fabsf(__uint_as_float(w4[e] << 16)), fabsf(__uint_as_float(w4[e] & 0xFFFF0000u))));
  }
  amax = block_max<kRegThreads>(amax, red);
  const float s = row_scale<Codec>(amax);
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kRegThreads;
    if (i < n8) {
      uint32_t packed[2] = {0, 0};
      const uint32_t w4[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const uint32_t w = w4[e / 2];
        const float f = (e & 1) ? __uint_as_float(w & 0xFFFF0000u) : __uint_as_float(w << 16);
        packed[e / 4] |= code_byte<Codec>(f, s) << (8 * (e % 4));
      }
      reinterpret_cast<uint2*>(qrow)[i] = make_uint2(packed[0], packed[1]);
    }
  }
  for (int i = n8 + int(threadIdx.x); i < nq8; i += kRegThreads) reinterpret_cast<uint2*>(qrow)[i] = make_uint2(0, 0);
  if (threadIdx.x == 0) scale[m] = s;
}

/// Launches the register kernel when the shapes allow it (returns false otherwise).
template <class Codec>
bool launch_quantize_reg(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, typename Codec::Out* q, int64_t ldq,
                         int64_t M_pad, float* scale, cudaStream_t stream) {
  const bool ok = K % 8 == 0 && ldx % 8 == 0 && ldq % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(q) % 8 == 0 && K <= 8 * 8 * kRegThreads;
  if (!ok) return false;
  const unsigned grid = unsigned(M_pad);
  if (K <= 8 * kRegThreads)
    launch_pdl(quantize_rows_reg_kernel<Codec, 1>, dim3(grid), dim3(kRegThreads), 0, stream, x, ldx, M, K, q,
               ldq, scale);
  else if (K <= 2 * 8 * kRegThreads)
    launch_pdl(quantize_rows_reg_kernel<Codec, 2>, dim3(grid), dim3(kRegThreads), 0, stream, x, ldx, M, K, q,
               ldq, scale);
  else if (K <= 4 * 8 * kRegThreads)
    launch_pdl(quantize_rows_reg_kernel<Codec, 4>, dim3(grid), dim3(kRegThreads), 0, stream, x, ldx, M, K, q,
               ldq, scale);
  else
    launch_pdl(quantize_rows_reg_kernel<Codec, 8>, dim3(grid), dim3(kRegThreads), 0, stream, x, ldx, M, K, q,
               ldq, scale);
  KQ_CUDA_CHECK_LAUNCH();
  return true;
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
  if (launch_quantize_reg<Fp8Codec>(x, ldx, M, K, q, ldq, M_pad, scale, stream)) return;
  launch_pdl(quantize_rows_kernel<Fp8Codec>, dim3(unsigned(M_pad)), dim3(kQuantThreads), 0, stream, x, ldx, M,
             K, q, ldq, scale);
  KQ_CUDA_CHECK_LAUNCH();
}

void quantize_rows_int8(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, int8_t* q, int64_t ldq,
                        int64_t M_pad, float* scale, cudaStream_t stream) {
  if (M_pad <= 0) return;
  if (launch_quantize_reg<Int8Codec>(x, ldx, M, K, q, ldq, M_pad, scale, stream)) return;
  launch_pdl(quantize_rows_kernel<Int8Codec>, dim3(unsigned(M_pad)), dim3(kQuantThreads), 0, stream, x, ldx,
             M, K, q, ldq, scale);
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
