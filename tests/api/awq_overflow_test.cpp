// AWQ's scale search on weights near FLT_MAX (a fresh-user test: kq quantize
// --mode awq crashed, or blamed a finite weight for an "inf"): candidates whose
// scaled weight W·diag(s) or output error is not finite are skipped, α = 0
// (plain round-to-nearest) is always a candidate, and with no finite error at
// all the result is plain round-to-nearest.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "api/awq.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/optimizer.hpp"

using namespace kq;

namespace {

Tensor random_matrix(int64_t R, int64_t C, uint32_t seed) {
  Tensor t = Tensor::empty(DType::F32, {R, C});
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  float* p = t.mutable_data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(g);
  return t;
}

/// S rows of K inputs; channels k % 37 == 5 are 30x the others (AWQ scales them up).
awq::ActivationStats outlier_stats(int64_t S, int64_t K, uint32_t seed) {
  awq::ActivationStats st;
  st.sum_abs.assign(size_t(K), 0.0);
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t r = 0; r < S; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const float v = d(g) * (k % 37 == 5 ? 30.0f : 1.0f);
      st.samples.push_back(v);
      st.sum_abs[size_t(k)] += std::fabs(double(v));
    }
  st.rows = st.sample_rows = S;
  return st;
}

/// The op's weight equals plain round-to-nearest of `w` in the AWQ base format.
void expect_plain_rtn(const Tensor& w, const Linear& op, const QuantSpec& spec) {
  QuantSpec rtn = spec;
  rtn.awq = false;
  const Tensor a = op.dequantized_weight(), b = quantize_linear(w, Tensor(), rtn)->dequantized_weight();
  ASSERT_EQ(a.numel(), b.numel());
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data<float>()[i], b.data<float>()[i]) << i;
}

}  // namespace

// 3e38 in a column AWQ scales up (s_5 > 1): W·diag(s) overflows for every α > 0
// (this threw "quantize_weight: weight has a non-finite value inf at [0, 0]"),
// and the reference output X·Wᵀ overflows in most rows (every error was NaN and
// the search dereferenced a scale vector it never chose: a segfault).
TEST(AwqOverflow, WeightNearFltMaxInAScaledUpColumn) {
  const int64_t N = 48, K = 256, S = 64;
  Tensor w = random_matrix(N, K, 21);
  w.mutable_data<float>()[5] = 3e38f;
  const awq::ActivationStats st = outlier_stats(S, K, 22);
  const QuantSpec spec = parse_quant_mode("awq-g128");
  awq::ScaleSearch r;
  ASSERT_NO_THROW(r = awq::search_scales(w, Tensor(), st, spec, 20));
  ASSERT_TRUE(r.op);
  EXPECT_TRUE(std::isfinite(r.rtn_error)) << r.rtn_error;
  EXPECT_TRUE(std::isfinite(r.error)) << r.error;
  EXPECT_LE(r.error, r.rtn_error);  // never worse than plain round-to-nearest
  // α >= 0.1 makes s_5 > FLT_MAX / 3e38: those candidates were skipped.
  EXPECT_LT(r.alpha, 0.1f);
  const Tensor dq = r.op->dequantized_weight();
  for (int64_t i = 0; i < dq.numel(); ++i) ASSERT_TRUE(std::isfinite(dq.data<float>()[i])) << i;
}

// 3e38 in an ordinary column: the overflowing reference outputs are left out
// of the objective, the other rows still choose α, and the result is finite.
TEST(AwqOverflow, WeightNearFltMaxInAnOrdinaryColumn) {
  const int64_t N = 48, K = 256, S = 64;
  Tensor w = random_matrix(N, K, 23);
  w.mutable_data<float>()[0] = 3e38f;
  const awq::ActivationStats st = outlier_stats(S, K, 24);
  const QuantSpec spec = parse_quant_mode("awq-g128");
  awq::ScaleSearch r;
  ASSERT_NO_THROW(r = awq::search_scales(w, Tensor(), st, spec, 20));
  ASSERT_TRUE(r.op);
  EXPECT_TRUE(std::isfinite(r.error)) << r.error;
  EXPECT_LE(r.error, r.rtn_error);
  // The same in a group of linears (Llama's q/k/v) with the huge weight in one member.
  const Tensor ws[] = {w, random_matrix(16, K, 25)};
  const Tensor bs[] = {Tensor(), Tensor()};
  std::vector<awq::ScaleSearch> g;
  ASSERT_NO_THROW(g = awq::search_group_scales(ws, bs, st, spec, 20));
  ASSERT_EQ(g.size(), 2u);
  EXPECT_TRUE(g[0].op && g[1].op);
  EXPECT_LE(g[0].error, g[0].rtn_error);
}

// Inputs that overflowed upstream (an earlier layer's huge weight): no
// reference output is finite, no error is known (NaN) and the search falls
// back to plain round-to-nearest instead of crashing.
TEST(AwqOverflow, NoFiniteReferenceFallsBackToRoundToNearest) {
  const int64_t N = 32, K = 128, S = 16;
  const Tensor w = random_matrix(N, K, 26);
  awq::ActivationStats st = outlier_stats(S, K, 27);
  for (float& v : st.samples) v = INFINITY;
  for (double& a : st.sum_abs) a = INFINITY;
  const QuantSpec spec = parse_quant_mode("awq-g128");
  awq::ScaleSearch r;
  ASSERT_NO_THROW(r = awq::search_scales(w, Tensor(), st, spec, 20));
  ASSERT_TRUE(r.op);
  EXPECT_EQ(r.alpha, 0.0f);
  EXPECT_TRUE(std::isnan(r.error)) << r.error;
  EXPECT_FALSE(r.clipped);
  expect_plain_rtn(w, *r.op, spec);
}

// A weight that is itself not finite is the input's fault: named as the other
// modes name it (quantize_weight), not hidden by skipping.
TEST(AwqOverflow, NonFiniteWeightIsStillAnError) {
  Tensor w = random_matrix(32, 128, 28);
  w.mutable_data<float>()[3] = INFINITY;
  const awq::ActivationStats st = outlier_stats(16, 128, 29);
  EXPECT_THROW(awq::search_scales(w, Tensor(), st, parse_quant_mode("awq-g128"), 20), InvalidArgument);
}
