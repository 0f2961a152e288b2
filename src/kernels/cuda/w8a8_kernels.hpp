#pragma once
// Elementwise kernels around the W8A8 GEMMs: dynamic per-token activation
// quantization (FP8 E4M3 and INT8) and the dequantization epilogue that
// applies per-token x per-output-channel scales. Device pointers; work is
// enqueued on `stream`; launch errors throw kq::Error.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace kq::cuda {

/// Per-token FP8 E4M3 quantization (OCP OFP8 rev 1.0) of BF16 activations:
///   scale[m] = absmax(x[m, 0:K]) / 448,  q[m, k] = E4M3(x[m, k] / scale[m])
/// rounded to nearest even, saturating to ±448; when absmax / 448 is 0 (a row
/// of zeros) the scale is 1, as in src/formats/fp8.hpp. x: BF16 bits [M, ldx];
/// q: [M_pad, ldq] with columns [K, ldq) and rows [M, M_pad) set to 0;
/// scale: FP32 [M_pad] (0 for padding rows).
void quantize_rows_fp8(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, uint8_t* q, int64_t ldq,
                       int64_t M_pad, float* scale, cudaStream_t stream);

/// Per-token symmetric INT8 quantization of BF16 activations (LLM.int8()/SmoothQuant W8A8):
///   scale[m] = absmax(x[m, 0:K]) / 127,  q[m, k] = clamp(round_half_even(x / scale), -127, 127).
/// Layout and padding as quantize_rows_fp8.
void quantize_rows_int8(const uint16_t* x, int64_t ldx, int64_t M, int64_t K, int8_t* q, int64_t ldq,
                        int64_t M_pad, float* scale, cudaStream_t stream);

/// Dequantization epilogue: y[m, n] = BF16(d[m, n] · scale_x[m] · scale_w[n])
/// for m < M, n < N (round to nearest even). d: FP32 [.., ldd]; y: BF16 bits [M, ldy].
void scale_rows_cols_to_bf16(const float* d, int64_t ldd, const float* scale_x, const float* scale_w,
                             uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream);

/// Same for INT32 accumulators (INT8 W8A8).
void scale_rows_cols_to_bf16(const int32_t* d, int64_t ldd, const float* scale_x, const float* scale_w,
                             uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream);

}  // namespace kq::cuda
