#pragma once
// kq's INT4 group weights in AutoAWQ's GEMM layout (quantization_config version
// "gemm", WQLinear_GEMM), the inverse of import_hub_int4 for that layout
// (quant/hub_int4.hpp has it in full): qweight I32 [K, N/8] packed along N in
// AutoAWQ's interleaved nibble order, qzeros I32 [K/B, N/8] the same order,
// scales F16 [K/B, N].
#include <cstdint>
#include <span>
#include <string>

#include "quant/gptq_pack.hpp"
#include "quant/packed_weight.hpp"

namespace kq {

/// The three tensors of one AutoAWQ GEMM layer.
struct AwqGemmTensors {
  Tensor qweight;  ///< I32 [K, N/8]: nibble i (bits 4i..4i+3) of (k, c) = code of W[8c + kAwqPackOrder[i], k]
  Tensor qzeros;   ///< I32 [K/B, N/8]: nibble i of (g, c) = zero point of (g, 8c + kAwqPackOrder[i])
  Tensor scales;   ///< F16 [K/B, N]: the group scales (each divided by its row's divisor) rounded to FP16
};

/// `w` (an INT4 weight of kq, symmetric or asymmetric, group B = w.block) in
/// AutoAWQ's GEMM layout: the codes as they are, the zero points as they are
/// (symmetric: 8, so (q − 8) · s is held exactly), the scale of (row n, group g)
/// divided by row_divisors[n] when given (F32 [N]: how AWQ folds the next
/// layer's 1/s into this layer's output rows; exact in real arithmetic: the
/// codes and zero points do not change) and rounded to FP16 (f32_to_f16: to
/// nearest even, subnormals kept, as torch's .half()). `layer` names the layer
/// in messages; `rounding`, when given, counts the nonzero scales FP16 flushed
/// to 0. Throws InvalidArgument naming the layer for a weight that is not INT4,
/// N not a multiple of 8 or K not a multiple of B (AutoAWQ has G = K / B whole
/// groups), row_divisors of another length or holding a value not finite and
/// > 0, and a scale above FP16's range (named with its group, output channel and value).
AwqGemmTensors pack_awq_gemm(const PackedWeight& w, const std::string& layer,
                             std::span<const float> row_divisors = {}, GptqScaleRounding* rounding = nullptr);

}  // namespace kq
