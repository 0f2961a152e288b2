// The VecKernels compiled with -mavx2 -mfma (8-wide F32 vectors).
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/ops_vec.hpp"

namespace kq::cpu {
namespace avx2_impl {
#define KQ_VEC_BYTES 32
#include "kernels/cpu/ops_vec_impl.hpp"
#undef KQ_VEC_BYTES

const VecKernels kTable = make_table("avx2");
}  // namespace avx2_impl

// Declared in ops_vec.cpp; only called after checking the CPU.
const VecKernels& vec_kernels_avx2_table() { return avx2_impl::kTable; }

}  // namespace kq::cpu
