#pragma once
// Vector kernels of the CPU ops (exponentials, softmax, activations, dot
// products), written once in ops_vec_impl.hpp and compiled per ISA: generic
// (baseline x86-64, SSE2) in ops_vec.cpp and AVX2+FMA in ops_vec_avx2.cpp.
// The ISA is chosen once, on first use: AVX2+FMA when the CPU has it, unless
// the environment variable KQ_ISA=generic forces the baseline (for testing).
#include <cstdint>

namespace kq::cpu {

/// One ISA's kernels. All are single-threaded, never throw, n >= 1 unless noted.
struct VecKernels {
  const char* isa;  ///< "generic" or "avx2"
  /// log Σ e^{x_i}: max-subtracted, exp in F32 (exp_f32), sums in double.
  double (*log_sum_exp)(const float* x, int64_t n);
  /// x ← softmax(x), max-subtracted.
  void (*softmax)(float* x, int64_t n);
  /// x ← 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) (gelu_new), tanh(u) = 1 − 2/(e^{2u} + 1). n >= 0.
  void (*gelu_tanh)(float* x, int64_t n);
  /// x ← x·σ(x) (SiLU). n >= 0.
  void (*silu)(float* x, int64_t n);
  /// gate ← silu(gate)·up (SwiGLU). n >= 0.
  void (*swiglu)(float* gate, const float* up, int64_t n);
  /// Σ a_i·b_i in F32 (n >= 0).
  float (*dot)(const float* a, const float* b, int64_t n);
  /// y ← y + a·x (n >= 0).
  void (*axpy)(float a, const float* x, float* y, int64_t n);
  /// For KL divergence: with p_v = e^{r_v − lse_r}, adds Σ p_v·(r_v − c_v) to *weighted and Σ p_v to *mass.
  void (*kl_sums)(const float* r, const float* c, double lse_r, int64_t n, double* weighted, double* mass);
  /// Index of the first largest value, NaNs skipped (0 when all are NaN). n >= 1.
  int64_t (*argmax)(const float* x, int64_t n);
};

/// The kernels for this CPU (see the header comment).
const VecKernels& vec_kernels();
/// The baseline kernels (any x86-64 CPU).
const VecKernels& vec_kernels_generic();
/// The AVX2+FMA kernels, or nullptr when the CPU lacks AVX2 or FMA.
const VecKernels* vec_kernels_avx2();
/// true when AVX2+FMA code paths are used (CPU support and no KQ_ISA=generic).
bool use_avx2();

}  // namespace kq::cpu
