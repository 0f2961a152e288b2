// CPU ops (norms, activations, RoPE, softmax, GQA causal attention) vs naive
// double-precision references and known values.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/cpu/ops_activation.hpp"
#include "kernels/cpu/ops_attention.hpp"
#include "kernels/cpu/ops_math.hpp"
#include "kernels/cpu/ops_norm.hpp"
#include "kernels/cpu/ops_rope.hpp"
#include "kernels/cpu/ops_softmax.hpp"

using namespace kq;
using namespace kq::cpu;

namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

// ---- exp / softmax ---------------------------------------------------------

TEST(OpsMath, ExpF32RelativeError) {
  double worst = 0;
  for (int i = 0; i <= 2000000; ++i) {
    const float x = -87.0f + 175.0f * float(i) / 2000000.0f;
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::fabs(double(exp_f32(x)) - ref) / ref);
  }
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(exp_f32(0.0f), 1.0f);
  EXPECT_EQ(exp_f32(-100.0f), 0.0f);
  EXPECT_EQ(exp_f32(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isfinite(exp_f32(1000.0f)));
}

TEST(OpsSoftmax, MatchesDoubleAndIsStable) {
  for (int64_t n : {1, 7, 100, 8192}) {
    auto x = random_vec(size_t(n), 11, -30.0f, 30.0f);
    x[0] += 1000.0f;  // a huge logit must not overflow
    double mx = -1e300;
    for (float v : x) mx = std::max(mx, double(v));
    double sum = 0;
    for (float v : x) sum += std::exp(double(v) - mx);
    EXPECT_NEAR(log_sum_exp(x.data(), n), mx + std::log(sum), 1e-9 * std::fabs(mx) + 1e-6);
    auto y = x;
    softmax_inplace(y.data(), n);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double ref = std::exp(double(x[size_t(i)]) - mx) / sum;
      EXPECT_NEAR(y[size_t(i)], ref, 1e-6 * ref + 1e-30);
      total += y[size_t(i)];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
    EXPECT_EQ(argmax(x.data(), n), 0);
  }
  const float ties[] = {1.0f, 3.0f, 3.0f};
  EXPECT_EQ(argmax(ties, 3), 1);
}

// argmax against the plain first-largest scan on every length around its
// 16-wide blocks, the maximum at every position, ties, NaNs and infinities.
TEST(OpsSoftmax, ArgmaxIsTheFirstLargestValue) {
  uint32_t seed = 11;
  const auto scan = [](const std::vector<float>& v) {
    int64_t best = -1;
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isnan(v[i]) && (best < 0 || v[i] > v[size_t(best)])) best = int64_t(i);
    return best < 0 ? int64_t(0) : best;
  };
  for (int64_t n = 1; n <= 70; ++n)
    for (int64_t at = 0; at < n; ++at) {
      std::vector<float> v = random_vec(size_t(n), seed++);
      v[size_t(at)] = 10.0f;
      ASSERT_EQ(argmax(v.data(), n), at) << "n=" << n;
      v[size_t(n - 1)] = 10.0f;  // a tie later on: still the first
      ASSERT_EQ(argmax(v.data(), n), at) << "n=" << n;
      v[0] = std::numeric_limits<float>::quiet_NaN();
      ASSERT_EQ(argmax(v.data(), n), scan(v)) << "n=" << n << " (NaN first)";
    }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> lows(40, -inf), nans(33, nan);
  EXPECT_EQ(argmax(lows.data(), 40), 0);
  EXPECT_EQ(argmax(nans.data(), 33), 0);
  std::vector<float> big = random_vec(32000, seed);
  big[31999] = inf;
  EXPECT_EQ(argmax(big.data(), 32000), 31999);
}

// ---- norms -------------------------------------------------------------------

