#pragma once
// Declarations of the AVX-512 (F/BW/VL) quantized kernels (*_avx512.cpp).
// Call them only through dispatch.hpp (Isa::Avx512Vnni): they execute AVX-512
// instructions. Semantics: QuantKernels in dispatch.hpp.
#include <cstdint>

#include "kernels/cpu/linear_int4_ref.hpp"

namespace kq::cpu::avx512 {

/// 4-bit weights (NF4, FP4, FP4_BNB, INT4 sym/asym) with F32 compute: y F32 [M, N] =
/// x F32 [M, K] · ŵᵀ + bias, `vpermps` codebook lookups of 16 codes at a time
/// (gemm_q4_avx512.cpp: layout and summation order). Returns false, writing
/// nothing, for what it does not handle (compute dtype BF16, a format that is
/// not 4-bit); the caller then runs another table's kernel. Never throws.
bool gemm_f32q4_f32_blockwise(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads);

}  // namespace kq::cpu::avx512
