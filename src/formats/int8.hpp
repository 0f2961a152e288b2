#pragma once
// INT8 symmetric quantization (zero point 0), the W8A8 scheme of
// LLM.int8()/SmoothQuant-style per-channel weights without outlier handling.
//
// Weight layout: codes I8 [N, K] row-major (two's complement, range [-127, 127];
// -128 is never produced), scales F32 [N] (per-output-channel) or [1] (per-tensor).
//   scale = absmax / 127 over the row (or the whole tensor); w ≈ code · scale.
// Bits per weight: 8 + 32/K (per-channel) or 8 + 32/(N·K) (per-tensor).
//
// Activations (W8A8): per-token dynamic scale absmax(x_row)/127, codes in
// [-127, 127]; the dot product is accumulated in INT32 (exact for K < 133,000:
// 127² · K < 2³¹) and rescaled by scale_x · scale_w.
//
// Rounding: to nearest, ties to even. An all-zero row gets scale 1 (codes 0).
#include <cstdint>

namespace kq::formats {

inline constexpr int kInt8Max = 127;

/// absmax / 127, or 1 when absmax is 0 (or the division underflows).
float int8_scale_for(float absmax);

/// Largest |x[i]| for i < n (NaN ignored).
float absmax(const float* x, int64_t n);

/// Rounds x / scale to nearest even and clamps to [-127, 127]; NaN gives 0.
int8_t int8_encode(float x, float scale);

/// codes[i] = int8_encode(x[i], scale) for i < n.
void int8_quantize_row(const float* x, int64_t n, float scale, int8_t* codes);

/// out[i] = codes[i] · scale for i < n.
void int8_dequantize_row(const int8_t* codes, int64_t n, float scale, float* out);

/// Dynamic per-token quantization of one activation row: returns the scale
/// (absmax/127) and writes codes[0, n).
float int8_quantize_dynamic(const float* x, int64_t n, int8_t* codes);

}  // namespace kq::formats