TEST(OpsNorm, LayerNormMatchesDouble) {
  const int64_t n = 5, d = 257;
  auto x = random_vec(size_t(n * d), 1, -3.0f, 5.0f);
  auto gamma = random_vec(size_t(d), 2);
  auto beta = random_vec(size_t(d), 3);
  for (int threads : {1, 2}) {
    std::vector<float> y(x.size());
    layer_norm(x.data(), n, d, gamma.data(), beta.data(), 1e-5f, y.data(), threads);
    for (int64_t i = 0; i < n; ++i) {
      double mean = 0, var = 0;
      for (int64_t j = 0; j < d; ++j) mean += x[size_t(i * d + j)];
      mean /= double(d);
      for (int64_t j = 0; j < d; ++j) var += std::pow(x[size_t(i * d + j)] - mean, 2);
      var /= double(d);
      for (int64_t j = 0; j < d; ++j) {
        const double ref =
            (x[size_t(i * d + j)] - mean) / std::sqrt(var + 1e-5) * gamma[size_t(j)] + beta[size_t(j)];
        EXPECT_NEAR(y[size_t(i * d + j)], ref, 2e-6);
      }
    }
  }
  // in place
  auto z = x;
  layer_norm(z.data(), n, d, gamma.data(), beta.data(), 1e-5f, z.data(), 1);
  std::vector<float> y(x.size());
  layer_norm(x.data(), n, d, gamma.data(), beta.data(), 1e-5f, y.data(), 1);
  EXPECT_EQ(z, y);
}

TEST(OpsNorm, RmsNormMatchesDouble) {
  const int64_t n = 3, d = 688;
  auto x = random_vec(size_t(n * d), 4, -2.0f, 2.0f);
  auto gamma = random_vec(size_t(d), 5);
  std::vector<float> y(x.size());
  rms_norm(x.data(), n, d, gamma.data(), 1e-6f, y.data(), 2);
  for (int64_t i = 0; i < n; ++i) {
    double ms = 0;
    for (int64_t j = 0; j < d; ++j) ms += std::pow(double(x[size_t(i * d + j)]), 2);
    ms /= double(d);
    for (int64_t j = 0; j < d; ++j)
      EXPECT_NEAR(y[size_t(i * d + j)], x[size_t(i * d + j)] / std::sqrt(ms + 1e-6) * gamma[size_t(j)], 2e-6);
  }
}

// ---- activations -------------------------------------------------------------

TEST(OpsActivation, KnownValuesAndReference) {
  float g[] = {1.0f, -1.0f, 3.0f, 0.0f};
  gelu_new_inplace(g, 4, 1);
  EXPECT_NEAR(g[0], 0.8411919906082768, 1e-6);
  EXPECT_NEAR(g[1], -0.15880800939172324, 1e-6);
  EXPECT_NEAR(g[2], 2.996362607918227, 1e-6);
  EXPECT_EQ(g[3], 0.0f);
  float s[] = {1.0f, -2.0f};
  silu_inplace(s, 2, 1);
  EXPECT_NEAR(s[0], 0.7310585786300049, 1e-6);
  EXPECT_NEAR(s[1], -0.2384058440442351, 1e-6);

  const size_t n = 100000;  // large enough for the multi-threaded path
  auto x = random_vec(n, 6, -8.0f, 8.0f);
  auto up = random_vec(n, 7);
  auto gl = x, sw = x;
  gelu_new_inplace(gl.data(), int64_t(n), 2);
  swiglu_inplace(sw.data(), up.data(), int64_t(n), 2);
  const double c = std::sqrt(2.0 / std::numbers::pi);
  for (size_t i = 0; i < n; ++i) {
    const double v = x[i];
    EXPECT_NEAR(gl[i], 0.5 * v * (1 + std::tanh(c * (v + 0.044715 * v * v * v))), 1e-5 * (1 + std::fabs(v)));
    EXPECT_NEAR(sw[i], v / (1 + std::exp(-v)) * up[i], 1e-5 * (1 + std::fabs(v)));
  }
}

