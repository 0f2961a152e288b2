#pragma once
// The FP32 (unquantized) Linear: the baseline every quantized format is
// measured against, and the format models load into.
#include <memory>

#include "kernels/linear.hpp"

namespace kq {

/// y[M, N] = x[M, K] · Wᵀ (+ bias) in FP32.
/// weight: F32 [N, K] (nn.Linear [out, in] layout), kept as given (a memory-mapped
/// view stays zero-copy; it is shared, not copied). bias: F32 [N] or an undefined Tensor.
/// Prefill (M > 1) runs oneDNN's dnnl_sgemm; decode (M == 1) runs an AVX2+FMA
/// GEMV that reads 4 weight rows per pass (measured faster than dnnl_sgemm for
/// M == 1 on AVX2 machines, see docs/PERFORMANCE.md), or dnnl_sgemm without AVX2.
/// Throws InvalidArgument for a non-F32 or non-2-D weight, a bias of the wrong
/// shape/dtype, or a misaligned (not 4-byte aligned) weight.
std::unique_ptr<Linear> make_linear_f32(Tensor weight, Tensor bias = {});

/// The weight's F32 data when `op` is an FP32 Linear (make_linear_f32), else
/// nullptr. Models use it to see that a tied lm_head still shares the
/// embedding matrix, so its bytes are counted once.
const float* linear_f32_weight_data(const Linear& op);

}  // namespace kq
