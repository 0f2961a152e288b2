#include "formats/int8.hpp"

#include <cmath>

namespace kq::formats {

float int8_scale_for(float amax) {
  const float s = amax / float(kInt8Max);
  return s > 0.0f && std::isfinite(s) ? s : 1.0f;
}

float absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    m = a > m ? a : m;
  }
  return m;
}

int8_t int8_encode(float x, float scale) {
  const float q = std::nearbyint(x / scale);  // default rounding mode: to nearest even
  if (!(q == q)) return 0;
  if (q > float(kInt8Max)) return int8_t(kInt8Max);
  if (q < -float(kInt8Max)) return int8_t(-kInt8Max);
  return int8_t(q);
}

void int8_quantize_row(const float* x, int64_t n, float scale, int8_t* codes) {
  for (int64_t i = 0; i < n; ++i) codes[i] = int8_encode(x[i], scale);
}

void int8_dequantize_row(const int8_t* codes, int64_t n, float scale, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(codes[i]) * scale;
}

float int8_quantize_dynamic(const float* x, int64_t n, int8_t* codes) {
  const float s = int8_scale_for(absmax(x, n));
  int8_quantize_row(x, n, s, codes);
  return s;
}

}  // namespace kq::formats
