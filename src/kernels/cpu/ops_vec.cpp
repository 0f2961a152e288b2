// The baseline VecKernels and the one-time ISA choice.
#include "kernels/cpu/ops_vec.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kq/info.hpp"

namespace kq::cpu {
namespace generic_impl {
#define KQ_VEC_BYTES 16
#include "kernels/cpu/ops_vec_impl.hpp"
#undef KQ_VEC_BYTES

const VecKernels kTable = make_table("generic");
}  // namespace generic_impl

const VecKernels& vec_kernels_avx2_table();  // ops_vec_avx2.cpp

namespace {
bool cpu_has_avx2() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma;
}
}  // namespace

const VecKernels& vec_kernels_generic() { return generic_impl::kTable; }

const VecKernels* vec_kernels_avx2() { return cpu_has_avx2() ? &vec_kernels_avx2_table() : nullptr; }

bool use_avx2() {
  static const bool yes = [] {
    const char* isa = std::getenv("KQ_ISA");
    return cpu_has_avx2() && !(isa && std::strcmp(isa, "generic") == 0);
  }();
  return yes;
}

const VecKernels& vec_kernels() { return use_avx2() ? vec_kernels_avx2_table() : vec_kernels_generic(); }

}  // namespace kq::cpu
