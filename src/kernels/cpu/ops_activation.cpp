#include "kernels/cpu/ops_activation.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops_vec.hpp"

namespace kq::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this a parallel region is not worth it

// Runs f(begin, end) over [0, n), split in one contiguous range per thread of
// the team OpenMP actually gives (OMP_DYNAMIC, OMP_THREAD_LIMIT or a caller's
// enclosing parallel region can make it smaller than `threads`).
template <class F>
void parallel_ranges(int64_t n, int threads, F&& f) {
  const int nt = (n >= kParallelMin && threads > 1) ? threads : 1;
  if (nt == 1) {
    f(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t team = omp_get_num_threads();
    const int64_t per = (n + team - 1) / team;
    const int64_t b = std::min(n, per * omp_get_thread_num());
    f(b, std::min(n, b + per));
  }
}

}  // namespace

void gelu_new_inplace(float* x, int64_t n, int threads) {
  const VecKernels& k = vec_kernels();
  parallel_ranges(n, threads, [&](int64_t b, int64_t e) { k.gelu_tanh(x + b, e - b); });
}

void gelu_erf_inplace(float* x, int64_t n, int threads) {
  constexpr float kInvSqrt2 = 0.7071067811865476f;
  parallel_ranges(n, threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
  });
}

void silu_inplace(float* x, int64_t n, int threads) {
  const VecKernels& k = vec_kernels();
  parallel_ranges(n, threads, [&](int64_t b, int64_t e) { k.silu(x + b, e - b); });
}

void swiglu_inplace(float* gate, const float* up, int64_t n, int threads) {
  const VecKernels& k = vec_kernels();
  parallel_ranges(n, threads, [&](int64_t b, int64_t e) { k.swiglu(gate + b, up + b, e - b); });
}

void geglu_inplace(float* gate, const float* up, int64_t n, bool exact, int threads) {
  // One range per thread: its GELU (the kernels above, on the range alone) and then its product with up.
  const VecKernels& k = vec_kernels();
  constexpr float kInvSqrt2 = 0.7071067811865476f;
  parallel_ranges(n, threads, [&](int64_t b, int64_t e) {
    if (exact) {
      for (int64_t i = b; i < e; ++i) gate[i] = 0.5f * gate[i] * (1.0f + std::erf(gate[i] * kInvSqrt2));
    } else {
      k.gelu_tanh(gate + b, e - b);
    }
    for (int64_t i = b; i < e; ++i) gate[i] *= up[i];
  });
}

}  // namespace kq::cpu
