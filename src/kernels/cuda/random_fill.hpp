#pragma once
// Device-side pseudo-random fills for benchmarks (large operands generated in
// place, never zeros): a counter-based hash (SplitMix64 finalizer) of
// (seed, index), so results do not depend on the launch configuration.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kq::cuda {

/// BF16 bits, approximately N(0, sigma²) (sum of four uniforms), never zero.
void fill_random_bf16(uint16_t* p, size_t n, uint64_t seed, float sigma, cudaStream_t stream);
/// Finite, non-zero E4M3 codes (never NaN), uniform over the codes.
void fill_random_e4m3(uint8_t* p, size_t n, uint64_t seed, cudaStream_t stream);
/// INT8 values uniform in [-127, 127].
void fill_random_int8(int8_t* p, size_t n, uint64_t seed, cudaStream_t stream);
/// Bytes uniform in [0, 255] (e.g. two random 4-bit codes per byte).
void fill_random_u8(uint8_t* p, size_t n, uint64_t seed, cudaStream_t stream);
/// BF16 bits uniform in [lo, hi) (e.g. positive block scales).
void fill_uniform_bf16(uint16_t* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t stream);
/// FP32 uniform in [lo, hi).
void fill_uniform_f32(float* p, size_t n, uint64_t seed, float lo, float hi, cudaStream_t stream);

}  // namespace kq::cuda
