#pragma once
// Conversion of bitsandbytes 8-bit layers (LLM.int8(), Dettmers et al. 2022: transformers' BitsAndBytesConfig
// load_in_8bit, saved by Linear8bitLt with has_fp16_weights false) into kq's per-channel INT8 format
// (formats/int8.hpp) at load time.
//
// bitsandbytes stores a weight W [N, K] as
//   <prefix>.weight         I8 [N, K]  row-major codes ("CB"), round(W · 127 / absmax_n)
//   <prefix>.SCB            F32 [N]    the absmax of each row ("SCB"); W = CB · SCB · (1/127)
//   <prefix>.weight_format  U8 []      the code layout; 0 = row-major, the only one bitsandbytes still writes
//                                      (older tiled layouts, col32 / col_turing / col_ampere, are refused)
// bitsandbytes dequantizes as (CB · SCB) · 7.874015718698502e-3 (1/127 in F32); kq keeps the codes and the scale
// SCB · 7.874015718698502e-3 and computes CB · scale: two F32 roundings on each side, so a dequantized weight is
// within a relative 2^-22 of bitsandbytes'.
// LLM.int8() multiplies at run time with the activation columns above llm_int8_threshold (6.0 by default) in
// 16 bits and the others quantized per token; kq has no outlier decomposition, so the caller picks kq's int8-wo
// (weight-only: activations unquantized, the limit of that decomposition) for a positive threshold and int8
// (W8A8, activations quantized per token) for a threshold of 0, LLM.int8()'s own scheme without outliers.
#include <cstdint>
#include <string>

#include "quant/packed_weight.hpp"

namespace kq {

/// What a bitsandbytes checkpoint holds (models/hub_checkpoint.hpp: parse_bnb_quant_config).
struct BnbConfig {
  bool int8 = false;       ///< load_in_8bit (LLM.int8(), this file); else load_in_4bit (quant/bnb4.hpp)
  bool fp4 = false;        ///< load_in_4bit: bnb_4bit_quant_type "fp4" (bitsandbytes' FP4), else "nf4"
  double threshold = 6.0;  ///< llm_int8_threshold (8-bit): > 0 runs as kq int8-wo, 0 as kq int8 (W8A8)
};

/// 1/127 as bitsandbytes' int8_vectorwise_dequant writes it.
inline constexpr float kBnbInt8Dequant = 7.874015718698502e-3f;

/// Converts the 8-bit layer W [N, K] under `prefix` (tensors above) into a kq INT8 PackedWeight with per-channel
/// scales SCB · kBnbInt8Dequant (a row with SCB 0 is all zeros: stored as codes 0 with scale 1, kq's form of an
/// all-zero row) and `w8a8` as its quantize_activations (int8 or int8-wo). Throws FormatError naming the tensor
/// (and index) for a missing tensor, a dtype or shape other than above, a weight_format other than 0, a negative
/// or non-finite SCB, a code -128 (LLM.int8() writes [-127, 127]; tensor and [row, column] named), or non-zero
/// codes in a row whose SCB is 0; InvalidArgument for N or K < 1.
PackedWeight import_bnb_int8(const TensorGetter& get, const std::string& prefix, bool w8a8, int64_t N, int64_t K);

}  // namespace kq
