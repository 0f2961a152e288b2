#pragma once
// Kernel launchers behind w4a16.hpp (arguments already validated by w4a16.cpp).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/w4a16.hpp"

namespace kq::cuda {

/// Launches the decode GEMV; 1 <= M <= 16, ldx >= K, ldy >= N.
void w4a16_gemv_launch(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                       cudaStream_t stream, W4GemvTuning tuning);

/// Launches the streaming decode GEMV for M = 1 (w4a16_gemv_stream.cu); returns
/// false, launching nothing, where a block's shared memory cannot hold x.
/// up != nullptr: x is SwiGLU's gate and the GEMV's input BF16(silu(x) · up).
/// x_scale != nullptr (FP32 [K]): the input is BF16(that · x_scale).
/// norm != nullptr: x and up are unused, the input is the RMSNorm of
/// w4a16_gemv_rms_norm; false also where its vector path does not apply.
bool w4a16_gemv_stream_launch(const W4Weight& w, const uint16_t* x, uint16_t* y, cudaStream_t stream,
                              W4GemvTuning tuning, const uint16_t* up = nullptr, const float* x_scale = nullptr,
                              const W4RmsNormInput* norm = nullptr);

/// Launches the small-batch decode GEMV (w4a16_gemv_batch.cu: one block per
/// SM, x tiles shared by up to three 16-row groups) for 1 <= M <= 16; returns
/// false, launching nothing, where its shared memory does not fit the device.
bool w4a16_gemv_batch_launch(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                             int64_t ldy, cudaStream_t stream, W4GemvTuning tuning);

/// Launches the fused prefill GEMM; x rows 16-byte aligned (ldx % 8 == 0), ldy >= N.
void w4a16_gemm_launch(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                       cudaStream_t stream);

/// Launches the BF16 dequantization into out [N, ldo], ldo >= K (w.x_scale applied).
void w4_dequantize_launch(const W4Weight& w, uint16_t* out, int64_t ldo, cudaStream_t stream);

/// out[m, k] = BF16(x[m, k] · scale[k]) for m < M, k < K (w4a16_input_scale.cu);
/// x: BF16 [M, ldx], out: BF16 [M, ldo], scale: FP32 [K].
void w4_scale_input_launch(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, const float* scale, uint16_t* out,
                           int64_t ldo, cudaStream_t stream);

}  // namespace kq::cuda
