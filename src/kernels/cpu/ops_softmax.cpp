#include "kernels/cpu/ops_softmax.hpp"

#include "kernels/cpu/ops_vec.hpp"

namespace kq::cpu {

void softmax_inplace(float* x, int64_t n) { vec_kernels().softmax(x, n); }

double log_sum_exp(const float* x, int64_t n) { return vec_kernels().log_sum_exp(x, n); }

int64_t argmax(const float* x, int64_t n) { return vec_kernels().argmax(x, n); }

}  // namespace kq::cpu
