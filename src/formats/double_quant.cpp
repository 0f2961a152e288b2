#include "formats/double_quant.hpp"

#include <algorithm>

namespace kq::formats {

float double_quantize(const float* s, int64_t n, int8_t* codes, float* group_scales) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += s[i];
  const float mean = n > 0 ? float(sum / double(n)) : 0.0f;
  for (int64_t g0 = 0; g0 < n; g0 += kDqGroup) {
    const int64_t g1 = std::min(n, g0 + kDqGroup);
    float dev = 0.0f;
    for (int64_t i = g0; i < g1; ++i) dev = std::max(dev, std::fabs(s[i] - mean));
    const float c = dev / 127.0f;
    group_scales[g0 / kDqGroup] = c;
    for (int64_t i = g0; i < g1; ++i) {
      float q = c > 0.0f ? std::nearbyint((s[i] - mean) / c) : 0.0f;
      q = std::clamp(q, -127.0f, 127.0f);
      codes[i] = int8_t(q);
    }
  }
  return mean;
}

void double_dequantize(const int8_t* codes, const float* group_scales, float mean, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = dq_decode(codes[i], group_scales[i / kDqGroup], mean);
}

}  // namespace kq::formats
