#pragma once
// Scalar reference kernels of the INT8 Linear (src/formats/int8.hpp layout).
// They are the test oracle for ISA-specific kernels with the same signatures.
#include <cstdint>

namespace kq::cpu {

/// INT8 weight [N, K] with symmetric scales.
struct Int8WeightView {
  const int8_t* codes = nullptr;  ///< I8 [N, K] row-major
  const float* scales = nullptr;  ///< F32 [N] (per-channel) or [1] (per-tensor)
  bool per_tensor = false;
  const float* bias = nullptr;    ///< F32 [N] or nullptr
  int64_t N = 0;
  int64_t K = 0;
};

/// W8A8: y[m, n] = float(Σ_k xq[m, k] · wq[n, k]) · (xs[m] · ws[n]) + bias[n],
/// INT32 accumulation. xq: I8 [M, K] per-token codes, xs: F32 [M] per-token scales.
void gemm_s8s8_f32_rowwise_ref(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y,
                               int threads);

/// Weight-only INT8 (W8A16-style, F32 activations): y[m, n] = (Σ_k x[m, k] · wq[n, k]) · ws[n] + bias[n].
/// Each 256-wide chunk of a weight row is converted to F32 once per tile of 8 tokens.
void gemm_f32s8_f32_rowwise_ref(const Int8WeightView& w, const float* x, int64_t M, float* y, int threads);

}  // namespace kq::cpu
