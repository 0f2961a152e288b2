// AVX2 streaming-read probe (QuantKernels::stream_read): the bandwidth
// reference the GEMV benchmarks are compared with, read the way the kernels
// read weights (256-bit loads, software prefetch ahead).
#include <immintrin.h>

#include "kernels/cpu/quant_kernels_avx2.hpp"

namespace kq::cpu::avx2 {

uint64_t stream_read(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p + i) + 1024), _MM_HINT_T0);
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(a0, a1));
  uint64_t s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace kq::cpu::avx2
