#pragma once
// Scalar reference kernel of the 4-bit Linear ops: NF4, FP4 (E2M1), bitsandbytes FP4 and INT4
// symmetric/asymmetric (src/formats/packed4.hpp layout). Each block of a row is
// decoded through a 16-entry table built from the block's scale (decoded from
// the double-quantized codes when present) and zero point.
#include <cstdint>

#include "formats/double_quant.hpp"
#include "formats/traits.hpp"

namespace kq::cpu {

/// A 4-bit weight [N, K] in blocks of `block` elements along K.
struct Q4WeightView {
  formats::WeightFormat format = formats::WeightFormat::NF4;  ///< NF4, FP4, FP4_BNB, INT4_SYM or INT4_ASYM
  const uint8_t* codes = nullptr;    ///< U8 [N, row_bytes], two codes per byte, low nibble first
  int64_t row_bytes = 0;             ///< ceil(K / 2)
  const float* scales = nullptr;     ///< F32 [N, nb], or nullptr when double-quantized
  const int8_t* dq_codes = nullptr;  ///< I8 [N, nb] double-quantized scales, or nullptr
  const float* dq_scales = nullptr;  ///< F32 [ceil(N·nb / 256)]
  float dq_mean = 0.0f;
  const uint8_t* zeros = nullptr;    ///< U8 [N, nb] (INT4 asymmetric) or nullptr
  const float* bias = nullptr;       ///< F32 [N] or nullptr
  int64_t N = 0;
  int64_t K = 0;
  int64_t block = 64;  ///< elements per block, power of two in [32, 256]
  int64_t nb = 0;      ///< blocks per row, ceil(K / block)
  bool bf16 = false;   ///< round decoded weights to bfloat16 (compute dtype BF16)
};

/// Scale of flat block i = n·nb + b.
inline float q4_block_scale(const Q4WeightView& w, int64_t i) {
  return w.dq_codes ? formats::dq_decode(w.dq_codes[i], w.dq_scales[i / formats::kDqGroup], w.dq_mean) : w.scales[i];
}

/// The decoded values of block b of row n: out[0, len), len = min(block, K − b·block).
void q4_decode_block_ref(const Q4WeightView& w, int64_t n, int64_t b, float* out);

/// y[m, n] = Σ_k x[m, k] · ŵ[n, k] + bias[n], ŵ decoded per block (W4A16).
/// For compute dtype BF16 the caller passes x already rounded to bf16.
void gemm_f32q4_f32_blockwise_ref(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads);

}  // namespace kq::cpu
