// FP32 Linear (oneDNN sgemm prefill, AVX2 GEMV decode) vs a double-precision reference.
#include "kernels/linear_f32.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/linear_f32_kernels.hpp"
#include "kq/error.hpp"

using namespace kq;

namespace {

Tensor random_tensor(Shape shape, uint32_t seed) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  float* p = t.mutable_data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t;
}

// y = x·Wᵀ + b in double.
std::vector<double> reference(const float* x, int64_t M, const Tensor& w, const Tensor& b) {
  const int64_t N = w.dim(0), K = w.dim(1);
  std::vector<double> y(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = b.defined() ? double(b.data<float>()[n]) : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(x[m * K + k]) * double(w.data<float>()[n * K + k]);
      y[size_t(m * N + n)] = s;
    }
  return y;
}

// max |y − ref| / sqrt(K): F32 accumulation error grows like sqrt(K)·eps for ±1 data.
double max_scaled_error(const std::vector<float>& y, const std::vector<double>& ref, int64_t K) {
  double e = 0;
  for (size_t i = 0; i < y.size(); ++i) e = std::max(e, std::fabs(double(y[i]) - ref[i]));
  return e / std::sqrt(double(K));
}

struct Shape3 {
  int64_t M, N, K;
};

}  // namespace

class LinearF32Shapes : public ::testing::TestWithParam<Shape3> {};

TEST_P(LinearF32Shapes, MatchesDoubleReference) {
  const auto [M, N, K] = GetParam();
  Tensor w = random_tensor({N, K}, 1);
  Tensor x = random_tensor({M, K}, 2);
  for (bool with_bias : {false, true}) {
    Tensor b = with_bias ? random_tensor({N}, 3) : Tensor();
    auto op = make_linear_f32(w, b);
    EXPECT_EQ(op->in_features(), K);
    EXPECT_EQ(op->out_features(), N);
    const auto ref = reference(x.data<float>(), M, w, b);
    for (int threads : {1, 2}) {
      std::vector<float> y(static_cast<size_t>(M * N), NAN);
      op->forward(x.data<float>(), M, y.data(), ExecContext{Device::CPU, threads});
      EXPECT_LT(max_scaled_error(y, ref, K), 1e-5)
          << "M=" << M << " N=" << N << " K=" << K << " bias=" << with_bias << " threads=" << threads;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearF32Shapes,
                         ::testing::Values(Shape3{1, 1, 1}, Shape3{1, 7, 13}, Shape3{1, 256, 256},
                                           Shape3{1, 691, 259}, Shape3{1, 513, 2051}, Shape3{2, 33, 65},
                                           Shape3{17, 100, 37}, Shape3{64, 256, 688}, Shape3{130, 67, 129}));

TEST(LinearF32, GemvKernelMatchesSgemm) {
  if (!cpu::gemv_f32_avx2_supported()) GTEST_SKIP() << "CPU without AVX2+FMA";
  for (auto [N, K] : {std::pair<int64_t, int64_t>{5, 3}, {64, 8}, {257, 1031}, {1024, 2048}}) {
    Tensor w = random_tensor({N, K}, 7);
    Tensor x = random_tensor({1, K}, 8);
    std::vector<float> a(static_cast<size_t>(N)), b(static_cast<size_t>(N)), c(static_cast<size_t>(N));
    cpu::gemv_f32_avx2(w.data<float>(), N, K, x.data<float>(), a.data(), 1);
    cpu::gemv_f32_avx2(w.data<float>(), N, K, x.data<float>(), c.data(), 2);
    cpu::gemm_f32_dnnl(x.data<float>(), 1, w.data<float>(), N, K, b.data(), 2);
    const auto ref = reference(x.data<float>(), 1, w, Tensor());
    EXPECT_EQ(a, c) << "the row split over threads must not change results";
    EXPECT_LT(max_scaled_error(a, ref, K), 1e-5);
    EXPECT_LT(max_scaled_error(b, ref, K), 1e-5);
  }
}

TEST(LinearF32, SharesWeightAndCountsBytes) {
  Tensor w = random_tensor({12, 8}, 4);
  Tensor b = random_tensor({12}, 5);
  auto op = make_linear_f32(w, b);
  EXPECT_EQ(op->weight_bytes(), size_t(12 * 8 * 4 + 12 * 4));
  EXPECT_EQ(op->format(), "f32");
  EXPECT_EQ(linear_f32_weight(*op)->data<float>(), w.data<float>());  // the op holds `w`, not a copy
  // dequantized_weight() is a copy (it was a writable view of the op's weight: a const method changed the model).
  Tensor d = op->dequantized_weight();
  EXPECT_NE(d.data<float>(), w.data<float>());
  EXPECT_TRUE(std::equal(w.data<float>(), w.data<float>() + w.numel(), d.data<float>()));
  d.mutable_data<float>()[0] = w.data<float>()[0] + 1.0f;
  EXPECT_NE(op->dequantized_weight().data<float>()[0], d.data<float>()[0]);
  // bias() is a copy too, with the same values.
  EXPECT_NE(op->bias().data<float>(), b.data<float>());
  EXPECT_TRUE(std::equal(b.data<float>(), b.data<float>() + b.numel(), op->bias().data<float>()));
  EXPECT_EQ(linear_f32_weight_data(*op), w.data<float>());
  EXPECT_FALSE(make_linear_f32(w)->bias().defined());
}

TEST(LinearF32, RejectsBadTensors) {
  Tensor w = random_tensor({4, 3}, 6);
  EXPECT_THROW(make_linear_f32(Tensor()), InvalidArgument);
  EXPECT_THROW(make_linear_f32(Tensor::zeros(DType::BF16, {4, 3})), InvalidArgument);
  EXPECT_THROW(make_linear_f32(w.reshaped({12})), InvalidArgument);
  EXPECT_THROW(make_linear_f32(Tensor::zeros(DType::F32, {0, 3})), InvalidArgument);
  EXPECT_THROW(make_linear_f32(w, Tensor::zeros(DType::F32, {3})), InvalidArgument);
  EXPECT_THROW(make_linear_f32(w, Tensor::zeros(DType::F16, {4})), InvalidArgument);
}