// GeGLU (Gemma's MLP): gate = GELU(gate) · up, tanh or erf form, against a double-precision reference, on the
// multi-threaded path (thread counts giving the same bits) and on a short array.
TEST(OpsActivation, GegluMatchesADoubleReference) {
  const size_t n = 100000;  // large enough for the multi-threaded path
  const auto x = random_vec(n, 10, -8.0f, 8.0f);
  const auto up = random_vec(n, 11);
  const double c = std::sqrt(2.0 / std::numbers::pi);
  for (const bool exact : {false, true}) {
    auto one = x, four = x;
    geglu_inplace(one.data(), up.data(), int64_t(n), exact, 1);
    geglu_inplace(four.data(), up.data(), int64_t(n), exact, 4);
    EXPECT_EQ(one, four) << exact;
    for (size_t i = 0; i < n; ++i) {
      const double v = x[i];
      const double gelu = exact ? 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))
                                : 0.5 * v * (1 + std::tanh(c * (v + 0.044715 * v * v * v)));
      ASSERT_NEAR(one[i], gelu * up[i], 1e-5 * (1 + std::fabs(v))) << exact << " [" << i << "]";
    }
  }
  float g[] = {1.0f, -1.0f, 3.0f};
  const float u[] = {2.0f, 1.0f, -1.0f};
  geglu_inplace(g, u, 3, /*exact=*/false, 1);
  EXPECT_NEAR(g[0], 2 * 0.8411919906082768, 2e-6);
  EXPECT_NEAR(g[1], -0.15880800939172324, 1e-6);
  EXPECT_NEAR(g[2], -2.996362607918227, 4e-6);
}

/// OpenMP may give a parallel region fewer threads than asked: OMP_DYNAMIC,
/// OMP_THREAD_LIMIT, or a call from inside the caller's own parallel region (as
/// here: with one active level the inner region has one thread). The
/// activations must still cover the whole array (they split it by the count
/// asked for, leaving most of it untouched: a tester's perplexity 38116 for 76.9).
TEST(OpsActivation, WholeArrayWhenOpenMpGivesFewerThreads) {
  const size_t n = 100000;  // large enough for the multi-threaded path
  const auto x = random_vec(n, 8, -8.0f, 8.0f);
  const auto up = random_vec(n, 9);
  auto want_gelu = x, want_silu = x, want_swiglu = x;
  gelu_new_inplace(want_gelu.data(), int64_t(n), 1);
  silu_inplace(want_silu.data(), int64_t(n), 1);
  swiglu_inplace(want_swiglu.data(), up.data(), int64_t(n), 1);
  auto gelu = x, silu = x, swiglu = x;
  const int levels = omp_get_max_active_levels();
  omp_set_max_active_levels(1);
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    {
      gelu_new_inplace(gelu.data(), int64_t(n), 2);
      silu_inplace(silu.data(), int64_t(n), 2);
      swiglu_inplace(swiglu.data(), up.data(), int64_t(n), 2);
    }
  }
  omp_set_max_active_levels(levels);
  EXPECT_EQ(gelu, want_gelu);
  EXPECT_EQ(silu, want_silu);
  EXPECT_EQ(swiglu, want_swiglu);
}

// ---- RoPE --------------------------------------------------------------------

TEST(OpsRope, RotateHalfPairing) {
  // head_dim 4: dimension 0 pairs with 2 and 1 with 3 (not 0 with 1).
  const RopeTable t = make_rope_table(10000.0, 4, 8);
  float x[] = {1.0f, 0.0f, 0.0f, 0.0f};
  apply_rope(x, 1, 1, 4, 1, t);  // position 1, frequency θ^0 = 1 for i = 0
  EXPECT_NEAR(x[0], std::cos(1.0), 1e-7);
  EXPECT_EQ(x[1], 0.0f);
  EXPECT_NEAR(x[2], std::sin(1.0), 1e-7);
  EXPECT_EQ(x[3], 0.0f);
  float y[] = {0.0f, 1.0f, 0.0f, 0.0f};
  apply_rope(y, 1, 1, 4, 3, t);  // i = 1: angle 3 · 10000^(−1/2)
  EXPECT_NEAR(y[1], std::cos(3.0 / 100.0), 1e-7);
  EXPECT_NEAR(y[3], std::sin(3.0 / 100.0), 1e-7);
}

TEST(OpsRope, MatchesDoubleReference) {
  const int64_t hd = 64, heads = 3, n = 40, pos0 = 470, stride = heads * hd + 16;
  const double theta = 500000.0;
  const RopeTable table = make_rope_table(theta, hd, 512);
  auto x = random_vec(size_t(n * stride), 8);
  auto y = x;
  apply_rope(y.data(), n, heads, stride, pos0, table);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double ang = double(pos0 + t) * std::pow(theta, -2.0 * double(i) / double(hd));
        const size_t a = size_t(t * stride + h * hd + i), b = a + size_t(hd / 2);
        EXPECT_NEAR(y[a], x[a] * std::cos(ang) - x[b] * std::sin(ang), 1e-4);
        EXPECT_NEAR(y[b], x[b] * std::cos(ang) + x[a] * std::sin(ang), 1e-4);
      }
  for (int64_t t = 0; t < n; ++t)  // padding after the heads is untouched
    for (int64_t j = heads * hd; j < stride; ++j)
      EXPECT_EQ(y[size_t(t * stride + j)], x[size_t(t * stride + j)]);
}

