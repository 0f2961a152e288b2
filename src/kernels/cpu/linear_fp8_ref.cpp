#include "kernels/cpu/linear_fp8_ref.hpp"

#include "formats/fp8.hpp"
#include "kernels/cpu/quantized_tile_ref.hpp"

namespace kq::cpu {

void gemm_f32fp8_f32_rowwise_ref(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y,
                                 int threads) {
  const int64_t K = w.K;
  const float* table = formats::fp8_table(w.format).data();
  auto decode = [&](int64_t n, int64_t, int64_t k0, int64_t len, float* out) {
    const uint8_t* q = w.codes + n * K + k0;
    for (int64_t i = 0; i < len; ++i) out[i] = table[q[i]];
  };
  auto finish = [&](int64_t m, int64_t n, float acc) {
    const float ws = w.scales[w.per_tensor ? 0 : n];
    return acc * (xs ? xs[m] * ws : ws) + (w.bias ? w.bias[n] : 0.0f);
  };
  tiled_decode_gemm_ref(w.N, K, kMaxChunk, x, M, y, threads, decode, finish);
}

}  // namespace kq::cpu
