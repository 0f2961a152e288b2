#pragma once
// The 16-bit unquantized Linear: a BF16 or F16 weight kept in its on-disk
// dtype, F32 activations and accumulation. A quantized model holds its
// unquantized layers (the lm_head, tied or not; layers kept by keep patterns)
// this way when they were BF16/F16 on disk (Model::hold_unquantized_in_disk_dtype).
#include <memory>

#include "kernels/linear.hpp"

namespace kq {

/// y[M, N] = x[M, K] · f32(W)ᵀ (+ bias), x and y F32; W converted to F32
/// exactly as it is read, so the result equals the FP32 Linear's over the
/// converted weight up to summation order.
/// weight: BF16 or F16 [N, K] (nn.Linear [out, in] layout), kept as given
/// (shared, not copied: a tied lm_head shares the embedding table).
/// bias: F32 [N] or an undefined Tensor. Kernels: the ISA dispatch table
/// (cpu::quant_kernels(): KQ_ISA=ref the scalar reference; else the AVX2
/// GEMV for M == 1 and converted panels through oneDNN sgemm for M > 1).
/// format(): "bf16" or "f16"; weight_bytes(): 2·N·K (+ 4·N with a bias).
/// Throws InvalidArgument for a weight that is not a 2-D BF16/F16 tensor, is
/// empty or not 2-byte aligned, or a bias of the wrong shape/dtype or not
/// 4-byte aligned; InvalidArgument as cpu::selected_isa() for a bad KQ_ISA.
std::unique_ptr<Linear> make_linear_w16(Tensor weight, Tensor bias = {});

/// The 16-bit weight (BF16 / F16 [N, K]) when `op` is a make_linear_w16 op,
/// else nullptr. Models use its data pointer to see that a tied lm_head still
/// shares the embedding table; the CUDA conversion uploads it.
const Tensor* linear_w16_weight(const Linear& op);

/// An FP32 Linear (make_linear_f32) whose weight was BF16 or F16 on disk
/// (its disk_dtype), held in that dtype: a make_linear_w16 op over a heap copy
/// of the weight in it (exact: the F32 values came from that dtype) and the
/// same bias. nullptr for any other op (quantized, 16-bit already, F32 on
/// disk, a device op). What Model::hold_unquantized_in_disk_dtype does to each
/// such layer that does not share an embedding table. Throws only std::bad_alloc.
std::unique_ptr<Linear> linear_in_disk_dtype(const Linear& op);

}  // namespace kq
