// Round-to-nearest weight quantization: error bounds per format, tails, sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/rtn_modes.hpp"
#include "common/tolerances.hpp"
#include "formats/fp4.hpp"
#include "formats/nf4.hpp"
#include "kq/error.hpp"
#include "quant/packed_weight.hpp"
#include "quant/test_weights.hpp"

namespace kq {
namespace {

using testing::gaussian_weight;

struct Shape2 {
  int64_t N, K;
};
constexpr Shape2 kShapes[] = {{7, 688}, {5, 100}, {3, 33}, {4, 1}, {1, 256}, {9, 64}};

using testing::values;

double rel_rms(const Tensor& ta, const Tensor& tb) {
  const std::vector<float> a = values(ta), b = values(tb);
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(a[i]) * double(a[i]);
  }
  return std::sqrt(num / den);
}

double mse(const Tensor& ta, const Tensor& tb) {
  const std::vector<float> a = values(ta), b = values(tb);
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return s / double(a.size());
}

class RtnAllModes : public ::testing::TestWithParam<std::string> {};

TEST_P(RtnAllModes, SizesShapesAndReconstruction) {
  const QuantSpec spec = parse_quant_mode(GetParam());
  for (const Shape2& sh : kShapes) {
    const Tensor w = gaussian_weight(sh.N, sh.K, uint32_t(sh.N * 1000 + sh.K));
    const PackedWeight p = quantize_weight(w, spec);
    EXPECT_EQ(p.bytes(), quantized_weight_bytes(spec, sh.N, sh.K)) << sh.N << "x" << sh.K;
    const Tensor d = p.dequantize();
    ASSERT_EQ(d.shape(), (Shape{sh.N, sh.K}));
    for (float v : values(d)) ASSERT_TRUE(std::isfinite(v));
    if (sh.K >= 64) {  // few elements: a noisier estimate, 25 % slack
      EXPECT_LE(rel_rms(w, d), 1.25 * testing::max_rel_rms_error(spec)) << sh.N << "x" << sh.K;
    }
  }
  // A larger matrix for a stable RMS estimate.
  const Tensor w = gaussian_weight(64, 688, 11);
  EXPECT_LE(rel_rms(w, quantize_weight(w, spec).dequantize()), testing::max_rel_rms_error(spec));
}

INSTANTIATE_TEST_SUITE_P(Modes, RtnAllModes, ::testing::ValuesIn(kq::testing::rtn_mode_names()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string n = p.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(RtnInt8, PerChannelHalfStepAndBeatsPerTensor) {
  const Tensor w = gaussian_weight(16, 688, 3, 0.05f, 20.0f);  // rows spanning 20x in magnitude
  const PackedWeight pc = quantize_weight(w, parse_quant_mode("int8-wo"));
  const PackedWeight pt = quantize_weight(w, parse_quant_mode("int8-pt-wo"));
  const Tensor dc = pc.dequantize(), dt = pt.dequantize();
  const std::vector<float> wp = values(w), dcv = values(dc), dtv = values(dt), scales = values(pc.scales);
  const std::vector<int8_t> codes = values<int8_t>(pc.codes);
  for (size_t n = 0; n < 16; ++n) {
    float amax = 0;
    for (size_t k = 0; k < 688; ++k) amax = std::max(amax, std::fabs(wp[n * 688 + k]));
    const float s = scales[n];
    EXPECT_FLOAT_EQ(s, amax / 127.0f);
    for (size_t k = 0; k < 688; ++k) {
      const int8_t q = codes[n * 688 + k];
      EXPECT_GE(q, -127);
      EXPECT_LE(std::fabs(wp[n * 688 + k] - dcv[n * 688 + k]), 0.5f * s * 1.0001f);
      EXPECT_EQ(dcv[n * 688 + k], float(q) * s);
    }
  }
  const float st = values(pt.scales)[0];
  for (size_t i = 0; i < wp.size(); ++i) EXPECT_LE(std::fabs(wp[i] - dtv[i]), 0.5f * st * 1.0001f);
  EXPECT_LT(mse(w, dc), mse(w, dt));
  EXPECT_LT(mse(w, dc), 0.5 * mse(w, dt));
}

TEST(RtnFp8, RelativeErrorOfNormalValues) {
  for (const char* mode : {"fp8", "fp8-e5m2", "fp8-pt"}) {
    const QuantSpec spec = parse_quant_mode(mode);
    const FP8Format f = spec.format == PrecisionFormat::FP8_E4M3 ? FP8Format::E4M3 : FP8Format::E5M2;
    const float min_normal = f == FP8Format::E4M3 ? std::ldexp(1.0f, -6) : std::ldexp(1.0f, -14);
    const float half_min_sub = f == FP8Format::E4M3 ? std::ldexp(1.0f, -10) : std::ldexp(1.0f, -17);
    const Tensor w = gaussian_weight(6, 300, 9, 0.05f, 8.0f);
    const PackedWeight p = quantize_weight(w, spec);
    const std::vector<float> wv = values(w), d = values(p.dequantize());
    for (int64_t n = 0; n < 6; ++n) {
      float s;
      p.row_scales(n, &s);
      for (int64_t k = 0; k < 300; ++k) {
        const float x = wv[size_t(n * 300 + k)], y = d[size_t(n * 300 + k)];
        if (std::fabs(x) / s >= min_normal) {
          EXPECT_LE(std::fabs(x - y), testing::fp8_rel_error_bound(f) * std::fabs(x) * 1.0001) << mode;
        } else {
          EXPECT_LE(std::fabs(x - y), half_min_sub * s * 1.0001f) << mode;
        }
      }
    }
  }
}

// NF4/FP4: every element decodes to the codebook entry nearest to w / ŝ, with ŝ
// the stored (possibly double-quantized) block scale close to absmax (or absmax/6).
void check_codebook_nearest(const std::string& mode, const float* book, float scale_divisor) {
  const QuantSpec spec = parse_quant_mode(mode);
  const int64_t N = 5, K = 688, B = spec.block_size;
  const Tensor w = gaussian_weight(N, K, 21, 0.05f, 4.0f);
  const PackedWeight p = quantize_weight(w, spec);
  const std::vector<float> d = values(p.dequantize()), wp = values(w);
  std::vector<float> sc(static_cast<size_t>(p.blocks_per_row));
  double max_dev = 0;  // largest |s - mean| of the true scales, for the double-quant bound
  std::vector<float> truth;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < p.blocks_per_row; ++b) {
      float amax = 0;
      for (int64_t k = b * B; k < std::min(K, (b + 1) * B); ++k) amax = std::max(amax, std::fabs(wp[size_t(n * K + k)]));
      truth.push_back(amax / scale_divisor);
    }
  double mean = 0;
  for (float t : truth) mean += t;
  mean /= double(truth.size());
  for (float t : truth) max_dev = std::max(max_dev, std::fabs(t - mean));
  for (int64_t n = 0; n < N; ++n) {
    p.row_scales(n, sc.data());
    for (int64_t b = 0; b < p.blocks_per_row; ++b) {
      const float s = sc[size_t(b)], want = truth[size_t(n * p.blocks_per_row + b)];
      if (spec.double_quant) {
        EXPECT_LE(std::fabs(s - want), testing::kDoubleQuantRelError * max_dev * 1.001 + 1e-9) << mode;
      } else {
        EXPECT_EQ(s, want) << mode;
      }
      for (int64_t k = b * B; k < std::min(K, (b + 1) * B); ++k) {
        const float x = wp[size_t(n * K + k)], y = d[size_t(n * K + k)];
        float best = INFINITY;
        for (int c = 0; c < 16; ++c) best = std::min(best, std::fabs(x - book[c] * s));
        EXPECT_LE(std::fabs(x - y), best * 1.00001f + 1e-12f) << mode << " [" << n << ", " << k << "]";
      }
    }
  }
}

TEST(RtnCodebook, NF4NearestEntry) {
  for (const char* m : {"nf4", "nf4-nodq", "nf4-b32", "nf4-b256-nodq"}) check_codebook_nearest(m, formats::kNF4.data(), 1.0f);
}

TEST(RtnCodebook, FP4NearestEntry) {
  for (const char* m : {"fp4", "fp4-nodq", "fp4-b128"}) check_codebook_nearest(m, formats::kE2M1.data(), 6.0f);
}

TEST(RtnInt4, HalfStepBoundsAndExactZero) {
  for (const char* mode : {"int4-g128", "int4-g128-asym", "int4-g32-asym"}) {
    const QuantSpec spec = parse_quant_mode(mode);
    const int64_t N = 3, K = 300, B = spec.block_size;
    Tensor w = gaussian_weight(N, K, 5);
    std::vector<float> wv = values(w);
    wv[7] = 0.0f;
    std::memcpy(w.raw_mut(), wv.data(), wv.size() * sizeof(float));
    const PackedWeight p = quantize_weight(w, spec);
    const std::vector<float> d = values(p.dequantize());
    std::vector<float> sc(static_cast<size_t>(p.blocks_per_row));
    for (int64_t n = 0; n < N; ++n) {
      p.row_scales(n, sc.data());
      for (int64_t k = 0; k < K; ++k) {
        const float x = wv[size_t(n * K + k)], y = d[size_t(n * K + k)];
        EXPECT_LE(std::fabs(x - y), 0.5f * sc[size_t(k / B)] * 1.0001f) << mode;
      }
    }
    EXPECT_EQ(d[7], 0.0f) << mode;
  }
}

TEST(Rtn, TailBlockPaddingAndAllZeroBlocks) {
  Tensor w = gaussian_weight(3, 33, 2);
  std::vector<float> wv = values(w);
  for (size_t k = 0; k < 32; ++k) wv[33 + k] = 0.0f;  // row 1, block 0 all zero
  std::memcpy(w.raw_mut(), wv.data(), wv.size() * sizeof(float));
  for (const char* mode : {"nf4-b32", "fp4-b32-nodq", "int4-g32", "int4-g32-asym"}) {
    const PackedWeight p = quantize_weight(w, parse_quant_mode(mode));
    EXPECT_EQ(p.blocks_per_row, 2);
    const std::vector<uint8_t> codes = values<uint8_t>(p.codes);
    for (size_t n = 0; n < 3; ++n) EXPECT_EQ(codes[n * 17 + 16] >> 4, 0) << mode;
    const std::vector<float> d = values(p.dequantize());
    for (size_t k = 0; k < 32; ++k) EXPECT_EQ(d[33 + k], 0.0f) << mode;
    // The one-element tail block (its own absmax) reproduces its element up to half a step.
    EXPECT_NEAR(d[32], wv[32], 0.5 * std::fabs(wv[32]) + 1e-7) << mode;
  }
}

TEST(Rtn, RejectsBadWeights) {
  Tensor w = gaussian_weight(4, 8, 1);
  std::vector<float> wv = values(w);
  wv[2 * 8 + 5] = NAN;
  std::memcpy(w.raw_mut(), wv.data(), wv.size() * sizeof(float));
  try {
    quantize_weight(w, parse_quant_mode("nf4"));
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 5]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_weight(Tensor::zeros(DType::F32, {8}), parse_quant_mode("int8")), InvalidArgument);
  EXPECT_THROW(quantize_weight(Tensor::zeros(DType::F32, {0, 8}), parse_quant_mode("int8")), InvalidArgument);
  EXPECT_THROW(quantize_weight(Tensor::zeros(DType::I32, {2, 8}), parse_quant_mode("int8")), InvalidArgument);
  QuantSpec bad = parse_quant_mode("nf4");
  bad.block_size = 100;
  EXPECT_THROW(quantize_weight(gaussian_weight(2, 8, 1), bad), InvalidArgument);
}

TEST(Rtn, AcceptsBF16Weights) {
  const Tensor w = gaussian_weight(3, 70, 4);
  Tensor b = Tensor::empty(DType::BF16, {3, 70});
  const std::vector<float> wv = values(w);
  std::vector<uint16_t> bv(wv.size());
  for (size_t i = 0; i < wv.size(); ++i) bv[i] = f32_to_bf16(wv[i]);
  std::memcpy(b.raw_mut(), bv.data(), bv.size() * sizeof(uint16_t));
  const PackedWeight p = quantize_weight(b, parse_quant_mode("int8"));
  EXPECT_EQ(p.bytes(), quantized_weight_bytes(parse_quant_mode("int8"), 3, 70));
  EXPECT_LE(rel_rms(w, p.dequantize()), 0.02);
}

}  // namespace
}  // namespace kq
