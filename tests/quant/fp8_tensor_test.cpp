// Tensor-level FP8: quantize_to_fp8 / dequantize_from_fp8.
#include <gtest/gtest.h>

#include <cmath>

#include "kq/error.hpp"
#include "kq/quantize.hpp"
#include "quant/test_weights.hpp"

namespace kq {
namespace {

TEST(Fp8Tensor, PerChannelAndPerTensorRoundTrip) {
  const Tensor x = testing::gaussian_weight(5, 40, 8, 1.0f, 100.0f);
  for (FP8Format f : {FP8Format::E4M3, FP8Format::E5M2})
    for (ScaleGranularity g : {ScaleGranularity::PerTensor, ScaleGranularity::PerChannel, ScaleGranularity::PerToken}) {
      FP8Config c;
      c.format = f;
      c.weight_scales = g;
      const Fp8Tensor q = quantize_to_fp8(x, c);
      EXPECT_EQ(q.codes.dtype(), DType::U8);
      EXPECT_EQ(q.codes.shape(), x.shape());
      EXPECT_EQ(q.scales.dim(0), g == ScaleGranularity::PerTensor ? 1 : 5);
      const std::vector<float> d = testing::values(dequantize_from_fp8(q)), xv = testing::values(x),
                               sv = testing::values(q.scales);
      const size_t rows = g == ScaleGranularity::PerTensor ? 1 : 5;
      for (size_t r = 0; r < rows; ++r) {
        float amax = 0;
        for (size_t i = r * (200 / rows); i < (r + 1) * (200 / rows); ++i) amax = std::max(amax, std::fabs(xv[i]));
        EXPECT_FLOAT_EQ(sv[r], amax / fp8_max(f));
      }
      const double bound = f == FP8Format::E4M3 ? 0.0625 : 0.125;
      for (size_t i = 0; i < xv.size(); ++i) {
        const float a = xv[i], b = d[i];
        const float s = sv[g == ScaleGranularity::PerTensor ? 0 : i / 40];
        EXPECT_LE(std::fabs(a - b), bound * 1.0001 * std::fabs(a) + s * 0.001f);
      }
    }
}

TEST(Fp8Tensor, SaturationInfAndNaN) {
  Tensor x = Tensor::empty(DType::F32, {4});
  float* p = x.mutable_data<float>();
  ASSERT_NE(p, nullptr);
  p[0] = 2.0f;
  p[1] = -INFINITY;
  p[2] = NAN;
  p[3] = 0.5f;
  FP8Config c;
  c.weight_scales = ScaleGranularity::PerTensor;
  std::vector<float> d = testing::values(dequantize_from_fp8(quantize_to_fp8(x, c)));
  EXPECT_EQ(d[0], 2.0f);   // scale = 2 / 448 from the finite absmax
  EXPECT_EQ(d[1], -2.0f);  // -Inf saturates to -max · scale
  EXPECT_TRUE(std::isnan(d[2]));
  c.saturate = false;
  d = testing::values(dequantize_from_fp8(quantize_to_fp8(x, c)));
  EXPECT_TRUE(std::isnan(d[1]));  // E4M3 has no Inf
  c.format = FP8Format::E5M2;
  d = testing::values(dequantize_from_fp8(quantize_to_fp8(x, c)));
  EXPECT_EQ(d[1], -INFINITY);
}

TEST(Fp8Tensor, Errors) {
  FP8Config c;
  c.weight_scales = ScaleGranularity::PerGroup;
  EXPECT_THROW(quantize_to_fp8(Tensor::zeros(DType::F32, {2, 2}), c), InvalidArgument);
  c.weight_scales = ScaleGranularity::PerChannel;
  EXPECT_THROW(quantize_to_fp8(Tensor::zeros(DType::I32, {2, 2}), c), InvalidArgument);
  EXPECT_THROW(quantize_to_fp8(Tensor(), c), InvalidArgument);
  Fp8Tensor t = quantize_to_fp8(Tensor::zeros(DType::F32, {3, 2}), c);
  t.scales = Tensor::zeros(DType::F32, {2});
  EXPECT_THROW(dequantize_from_fp8(t), InvalidArgument);
  t.scales = Tensor::zeros(DType::F32, {3});
  t.codes = Tensor::zeros(DType::F32, {3, 2});
  EXPECT_THROW(dequantize_from_fp8(t), InvalidArgument);
}

}  // namespace
}  // namespace kq
