#pragma once
// Helpers of the per-ISA kernel tests: the ISA parameter (every optimized ISA
// is instantiated; those this CPU or build lacks are skipped with a message),
// random data, and the checks every optimized kernel must pass.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/tolerances.hpp"
#include "kernels/cpu/dispatch.hpp"

namespace kq::cpu {
/// gtest prints the ISA parameter by name.
inline void PrintTo(Isa isa, std::ostream* os) { *os << isa_name(isa); }
}  // namespace kq::cpu

namespace kq::testing {

/// Optimized ISAs the kernel tests are instantiated for (Ref is the oracle).
inline const std::vector<cpu::Isa> kOptimizedIsas = {cpu::Isa::Avx2, cpu::Isa::Avx512Vnni};

inline std::string isa_param_name(const ::testing::TestParamInfo<cpu::Isa>& p) {
  return std::string(cpu::isa_name(p.param));
}

/// Skips the test when the ISA cannot run here, saying why.
#define KQ_REQUIRE_ISA(isa)                                                                          \
  do {                                                                                               \
    if (!::kq::cpu::isa_available(isa))                                                              \
      GTEST_SKIP() << "ISA '" << ::kq::cpu::isa_name(isa)                                            \
                   << "' cannot run here (this CPU or this build lacks it); its kernels are untested"; \
  } while (0)

inline std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed, int lo = 0, int hi = 255) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = uint8_t(u(rng));
  return v;
}

/// Checks y (F32 [M, N]) against the double references ref/mag ([M, N]: the
/// exact sum and Σ|terms| of each output, K terms) within forward_tolerance.
inline void expect_within_tolerance(const std::vector<float>& y, const std::vector<double>& ref,
                                    const std::vector<double>& mag, int64_t M, int64_t N, int64_t K,
                                    const std::string& what) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const size_t i = size_t(m * N + n);
      ASSERT_NEAR(y[i], ref[i], forward_tolerance(K, mag[i])) << what << " [" << m << ", " << n << "]";
    }
}

/// Runs `run(M, x, y, threads)` for the full batch with 1 and 3 threads and for
/// each token alone (decode), and expects identical bits everywhere. Returns
/// the full-batch result.
template <class Run>
std::vector<float> expect_batch_and_thread_invariant(int64_t M, int64_t N, int64_t K, const std::vector<float>& x,
                                                     const Run& run, const std::string& what) {
  std::vector<float> y1(static_cast<size_t>(M * N)), y3(static_cast<size_t>(M * N)), row(static_cast<size_t>(N));
  run(M, x.data(), y1.data(), 1);
  run(M, x.data(), y3.data(), 3);
  for (size_t i = 0; i < y1.size(); ++i)
    if (!(std::isnan(y1[i]) && std::isnan(y3[i]))) {
      EXPECT_EQ(y1[i], y3[i]) << what << " threads 1 vs 3 at " << i;
    }
  for (int64_t m = 0; m < M; ++m) {
    run(1, x.data() + m * K, row.data(), 2);
    for (int64_t n = 0; n < N; ++n)
      if (!(std::isnan(row[size_t(n)]) && std::isnan(y1[size_t(m * N + n)]))) {
        EXPECT_EQ(row[size_t(n)], y1[size_t(m * N + n)]) << what << " decode vs prefill [" << m << ", " << n << "]";
      }
  }
  return y1;
}

/// expect_batch_and_thread_invariant for M < `sgemm_min_m`. From `sgemm_min_m`
/// tokens on the FP8 / 4-bit kernels run oneDNN's sgemm over dequantized panels
/// (dequant_gemm.hpp), whose order depends on M: there, only the batch with 2
/// threads. Returns the batch's result.
template <class Run>
std::vector<float> run_batch(int64_t M, int64_t N, int64_t K, const std::vector<float>& x, const Run& run,
                             int64_t sgemm_min_m, const std::string& what) {
  if (M < sgemm_min_m) return expect_batch_and_thread_invariant(M, N, K, x, run, what);
  std::vector<float> y(static_cast<size_t>(M * N), std::nanf(""));
  run(M, x.data(), y.data(), 2);
  return y;
}

}  // namespace kq::testing
