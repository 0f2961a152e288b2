#pragma once
// W8A8 linear layers on the GPU: FP8 E4M3 (OCP OFP8 rev 1.0) and INT8
// weights with per-output-channel scales, activations quantized per token at
// run time (dynamic), FP32/INT32 accumulation, BF16 output:
//   y[m, n] = scale_x[m] · scale_w[n] · Σ_k q_x[m, k] · q_w[n, k]
// (SmoothQuant / LLM.int8()-style W8A8 without outliers; FP8 as in
// "FP8 Formats for Deep Learning", Micikevicius et al. 2022).
// Prefill (M > 16) runs cuBLASLt; decode (M <= 16) of FP8 runs our own GEMV
// (fp8_gemv.hpp). BF16 tensors are uint16_t bits; all data pointers are device
// pointers unless a comment says host; work is enqueued on ctx.stream().
#include <cstdint>

#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/gpu_context.hpp"

namespace kq::cuda {

/// Padded device layout of an 8-bit weight W [N, K] shared by cuBLASLt and
/// the decode GEMV: codes [N_pad, K_pad] row-major with N_pad = round_up(N, 16),
/// K_pad = round_up(K, 128), zeros in the padding; scale FP32 [N_pad]
/// (1 for padding rows).
template <class Code>
struct W8Weight {
  int64_t N = 0, K = 0, N_pad = 0, K_pad = 0;
  bool per_channel = true;     ///< false: one per-tensor scale repeated in `scale`
  DeviceBuffer<Code> codes;    ///< [N_pad, K_pad]
  DeviceBuffer<float> scale;   ///< [N_pad]
  /// Bytes held on the device (codes and scales, padding included).
  size_t bytes() const { return codes.bytes() + scale.bytes(); }
};
using Fp8Weight = W8Weight<uint8_t>;  ///< codes are E4M3 bits
using Int8Weight = W8Weight<int8_t>;

/// Uploads an FP8 E4M3 weight. codes_host: E4M3 bits [N, K] row-major (host);
/// scales_host: FP32 [N] (per_channel) or [1] (per-tensor), w = scale · E4M3(code).
/// Throws InvalidArgument for N or K <= 0 or a non-finite/negative scale.
Fp8Weight upload_fp8_weight(const uint8_t* codes_host, const float* scales_host, bool per_channel, int64_t N,
                            int64_t K);

/// Uploads an INT8 weight (symmetric, w = scale · q, q in [-127, 127]); as above.
Int8Weight upload_int8_weight(const int8_t* codes_host, const float* scales_host, bool per_channel, int64_t N,
                              int64_t K);

/// Largest M that the W8A8 linears send to the decode GEMV (fp8_gemv.hpp);
/// more rows run cuBLASLt with M padded to 16.
inline constexpr int64_t kW8GemvMaxM = 16;

/// How fp8_w8a8_linear computes.
enum class Fp8Path {
  Auto,      ///< decode GEMV for M <= 16, else Fused if cuBLASLt has it, else Epilogue
  Gemv,      ///< our mma.sync E4M3 GEMV (M <= 16 only)
  Fused,     ///< cuBLASLt with per-channel x per-token scales fused (OUTER_VEC_32F)
  Epilogue,  ///< cuBLASLt FP32 output, then a scaling kernel
};

/// FP8 W8A8 linear: quantizes x (BF16 [M, ldx]) per token to E4M3, then
/// y (BF16 [M, ldy]) = x8 · W8ᵀ scaled per token and per channel.
/// Throws InvalidArgument for M <= 0, ldx < K, ldy < N, or Gemv with M > 8;
/// Unsupported when the device lacks FP8 (cc < 8.9) or cuBLASLt has no algorithm.
void fp8_w8a8_linear(GpuContext& ctx, const Fp8Weight& w, const uint16_t* x, int64_t ldx, int64_t M,
                     uint16_t* y, int64_t ldy, Fp8Path path = Fp8Path::Auto);

/// INT8 W8A8 linear: per-token INT8 activations, then for M <= 16 (decode) our
/// INT8 GEMV (int8_gemv, exact INT32 sums), else cuBLASLt IMMA with INT32
/// accumulation into a scratch [M_pad, N_pad] (M_pad = round_up(M, 16)) and
/// the dequantization kernel; both give y = BF16(acc · scale_x[m] · scale_w[n]).
/// Throws as fp8_w8a8_linear.
void int8_w8a8_linear(GpuContext& ctx, const Int8Weight& w, const uint16_t* x, int64_t ldx, int64_t M,
                      uint16_t* y, int64_t ldy);

}  // namespace kq::cuda
