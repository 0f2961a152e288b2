#include "kernels/cpu/ops_activation.hpp"

#include <cmath>

namespace kq::cpu {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this a parallel region is not worth it

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }
}  // namespace

void gelu_new_inplace(float* x, int64_t n, int threads) {
  constexpr float kC = 0.7978845608028654f;  // sqrt(2/pi)
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelMin && threads > 1)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(kC * (v + 0.044715f * v * v * v)));
  }
}

void gelu_erf_inplace(float* x, int64_t n, int threads) {
  constexpr float kInvSqrt2 = 0.7071067811865476f;
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelMin && threads > 1)
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

void silu_inplace(float* x, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelMin && threads > 1)
  for (int64_t i = 0; i < n; ++i) x[i] = silu(x[i]);
}

void swiglu_inplace(float* gate, const float* up, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= kParallelMin && threads > 1)
  for (int64_t i = 0; i < n; ++i) gate[i] = silu(gate[i]) * up[i];
}

}  // namespace kq::cpu
