#pragma once
// Host reference of the per-token activation quantizers (w8a8_kernels.hpp),
// written from their definitions: scale = absmax / qmax (1 when that is 0),
// q = round(x / scale).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda/gpu_test_util.hpp"

namespace kq::testing {

/// Per-token quantization of BF16 x [M, ldx] (K used) to codes [M, K] and scales [M].
template <class Code, class Encode>
void quantize_rows_ref(const std::vector<uint16_t>& x, int64_t M, int64_t K, int64_t ldx, float qmax, Encode enc,
                       std::vector<Code>& q, std::vector<float>& scale) {
  q.assign(size_t(M * K), Code(0));
  scale.assign(size_t(M), 0.0f);
  for (int64_t m = 0; m < M; ++m) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(bf16f(x[size_t(m * ldx + k)])));
    float s = amax / qmax;
    if (!(s > 0.0f)) s = 1.0f;  // all-zero row: scale 1 (src/formats/int8.hpp, fp8.hpp)
    scale[size_t(m)] = s;
    for (int64_t k = 0; k < K; ++k) q[size_t(m * K + k)] = enc(bf16f(x[size_t(m * ldx + k)]) / s);
  }
}

inline void quantize_rows_fp8_ref(const std::vector<uint16_t>& x, int64_t M, int64_t K, int64_t ldx,
                                  std::vector<uint8_t>& q, std::vector<float>& scale) {
  quantize_rows_ref<uint8_t>(x, M, K, ldx, 448.0f, f32_to_e4m3_sat, q, scale);
}

inline void quantize_rows_int8_ref(const std::vector<uint16_t>& x, int64_t M, int64_t K, int64_t ldx,
                                   std::vector<int8_t>& q, std::vector<float>& scale) {
  auto enc = [](float v) {
    const float r = std::nearbyint(v);  // default rounding mode: to nearest, ties to even
    return int8_t(std::clamp(r, -127.0f, 127.0f));
  };
  quantize_rows_ref<int8_t>(x, M, K, ldx, 127.0f, enc, q, scale);
}

}  // namespace kq::testing
