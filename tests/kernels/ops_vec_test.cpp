// Every ISA's VecKernels (ops_vec.hpp) vs double-precision references,
// including lengths that leave a partial vector.
#include "kernels/cpu/ops_vec.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

using namespace kq::cpu;

namespace {

std::vector<const VecKernels*> tables() {
  std::vector<const VecKernels*> t = {&vec_kernels_generic()};
  if (const VecKernels* a = vec_kernels_avx2()) t.push_back(a);
  return t;
}

std::vector<float> random_vec(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

const int64_t kLengths[] = {1, 3, 7, 8, 9, 16, 17, 100, 256, 257, 8193};

}  // namespace

TEST(OpsVec, SoftmaxAndLogSumExp) {
  for (const VecKernels* k : tables())
    for (int64_t n : kLengths) {
      auto x = random_vec(size_t(n), uint32_t(n), -40.0f, 40.0f);
      if (n > 2) x[1] = -std::numeric_limits<float>::infinity();  // a masked logit
      double mx = -1e300, sum = 0;
      for (float v : x) mx = std::max(mx, double(v));
      for (float v : x) sum += std::exp(double(v) - mx);
      EXPECT_NEAR(k->log_sum_exp(x.data(), n), mx + std::log(sum), 1e-6) << k->isa << " n=" << n;
      auto y = x;
      k->softmax(y.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double ref = std::exp(double(x[size_t(i)]) - mx) / sum;
        // F32 rounding of the argument x − max costs ~6e-8·|x − max| relative.
        if (std::isinf(x[size_t(i)])) {
          ASSERT_EQ(y[size_t(i)], 0.0f);
          continue;
        }
        const double tol = ref * (1e-6 + 1e-7 * std::fabs(double(x[size_t(i)]) - mx)) + 1e-37;
        ASSERT_NEAR(y[size_t(i)], ref, tol) << k->isa << " n=" << n << " i=" << i;
      }
    }
}

TEST(OpsVec, Activations) {
  const double c = std::sqrt(2.0 / std::numbers::pi);
  for (const VecKernels* k : tables())
    for (int64_t n : kLengths) {
      const auto x = random_vec(size_t(n), uint32_t(n) + 1, -12.0f, 12.0f);
      const auto up = random_vec(size_t(n), uint32_t(n) + 2, -1.0f, 1.0f);
      auto g = x, s = x, w = x;
      k->gelu_tanh(g.data(), n);
      k->silu(s.data(), n);
      k->swiglu(w.data(), up.data(), n);
      for (size_t i = 0; i < size_t(n); ++i) {
        const double v = x[i], sig = 1.0 / (1.0 + std::exp(-v));
        ASSERT_NEAR(g[i], 0.5 * v * (1 + std::tanh(c * (v + 0.044715 * v * v * v))),
                    1e-6 * (1 + std::fabs(v)))
            << k->isa << " x=" << v;
        ASSERT_NEAR(s[i], v * sig, 1e-6 * (1 + std::fabs(v))) << k->isa << " x=" << v;
        ASSERT_NEAR(w[i], v * sig * up[i], 1e-6 * (1 + std::fabs(v))) << k->isa << " x=" << v;
      }
    }
  for (const VecKernels* k : tables()) {  // extremes stay finite and saturate correctly
    float e[] = {-200.0f, 200.0f, 0.0f};
    k->gelu_tanh(e, 3);
    EXPECT_EQ(e[0], -0.0f);
    EXPECT_EQ(e[1], 200.0f);
    EXPECT_EQ(e[2], 0.0f);
    float f[] = {-200.0f, 200.0f};
    k->silu(f, 2);
    EXPECT_NEAR(f[0], 0.0f, 1e-30);
    EXPECT_EQ(f[1], 200.0f);
  }
}

TEST(OpsVec, DotAxpyAndKlSums) {
  for (const VecKernels* k : tables())
    for (int64_t n : kLengths) {
      const auto a = random_vec(size_t(n), uint32_t(n) + 3, -1.0f, 1.0f);
      const auto b = random_vec(size_t(n), uint32_t(n) + 4, -1.0f, 1.0f);
      double dot = 0, abs_sum = 0;
      for (size_t i = 0; i < size_t(n); ++i) {
        dot += double(a[i]) * b[i];
        abs_sum += std::fabs(double(a[i]) * b[i]);
      }
      EXPECT_NEAR(k->dot(a.data(), b.data(), n), dot, 2e-6 * abs_sum) << k->isa;
      auto y = b;
      k->axpy(0.5f, a.data(), y.data(), n);
      for (size_t i = 0; i < size_t(n); ++i) ASSERT_FLOAT_EQ(y[i], b[i] + 0.5f * a[i]);

      auto r = random_vec(size_t(n), uint32_t(n) + 5, -10.0f, 10.0f);
      auto c = random_vec(size_t(n), uint32_t(n) + 6, -10.0f, 10.0f);
      double mx = -1e300, z = 0;
      for (float v : r) mx = std::max(mx, double(v));
      for (float v : r) z += std::exp(double(v) - mx);
      const double lse = mx + std::log(z);
      double w_ref = 0, m_ref = 0;
      for (size_t i = 0; i < size_t(n); ++i) {
        const double p = std::exp(double(r[i]) - lse);
        w_ref += p * (double(r[i]) - c[i]);
        m_ref += p;
      }
      double w = 0, m = 0;
      k->kl_sums(r.data(), c.data(), lse, n, &w, &m);
      EXPECT_NEAR(m, m_ref, 1e-6) << k->isa;
      EXPECT_NEAR(w, w_ref, 1e-5 * (1 + std::fabs(w_ref))) << k->isa;
    }
}

TEST(OpsVec, DispatchPicksAnAvailableIsa) {
  const std::string isa = vec_kernels().isa;
  EXPECT_TRUE(isa == "generic" || isa == "avx2");
  EXPECT_EQ(isa == "avx2", use_avx2());
  if (use_avx2()) {
    EXPECT_NE(vec_kernels_avx2(), nullptr);
  }
}
