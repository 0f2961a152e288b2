#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/random_fill.hpp"

namespace kq::cuda {
namespace {

__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ float unit(uint64_t h, int part) {  // [0, 1) from 16 bits of h
  return float((h >> (16 * part)) & 0xFFFFu) * (1.0f / 65536.0f);
}

template <class F>
__global__ void fill_kernel(size_t n, uint64_t seed, F f) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    f(i, mix(seed * 0x100000001b3ull ^ mix(i)));
}

template <class F>
void launch(size_t n, uint64_t seed, cudaStream_t stream, F f) {
  if (n == 0) return;
  const unsigned blocks = unsigned(std::min<size_t>((n + 255) / 256, 65535));
  fill_kernel<<<blocks, 256, 0, stream>>>(n, seed, f);
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace

void fill_random_bf16(uint16_t* p, size_t n, uint64_t seed, float sigma, cudaStream_t stream) {
  launch(n, seed, stream, [=] __device__(size_t i, uint64_t h) {
    // Irwin-Hall(4) - 2 has variance 1/3.
    float v = (unit(h, 0) + unit(h, 1) + unit(h, 2) + unit(h, 3) - 2.0f) * 1.7320508f * sigma;
    if (v == 0.0f) v = sigma * 1e-3f;
    const __nv_bfloat16 b = __float2bfloat16_rn(v);
    p[i] = *reinterpret_cast<const uint16_t*>(&b);
  });
}

void fill_random_e4m3(uint8_t* p, size_t n, uint64_t seed, cudaStream_t stream) {
  launch(n, seed, stream, [=] __device__(size_t i, uint64_t h) {
    uint32_t c = uint32_t(h & 0xFFu);
    if ((c & 0x7Fu) == 0x7Fu || (c & 0x7Fu) == 0u) c = (c & 0x80u) | 0x38u;  // NaN / zero -> ±1
    p[i] = uint8_t(c);
  });
}

void fill_random_int8(int8_t* p, size_t n, uint64_t seed, cudaStream_t stream) {
  launch(n, seed, stream, [=] __device__(size_t i, uint64_t h) { p[i] = int8_t(int(h % 255u) - 127); });
}

void fill_random_u8(uint8_t* p, size_t n, uint64_t seed, cudaStream_t stream) {
  launch(n, seed, stream, [=] __device__(size_t i, uint64_t h) { p[i] = uint8_t(h & 0xFFu); });
}

void fill_uniform_bf16(uint16_t* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t stream) {
  launch(n, seed, stream, [=] __device__(size_t i, uint64_t h) {
    const __nv_bfloat16 b = __float2bfloat16_rn(lo + (hi - lo) * unit(h, 0));
    p[i] = *reinterpret_cast<const uint16_t*>(&b);
  });
}

void fill_uniform_f32(float* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t stream) {
  launch(n, seed, stream, [=] __device__(size_t i, uint64_t h) { p[i] = lo + (hi - lo) * unit(h, 0); });
}

}  // namespace kq::cuda
