#pragma once
// The FP32 (unquantized) Linear: the baseline every quantized format is
// measured against, and the format models load into.
#include <cstddef>
#include <memory>

#include "kernels/linear.hpp"

namespace kq {

/// y[M, N] = x[M, K] · Wᵀ (+ bias) in FP32.
/// weight: F32 [N, K] (nn.Linear [out, in] layout), kept as given (a memory-mapped
/// view stays zero-copy; it is shared, not copied). bias: F32 [N] or an undefined Tensor.
/// Prefill (M > 1) runs oneDNN's dnnl_sgemm; decode (M == 1) runs an AVX2+FMA
/// GEMV that reads 4 weight rows per pass (measured faster than dnnl_sgemm for
/// M == 1 on AVX2 machines, see docs/PERFORMANCE.md), or dnnl_sgemm without AVX2.
/// disk_dtype: the dtype the weight was stored in on disk (F32, BF16 or F16),
/// recorded so that a quantized model can hold the layer in it when it stays
/// unquantized (Model::hold_unquantized_in_disk_dtype, make_linear_w16); it
/// does not change what the op computes.
/// Throws InvalidArgument for a non-F32 or non-2-D weight, a bias of the wrong
/// shape/dtype, a misaligned (not 4-byte aligned) weight, or a disk_dtype
/// other than F32, BF16 and F16.
std::unique_ptr<Linear> make_linear_f32(Tensor weight, Tensor bias = {}, DType disk_dtype = DType::F32);

/// The weight's F32 data when `op` is an FP32 Linear (make_linear_f32), else
/// nullptr. Models use it to see that a tied lm_head still shares the
/// embedding matrix, so its bytes are counted once.
const float* linear_f32_weight_data(const Linear& op);

/// The weight tensor itself (F32 [N, K], shared with the op, not copied) when `op` is an FP32 Linear, else
/// nullptr: for the library's readers of the weight (quantizing) that must not copy it, as
/// Linear::dequantized_weight() does. Callers only read it.
const Tensor* linear_f32_weight(const Linear& op);

/// The disk_dtype given to make_linear_f32 when `op` is an FP32 Linear, else DType::F32.
DType linear_f32_disk_dtype(const Linear& op);

/// Diagnostics for tests of peak memory (a loader that must not hold every
/// FP32 weight at once): the weight bytes of the FP32 Linear ops alive now,
/// each op counting its weight tensor (a tied lm_head counts the table it
/// shares; biases not counted), and the most bytes alive at once since the
/// last reset_linear_f32_peak_bytes(), which sets the peak to the bytes alive
/// now. Process-wide, thread-safe.
size_t linear_f32_live_bytes();
size_t linear_f32_peak_bytes();
void reset_linear_f32_peak_bytes();

}  // namespace kq