TEST(OpsRope, ScoresDependOnlyOnRelativePosition) {
  const int64_t hd = 32;
  const RopeTable table = make_rope_table(10000.0, hd, 128);
  const auto q = random_vec(hd, 9), k = random_vec(hd, 10);
  auto score = [&](int64_t pq, int64_t pk) {
    auto a = q, b = k;
    apply_rope(a.data(), 1, 1, hd, pq, table);
    apply_rope(b.data(), 1, 1, hd, pk, table);
    double s = 0;
    for (int64_t i = 0; i < hd; ++i) s += double(a[size_t(i)]) * b[size_t(i)];
    return s;
  };
  EXPECT_NEAR(score(10, 3), score(100, 93), 1e-4);
  EXPECT_NEAR(score(5, 5), score(77, 77), 1e-4);
}

// ---- causal attention with GQA ----------------------------------------------

struct AttnCase {
  int64_t heads, kv_heads, head_dim, pos0, n;
  int64_t window = 0;  ///< sliding window (0: none)
  float softcap = 0;   ///< tanh soft-capping of the scores (Gemma 2; 0: none)
};

class OpsAttention : public ::testing::TestWithParam<AttnCase> {};

TEST_P(OpsAttention, MatchesDoubleReference) {
  const auto c = GetParam();
  const AttentionDims dims{c.heads, c.kv_heads, c.head_dim};
  const int64_t hd = c.head_dim, capacity = c.pos0 + c.n + 3;
  const int64_t q_stride = (c.heads + 2 * c.kv_heads) * hd;  // q packed with k, v as in a fused projection
  const int64_t out_stride = c.heads * hd + 5;
  const auto q = random_vec(size_t(c.n * q_stride), 12, -2.0f, 2.0f);
  auto kc = random_vec(size_t(c.kv_heads * capacity * hd), 13, -2.0f, 2.0f);
  auto vc = random_vec(size_t(c.kv_heads * capacity * hd), 14);
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t group = c.heads / c.kv_heads;
  // A window: query i sees keys t with pos0 + i − window < t <= pos0 + i (transformers' sliding_window_causal
  // mask). Keys no query sees are NaN: a kernel that read them would give NaN.
  const auto first_key = [&](int64_t pos) { return c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0; };
  for (int64_t g = 0; g < c.kv_heads; ++g)
    for (int64_t t = 0; t < first_key(c.pos0); ++t)
      for (int64_t j = 0; j < hd; ++j)
        kc[size_t((g * capacity + t) * hd + j)] = vc[size_t((g * capacity + t) * hd + j)] = std::nanf("");

  // reference
  std::vector<double> ref(static_cast<size_t>(c.n * c.heads * hd));
  for (int64_t i = 0; i < c.n; ++i)
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t g = h / group, keys = c.pos0 + i + 1, t0 = first_key(c.pos0 + i);
      std::vector<double> s(static_cast<size_t>(keys), 0.0);
      double mx = -1e300;
      for (int64_t t = t0; t < keys; ++t) {
        double d = 0;
        for (int64_t j = 0; j < hd; ++j)
          d += double(q[size_t(i * q_stride + h * hd + j)]) * kc[size_t((g * capacity + t) * hd + j)];
        s[size_t(t)] = d * double(scale);
        if (c.softcap > 0) s[size_t(t)] = double(c.softcap) * std::tanh(s[size_t(t)] / double(c.softcap));
        mx = std::max(mx, s[size_t(t)]);
      }
      double sum = 0;
      for (int64_t t = t0; t < keys; ++t) sum += (s[size_t(t)] = std::exp(s[size_t(t)] - mx));
      for (int64_t j = 0; j < hd; ++j) {
        double o = 0;
        for (int64_t t = t0; t < keys; ++t) o += s[size_t(t)] / sum * vc[size_t((g * capacity + t) * hd + j)];
        ref[size_t((i * c.heads + h) * hd + j)] = o;
      }
    }

  for (int threads : {1, 2}) {
    std::vector<float> scratch(
        static_cast<size_t>(attention_scratch_floats(dims, c.n, c.pos0 + c.n, threads)));
    std::vector<float> out(static_cast<size_t>(c.n * out_stride), -7.0f);
    causal_attention(q.data(), q_stride, c.n, c.pos0, kc.data(), vc.data(), capacity, dims, scale, out.data(),
                     out_stride, scratch.data(), threads, c.window, c.softcap);
    for (int64_t i = 0; i < c.n; ++i) {
      for (int64_t j = 0; j < c.heads * hd; ++j)
        ASSERT_NEAR(out[size_t(i * out_stride + j)], ref[size_t(i * c.heads * hd + j)], 2e-5)
            << "token " << i << " dim " << j << " threads " << threads;
      for (int64_t j = c.heads * hd; j < out_stride; ++j) EXPECT_EQ(out[size_t(i * out_stride + j)], -7.0f);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, OpsAttention,
                         ::testing::Values(AttnCase{4, 4, 32, 0, 1},      // first decode step
                                           AttnCase{8, 4, 32, 0, 5},      // GQA, direct path
                                           AttnCase{8, 2, 64, 37, 1},     // GQA decode, group 4
                                           AttnCase{32, 4, 64, 100, 3},   // Llama-1B-like decode
                                           AttnCase{6, 3, 16, 0, 8},      // smallest GEMM path
                                           AttnCase{8, 4, 32, 0, 130},    // prefill, 3 row blocks
                                           AttnCase{12, 12, 64, 20, 70},  // MHA prefill after a prefix
                                           AttnCase{4, 1, 8, 129, 65},    // MQA, chunk after 129 tokens
                                           // Sliding windows (Mistral): decode and prefill, a window shorter
                                           // than a row block, odd windows, a window of 1 (only the own key),
                                           // one longer than the sequence (no effect), GQA.
                                           AttnCase{8, 2, 64, 37, 1, 16},      // decode, GQA group 4
                                           AttnCase{8, 4, 32, 90, 5, 7},       // direct path, odd window
                                           AttnCase{6, 3, 16, 0, 9, 1},        // GEMM path, window 1
                                           AttnCase{8, 4, 32, 0, 130, 37},     // 3 row blocks, window < block
                                           AttnCase{8, 2, 32, 0, 130, 100},    // window across blocks
                                           AttnCase{12, 12, 64, 20, 70, 33},   // MHA chunk after a prefix
                                           AttnCase{4, 1, 8, 129, 65, 129},    // MQA, window starts mid-prefix
                                           AttnCase{8, 4, 32, 3, 10, 1000},    // window beyond the sequence
                                           // Gemma 2's soft-capping with caps below the scores (|s| up to ~5):
                                           // tanh bends them (SoftcapChangesTheOutput), decode and prefill,
                                           // with and without a window.
                                           AttnCase{8, 2, 64, 37, 1, 16, 1.0f},     // decode, window
                                           AttnCase{8, 4, 32, 0, 5, 0, 0.5f},       // direct path
                                           AttnCase{8, 4, 32, 0, 130, 37, 0.7f},    // 3 row blocks, window
                                           AttnCase{4, 1, 8, 129, 65, 0, 2.0f}));   // MQA chunk, no window

// Soft-capping (Gemma 2) changes the output when the scores exceed the cap, on both paths: a cap of 1 against
// scores of several units is far from the uncapped attention, a cap of 1e6 equal to it within rounding.
TEST(OpsAttention, SoftcapChangesTheOutput) {
  const AttentionDims dims{8, 2, 32};
  const int64_t hd = 32, capacity = 40, q_stride = 8 * hd;
  const auto q = random_vec(size_t(capacity * q_stride), 21, -2.0f, 2.0f);
  const auto kc = random_vec(size_t(2 * capacity * hd), 22, -2.0f, 2.0f);
  const auto vc = random_vec(size_t(2 * capacity * hd), 23);
  for (const int64_t n : {int64_t(1), int64_t(40)}) {  // direct (decode) and GEMM paths
    const int64_t pos0 = capacity - n;
    std::vector<float> scratch(static_cast<size_t>(attention_scratch_floats(dims, n, capacity, 2)));
    const auto run = [&](float cap) {
      std::vector<float> out(static_cast<size_t>(n * q_stride));
      causal_attention(q.data() + pos0 * q_stride, q_stride, n, pos0, kc.data(), vc.data(), capacity, dims, 1.0f,
                       out.data(), q_stride, scratch.data(), 2, 0, cap);
      return out;
    };
    const auto plain = run(0.0f), capped = run(1.0f), loose = run(1e6f);
    double diff = 0, same = 0;
    for (size_t i = 0; i < plain.size(); ++i) {
      diff = std::max(diff, double(std::abs(capped[i] - plain[i])));
      same = std::max(same, double(std::abs(loose[i] - plain[i])));
    }
    EXPECT_GT(diff, 0.05) << n << " rows";
    EXPECT_LT(same, 1e-5) << n << " rows";
  }
}

TEST(OpsAttention, ChunkedPrefillEqualsOnePass) {
  // Running positions [0, 100) as one call or as 60 + 1 + 39 rows gives the same outputs.
  const AttentionDims dims{8, 4, 32};
  const int64_t hd = 32, n = 100, capacity = 100, q_stride = 8 * hd;
  const auto q = random_vec(size_t(n * q_stride), 15);
  const auto kc = random_vec(size_t(4 * capacity * hd), 16);
  const auto vc = random_vec(size_t(4 * capacity * hd), 17);
  std::vector<float> scratch(static_cast<size_t>(attention_scratch_floats(dims, n, n, 2)));
  std::vector<float> full(static_cast<size_t>(n * q_stride)), parts(static_cast<size_t>(n * q_stride));
  causal_attention(q.data(), q_stride, n, 0, kc.data(), vc.data(), capacity, dims, 0.2f, full.data(),
                   q_stride, scratch.data(), 2);
  int64_t pos = 0;
  for (int64_t len : {60, 1, 39}) {
    causal_attention(q.data() + pos * q_stride, q_stride, len, pos, kc.data(), vc.data(), capacity, dims,
                     0.2f, parts.data() + pos * q_stride, q_stride, scratch.data(), 2);
    pos += len;
  }
  for (size_t i = 0; i < full.size(); ++i) ASSERT_NEAR(full[i], parts[i], 1e-5) << i;
}

TEST(OpsAttention, ChunkedWindowedPrefillEqualsOnePassAndDecodeSteps) {
  // A window of 23 over positions [0, 100): one call, 60 + 1 + 39 rows, or one row at a time (decode) give the
  // same outputs.
  const AttentionDims dims{8, 2, 32};
  const int64_t hd = 32, n = 100, capacity = 100, q_stride = 8 * hd, window = 23;
  const auto q = random_vec(size_t(n * q_stride), 18);
  const auto kc = random_vec(size_t(2 * capacity * hd), 19);
  const auto vc = random_vec(size_t(2 * capacity * hd), 20);
  std::vector<float> scratch(static_cast<size_t>(attention_scratch_floats(dims, n, n, 2)));
  std::vector<float> full(static_cast<size_t>(n * q_stride)), parts(full.size()), steps(full.size());
  causal_attention(q.data(), q_stride, n, 0, kc.data(), vc.data(), capacity, dims, 0.2f, full.data(), q_stride,
                   scratch.data(), 2, window);
  int64_t pos = 0;
  for (int64_t len : {60, 1, 39}) {
    causal_attention(q.data() + pos * q_stride, q_stride, len, pos, kc.data(), vc.data(), capacity, dims, 0.2f,
                     parts.data() + pos * q_stride, q_stride, scratch.data(), 2, window);
    pos += len;
  }
  for (int64_t p = 0; p < n; ++p)
    causal_attention(q.data() + p * q_stride, q_stride, 1, p, kc.data(), vc.data(), capacity, dims, 0.2f,
                     steps.data() + p * q_stride, q_stride, scratch.data(), 1, window);
  for (size_t i = 0; i < full.size(); ++i) {
    ASSERT_NEAR(full[i], parts[i], 1e-5) << i;
    ASSERT_NEAR(full[i], steps[i], 1e-5) << i;
  }
}
