#pragma once
// Scalar reference kernel of the 16-bit (BF16 / F16) unquantized Linear: the
// weight stays in its on-disk 16-bit dtype and is converted to F32 (exactly)
// as it is read; activations and accumulation are F32. Test oracle of the
// AVX2 kernel with the same signature.
#include <cstdint>

#include "kq/dtype.hpp"

namespace kq::cpu {

/// A BF16 or F16 weight [N, K] (nn.Linear [out, in] layout).
struct W16WeightView {
  const uint16_t* w = nullptr;  ///< BF16 / F16 bit patterns [N, K], row-major
  DType dtype = DType::BF16;    ///< DType::BF16 or DType::F16
  const float* bias = nullptr;  ///< F32 [N] or nullptr
  int64_t N = 0;
  int64_t K = 0;
};

/// y[m, n] = Σ_k x[m, k] · f32(w[n, k]) + bias[n], F32 accumulation; x F32
/// [M, K], y F32 [M, N] (overwritten). Each 256-wide chunk of a weight row is
/// converted to F32 once per tile of 8 tokens (tiled_decode_gemm_ref), so a
/// row's result does not depend on M or on `threads`. Never throws.
void gemm_f32w16_f32_ref(const W16WeightView& w, const float* x, int64_t M, float* y, int threads);

}  // namespace kq::cpu
