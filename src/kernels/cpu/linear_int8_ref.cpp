#include "kernels/cpu/linear_int8_ref.hpp"

#include "kernels/cpu/quantized_tile_ref.hpp"

namespace kq::cpu {

void gemm_s8s8_f32_rowwise_ref(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y,
                               int threads) {
  const int64_t N = w.N, K = w.K;
  const int64_t row_tiles = (N + kTileN - 1) / kTileN;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < row_tiles; ++t) {
    const int64_t n0 = t * kTileN;
    const int64_t nt = std::min(kTileN, N - n0);
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* xr = xq + m * K;
      for (int64_t r = 0; r < nt; ++r) {
        const int64_t n = n0 + r;
        const int32_t acc = dot_s8_ref(w.codes + n * K, xr, K);
        const float ws = w.scales[w.per_tensor ? 0 : n];
        y[m * N + n] = float(acc) * (xs[m] * ws) + (w.bias ? w.bias[n] : 0.0f);
      }
    }
  }
}

void gemm_f32s8_f32_rowwise_ref(const Int8WeightView& w, const float* x, int64_t M, float* y, int threads) {
  const int64_t K = w.K;
  auto decode = [&](int64_t n, int64_t, int64_t k0, int64_t len, float* out) {
    const int8_t* q = w.codes + n * K + k0;
    for (int64_t i = 0; i < len; ++i) out[i] = float(q[i]);
  };
  auto finish = [&](int64_t, int64_t n, float acc) {
    return acc * w.scales[w.per_tensor ? 0 : n] + (w.bias ? w.bias[n] : 0.0f);
  };
  tiled_decode_gemm_ref(w.N, K, kMaxChunk, x, M, y, threads, decode, finish);
}

}  // namespace kq::cpu
