// The 16-bit (BF16 / F16) unquantized Linear: the scalar reference kernel and
// every optimized ISA's kernel against a double recomputation over the exactly
// converted weights, decode (M = 1) and prefill rows, odd shapes (N and K not
// multiples of the vector width, K past one chunk, N over two GEMM panels);
// the op (make_linear_w16) against the FP32 Linear over the same values.
#include "kernels/linear_w16.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "isa_test_util.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"

namespace kq::testing {
namespace {

using cpu::Isa;

struct W16Shape {
  int64_t N, K;
};
// {2100, 2100}: the AVX2 GEMM converts panels of 1984 rows there (2^22 / K, rounded down to 16), so 2.
constexpr W16Shape kW16Shapes[] = {{7, 688}, {5, 33}, {9, 1}, {3, 100}, {1, 256}, {13, 64}, {6, 4133}, {2100, 2100}};
constexpr int64_t kW16Batches[] = {1, 2, 3, 4, 8, 17};  // 2..4: the AVX2 small-batch path

/// A random weight N(0, 1) [N, K] in `dtype` (BF16 or F16) bits.
std::vector<uint16_t> random_w16(int64_t N, int64_t K, DType dtype, uint32_t seed) {
  const std::vector<float> f = gaussian(size_t(N * K), seed);
  std::vector<uint16_t> w(f.size());
  convert_from_f32(dtype, f.data(), w.data(), f.size());
  return w;
}

/// ref[m, n] = Σ x·f32(w) + bias in double, mag[m, n] = Σ |x·f32(w)| + |bias|.
void double_reference(const std::vector<uint16_t>& w, DType dtype, const float* bias, const std::vector<float>& x,
                      int64_t M, int64_t N, int64_t K, std::vector<double>& ref, std::vector<double>& mag) {
  std::vector<float> wf(w.size());
  convert_to_f32(dtype, w.data(), wf.data(), w.size());
  ref.assign(size_t(M * N), 0.0);
  mag.assign(size_t(M * N), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = bias ? double(bias[n]) : 0.0, a = bias ? std::fabs(double(bias[n])) : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double t = double(x[size_t(m * K + k)]) * double(wf[size_t(n * K + k)]);
        s += t;
        a += std::fabs(t);
      }
      ref[size_t(m * N + n)] = s;
      mag[size_t(m * N + n)] = a;
    }
}

/// Runs `kernels`' 16-bit GEMM over every shape, batch, dtype and bias choice
/// and checks it against the double reference within forward_tolerance.
void check_against_double(const cpu::QuantKernels& kernels, const std::string& isa) {
  for (const DType dtype : {DType::BF16, DType::F16})
    for (const W16Shape s : kW16Shapes)
      for (const bool with_bias : {false, true}) {
        const std::vector<uint16_t> w = random_w16(s.N, s.K, dtype, uint32_t(s.N * 131 + s.K));
        const std::vector<float> b = gaussian(size_t(s.N), 7);
        cpu::W16WeightView v;
        v.w = w.data();
        v.dtype = dtype;
        v.bias = with_bias ? b.data() : nullptr;
        v.N = s.N;
        v.K = s.K;
        for (const int64_t M : kW16Batches) {
          if (s.N * s.K > 100000 && M > 3) continue;  // the big shape: decode and one prefill batch
          const std::vector<float> x = gaussian(size_t(M * s.K), uint32_t(M + 3));
          std::vector<float> y(size_t(M * s.N), std::nanf(""));
          kernels.gemm_f32w16_f32(v, x.data(), M, y.data(), 2);
          std::vector<double> ref, mag;
          double_reference(w, dtype, v.bias, x, M, s.N, s.K, ref, mag);
          expect_within_tolerance(y, ref, mag, M, s.N, s.K,
                                  isa + " " + std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) +
                                      " K=" + std::to_string(s.K) + " M=" + std::to_string(M) +
                                      (with_bias ? " bias" : ""));
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
}

TEST(LinearW16Ref, MatchesDoubleReference) { check_against_double(cpu::quant_kernels(Isa::Ref), "ref"); }

// The reference kernel is the oracle of the decode/prefill contract: a row's
// bits depend neither on M nor on the thread count.
TEST(LinearW16Ref, DecodeEqualsPrefillAndThreadInvariant) {
  const int64_t M = 11, N = 37, K = 700;
  for (const DType dtype : {DType::BF16, DType::F16}) {
    const std::vector<uint16_t> w = random_w16(N, K, dtype, 5);
    cpu::W16WeightView v{w.data(), dtype, nullptr, N, K};
    const std::vector<float> x = gaussian(size_t(M * K), 6);
    expect_batch_and_thread_invariant(
        M, N, K, x,
        [&](int64_t m, const float* xp, float* y, int threads) {
          cpu::quant_kernels(Isa::Ref).gemm_f32w16_f32(v, xp, m, y, threads);
        },
        std::string("ref ") + std::string(dtype_name(dtype)));
  }
}

class LinearW16Isa : public ::testing::TestWithParam<Isa> {};

TEST_P(LinearW16Isa, MatchesDoubleReference) {
  KQ_REQUIRE_ISA(GetParam());
  check_against_double(cpu::quant_kernels(GetParam()), std::string(cpu::isa_name(GetParam())));
}

// The optimized decode path (GEMV) against the reference, row by row, and
// its thread invariance (rows are split over threads, never K).
TEST_P(LinearW16Isa, DecodeAgreesWithReferenceAndIsThreadInvariant) {
  KQ_REQUIRE_ISA(GetParam());
  const int64_t N = 61, K = 1031;
  for (const DType dtype : {DType::BF16, DType::F16}) {
    const std::vector<uint16_t> w = random_w16(N, K, dtype, 9);
    const std::vector<float> b = gaussian(size_t(N), 10);
    cpu::W16WeightView v{w.data(), dtype, b.data(), N, K};
    const std::vector<float> x = gaussian(size_t(K), 11);
    std::vector<float> y_ref(static_cast<size_t>(N)), y1(static_cast<size_t>(N)), y3(static_cast<size_t>(N));
    cpu::quant_kernels(Isa::Ref).gemm_f32w16_f32(v, x.data(), 1, y_ref.data(), 1);
    cpu::quant_kernels(GetParam()).gemm_f32w16_f32(v, x.data(), 1, y1.data(), 1);
    cpu::quant_kernels(GetParam()).gemm_f32w16_f32(v, x.data(), 1, y3.data(), 3);
    std::vector<double> ref, mag;
    double_reference(w, dtype, b.data(), x, 1, N, K, ref, mag);
    for (int64_t n = 0; n < N; ++n) {
      EXPECT_EQ(y1[size_t(n)], y3[size_t(n)]) << "threads 1 vs 3, row " << n;
      EXPECT_NEAR(y1[size_t(n)], y_ref[size_t(n)], 2 * forward_tolerance(K, mag[size_t(n)])) << "row " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, LinearW16Isa, ::testing::ValuesIn(kOptimizedIsas), isa_param_name);

/// A BF16 / F16 tensor [N, K] of random N(0, 1) values and its exact F32 copy.
std::pair<Tensor, Tensor> random_weight_pair(int64_t N, int64_t K, DType dtype, uint32_t seed) {
  const std::vector<uint16_t> bits = random_w16(N, K, dtype, seed);
  Tensor w = Tensor::empty(dtype, {N, K});
  std::copy(bits.begin(), bits.end(), w.mutable_data<uint16_t>());
  return {w, w.to_f32()};
}

// The op against the FP32 Linear over the same (exactly converted) values:
// the same sums in F32, so they agree within the F32 summation bound.
TEST(LinearW16Op, AgreesWithTheFp32LinearOverTheSameValues) {
  const int64_t N = 45, K = 300;
  for (const DType dtype : {DType::BF16, DType::F16}) {
    const auto [w16, w32] = random_weight_pair(N, K, dtype, 21);
    Tensor b = Tensor::empty(DType::F32, {N});
    const std::vector<float> bv = gaussian(size_t(N), 22);
    std::copy(bv.begin(), bv.end(), b.mutable_data<float>());
    const auto op16 = make_linear_w16(w16, b);
    const auto op32 = make_linear_f32(w32, b);
    EXPECT_EQ(op16->format(), dtype == DType::BF16 ? "bf16" : "f16");
    EXPECT_EQ(op16->weight_bytes(), size_t(2 * N * K + 4 * N));
    EXPECT_EQ(op16->in_features(), K);
    EXPECT_EQ(op16->out_features(), N);
    const Tensor dq = op16->dequantized_weight();
    ASSERT_EQ(dq.dtype(), DType::F32);
    for (int64_t i = 0; i < N * K; ++i) ASSERT_EQ(dq.data<float>()[i], w32.data<float>()[i]) << i;
    ASSERT_NE(linear_w16_weight(*op16), nullptr);
    EXPECT_EQ(linear_w16_weight(*op16)->raw(), w16.raw());  // shared, not copied
    EXPECT_EQ(linear_w16_weight(*op32), nullptr);
    for (const int64_t M : {int64_t(1), int64_t(5)}) {
      const std::vector<float> x = gaussian(size_t(M * K), uint32_t(30 + M));
      std::vector<float> y16(static_cast<size_t>(M * N)), y32(static_cast<size_t>(M * N));
      op16->forward(x.data(), M, y16.data(), ExecContext{});
      op32->forward(x.data(), M, y32.data(), ExecContext{});
      std::vector<float> wf(static_cast<size_t>(N * K));
      std::copy(w32.data<float>(), w32.data<float>() + N * K, wf.begin());
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double mag = std::fabs(double(bv[size_t(n)]));
          for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(x[size_t(m * K + k)]) * wf[size_t(n * K + k)]);
          const size_t i = size_t(m * N + n);
          EXPECT_NEAR(y16[i], y32[i], 2 * forward_tolerance(K, mag)) << "M=" << M << " [" << m << ", " << n << "]";
        }
    }
  }
}

TEST(LinearW16Op, RejectsBadWeightsAndBiases) {
  const auto [w16, w32] = random_weight_pair(4, 8, DType::BF16, 1);
  EXPECT_THROW(make_linear_w16(w32), InvalidArgument);  // F32: make_linear_f32's job
  EXPECT_THROW(make_linear_w16(Tensor()), InvalidArgument);
  EXPECT_THROW(make_linear_w16(w16.reshaped({32})), InvalidArgument);
  EXPECT_THROW(make_linear_w16(Tensor::empty(DType::BF16, {0, 8})), InvalidArgument);
  EXPECT_THROW(make_linear_w16(w16, Tensor::zeros(DType::F32, {3})), InvalidArgument);
  EXPECT_THROW(make_linear_w16(w16, Tensor::zeros(DType::BF16, {4})), InvalidArgument);
  EXPECT_NO_THROW(make_linear_w16(w16, Tensor::zeros(DType::F32, {4})));
  EXPECT_THROW(make_linear_f32(w32, Tensor(), DType::I8), InvalidArgument);
  EXPECT_EQ(linear_f32_disk_dtype(*make_linear_f32(w32, Tensor(), DType::BF16)), DType::BF16);
  EXPECT_EQ(linear_f32_disk_dtype(*make_linear_f32(w32)), DType::F32);
}

}  // namespace
}  // namespace kq::testing
