#include "kernels/cpu/linear_w16_ref.hpp"

#include "kernels/cpu/quantized_tile_ref.hpp"

namespace kq::cpu {

void gemm_f32w16_f32_ref(const W16WeightView& w, const float* x, int64_t M, float* y, int threads) {
  const int64_t K = w.K;
  const bool bf16 = w.dtype == DType::BF16;
  auto decode = [&](int64_t n, int64_t, int64_t k0, int64_t len, float* out) {
    const uint16_t* p = w.w + n * K + k0;
    if (bf16)
      for (int64_t i = 0; i < len; ++i) out[i] = bf16_to_f32(p[i]);
    else
      for (int64_t i = 0; i < len; ++i) out[i] = f16_to_f32(p[i]);
  };
  auto finish = [&](int64_t, int64_t n, float acc) { return acc + (w.bias ? w.bias[n] : 0.0f); };
  tiled_decode_gemm_ref(w.N, K, kMaxChunk, x, M, y, threads, decode, finish);
}

}  // namespace kq::cpu
