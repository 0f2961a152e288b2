#pragma once
// kq's INT4 group weights in AutoGPTQ's v1 layout (checkpoint_format "gptq"),
// the inverse of import_hub_int4 for that layout (quant/hub_int4.hpp has it
// in full): qweight I32 [K/8, N] packed along K, qzeros I32 [G, N/8] holding
// zero point − 1, scales F16 [G, N], g_idx I32 [K] = k / group.
#include <cstdint>
#include <span>
#include <string>

#include "quant/packed_weight.hpp"

namespace kq {

/// The four tensors of one GPTQ v1 layer.
struct GptqV1Tensors {
  Tensor qweight;  ///< I32 [K/8, N]: nibble i (bits 4i..4i+3) of (r, n) = code of W[n, 8r + i]
  Tensor qzeros;   ///< I32 [G, N/8]: nibble i of (g, c) = zero point of (g, 8c + i) − 1
  Tensor scales;   ///< F16 [G, N]: the group scales rounded to FP16
  Tensor g_idx;    ///< I32 [K]: k / group
};

/// What the FP16 rounding of a layer's scales did.
struct GptqScaleRounding {
  int64_t flushed = 0;  ///< nonzero scales that became 0 (below half the smallest FP16 subnormal, 2^-25)
};

/// `w` (an INT4 weight of kq, symmetric or asymmetric, group w.block, any K
/// tail) in the GPTQ v1 layout with group_size w.block: the codes as they are,
/// the zero points (8 for symmetric) minus one, the scales rounded to FP16
/// (f32_to_f16: to nearest even, subnormals kept, as torch's .half() does),
/// G = ceil(K / w.block). `layer` names the layer in messages; `rounding`, when
/// given, receives what the rounding did. Throws InvalidArgument naming the
/// layer for a weight that is not INT4 or N or K not a multiple of 8, a zero
/// point 0 (v1 would store −1: named with its group and output channel), and a
/// scale above FP16's range (named with its group, output channel and value).
GptqV1Tensors pack_gptq_v1(const PackedWeight& w, const std::string& layer, GptqScaleRounding* rounding = nullptr);

/// The group scales of `w` (an INT4 weight, G = w.blocks_per_row groups per row) as the Hub's INT4 formats store
/// them: F16 [G, N], transposed from kq's [N, G], the scale of (row n, group g) divided by row_divisors[n] when
/// given (F32 [N], checked by the caller) and rounded to FP16 (f32_to_f16: to nearest even, subnormals kept, as
/// torch's .half()). `format` names the format in messages ("GPTQ", "AutoAWQ"); `rounding`, when given, gets the
/// count of nonzero scales FP16 flushed to 0. Throws InvalidArgument naming the layer, group, output channel and
/// value for a scale beyond FP16's range (largest 65504).
Tensor hub_f16_group_scales(const PackedWeight& w, const std::string& layer, const char* format,
                            std::span<const float> row_divisors = {}, GptqScaleRounding* rounding = nullptr);

/// A kq group scale as the GPTQ v1 export stores it: rounded to FP16 and back (exact in F32).
float gptq_f16_scale(float scale);

}  // namespace kq
