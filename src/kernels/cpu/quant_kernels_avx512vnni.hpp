#pragma once
// Declarations of the AVX-512 VNNI quantized kernels (gemm_*_avx512vnni.cpp).
// Call them only through dispatch.hpp (Isa::Avx512Vnni): they execute
// AVX-512F/BW/VL and VNNI instructions. Semantics: QuantKernels in dispatch.hpp.
#include <cstdint>

#include "kernels/cpu/linear_int8_ref.hpp"

namespace kq::cpu::avx512vnni {

/// W8A8 INT8 with `vpdpbusd` on offset activations (x + 128) and a weight
/// row-sum correction; bit-identical to the reference.
void gemm_s8s8_f32_rowwise(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y,
                           int threads);

}  // namespace kq::cpu::avx512vnni
