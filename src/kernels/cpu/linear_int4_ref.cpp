#include "kernels/cpu/linear_int4_ref.hpp"

#include <algorithm>

#include "formats/packed4.hpp"
#include "kernels/cpu/quantized_tile_ref.hpp"
#include "kq/dtype.hpp"

namespace kq::cpu {

void q4_decode_block_ref(const Q4WeightView& w, int64_t n, int64_t b, float* out) {
  const int64_t i = n * w.nb + b;
  float lut[16];
  formats::q4_block_lut(w.format, q4_block_scale(w, i), w.zeros ? w.zeros[i] : uint8_t(0), lut);
  if (w.bf16)
    for (float& v : lut) v = bf16_to_f32(f32_to_bf16(v));
  const int64_t k0 = b * w.block;
  const int64_t len = std::min(w.block, w.K - k0);
  const uint8_t* p = w.codes + n * w.row_bytes + k0 / 2;
  int64_t k = 0;
  for (; k + 1 < len; k += 2) {
    const uint8_t byte = p[k >> 1];
    out[k] = lut[byte & 0xF];
    out[k + 1] = lut[byte >> 4];
  }
  if (k < len) out[k] = lut[p[k >> 1] & 0xF];
}

void gemm_f32q4_f32_blockwise_ref(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads) {
  auto decode = [&](int64_t n, int64_t b, int64_t, int64_t, float* out) { q4_decode_block_ref(w, n, b, out); };
  auto finish = [&](int64_t, int64_t n, float acc) { return acc + (w.bias ? w.bias[n] : 0.0f); };
  tiled_decode_gemm_ref(w.N, w.K, w.block, x, M, y, threads, decode, finish);
}

}  // namespace kq::cpu
