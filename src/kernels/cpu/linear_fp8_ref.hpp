#pragma once
// Scalar reference kernel of the FP8 Linear (src/formats/fp8.hpp layout).
// Weights stay one-byte OCP FP8 codes; a chunk of a row is decoded to F32
// through the format's 256-entry table once per tile of tokens.
#include <cstdint>

#include "kq/quantize.hpp"

namespace kq::cpu {

/// FP8 weight [N, K] with per-channel or per-tensor scales.
struct Fp8WeightView {
  const uint8_t* codes = nullptr;  ///< U8 [N, K] OCP FP8 bit patterns
  const float* scales = nullptr;   ///< F32 [N] or [1]
  bool per_tensor = false;
  FP8Format format = FP8Format::E4M3;
  const float* bias = nullptr;     ///< F32 [N] or nullptr
  int64_t N = 0;
  int64_t K = 0;
};

/// y[m, n] = (Σ_k x[m, k] · decode(wq[n, k])) · (xs[m] · ws[n]) + bias[n].
/// Weight-only: x = the F32 activations and xs = nullptr (taken as 1).
/// W8A8: x = the decoded FP8 activation codes (exact FP8 values in F32) and
/// xs = their per-token scales; products of two FP8 values are exact in F32.
void gemm_f32fp8_f32_rowwise_ref(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y,
                                 int threads);

}  // namespace kq::cpu
