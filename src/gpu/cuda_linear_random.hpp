#pragma once
// Random-weight GPU Linear ops for benchmarks of large shapes (e.g. the
// Llama-7B shape: 6.7 B parameters, whose F32 CPU copy would take 27 GB):
// weights are generated one matrix at a time, directly in the device layout
// whenever the shape allows.
#include <cstdint>
#include <memory>
#include <string>

#include "gpu/cuda_linear.hpp"
#include "kq/quantize.hpp"

namespace kq::gpu {

/// A CudaLinear [N, K] of format `spec` holding random but valid weights of
/// root-mean-square about `sigma`, in exactly the device layout to_cuda gives
/// a CPU op of that spec (same kernels, same weight_bytes()), no bias.
/// Deterministic for a given (spec, N, K, seed, sigma, device).
///  * Fast path (the shape needs no padding: N % 16 == 0 and K a multiple of
///    the layout's K tile, 128 or the 4-bit block if larger): codes and scales
///    are drawn on the device (counter-based hash, random_fill.hpp): INT8 codes
///    uniform in [-127, 127], E4M3 codes uniform over the finite non-zero
///    codes, 4-bit codes uniform, BF16 weights ~N(0, sigma²); per-channel
///    (or per-block) scales uniform in ±10 % (±50 % for 4-bit blocks) around the
///    value giving rms sigma; INT4 asymmetric zero points 8; AWQ modes add input
///    scales 2^u, u uniform in [-1, 1] (host RNG seeded by K alone, so linears of
///    one K share them, as a group's members do). Milliseconds per matrix.
///  * Otherwise: an F32 N(0, sigma²) matrix drawn on the host (OpenMP over rows),
///    quantized with quantize_linear (round to nearest; AWQ: W · diag(s) with s = 1 /
///    the input scales above, as an AwqLinear) and converted by to_cuda.
/// Throws InvalidArgument for N, K < 1, sigma <= 0 or an invalid spec, kq::Error
/// when the device fails (e.g. out of memory).
std::unique_ptr<CudaLinear> random_cuda_linear(const QuantSpec& spec, int64_t N, int64_t K, uint64_t seed,
                                               cuda::GpuContext& ctx, float sigma = 0.02f);

/// The unquantized case: a BF16 weight ~N(0, sigma²) (format() "bf16"), as
/// to_cuda gives an FP32 op. Same fast path / fallback and errors as above.
std::unique_ptr<CudaLinear> random_cuda_linear_bf16(int64_t N, int64_t K, uint64_t seed, cuda::GpuContext& ctx,
                                                    float sigma = 0.02f);

/// By mode name: "bf16", "f32" or "fp32" → random_cuda_linear_bf16, anything
/// else → random_cuda_linear(parse_quant_mode(mode), ...). Throws
/// InvalidArgument for an unknown mode (parse_quant_mode's message).
std::unique_ptr<CudaLinear> random_cuda_linear(const std::string& mode, int64_t N, int64_t K, uint64_t seed,
                                               cuda::GpuContext& ctx, float sigma = 0.02f);

}  // namespace kq::gpu
