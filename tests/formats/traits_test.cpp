// The traits table and the double-quantization code.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "common/tolerances.hpp"
#include "formats/double_quant.hpp"
#include "formats/int8.hpp"
#include "formats/nf4.hpp"
#include "formats/packed4.hpp"
#include "formats/traits.hpp"

namespace kq::formats {
namespace {

constexpr WeightFormat kAll[] = {WeightFormat::INT8,     WeightFormat::FP8_E4M3,  WeightFormat::FP8_E5M2,
                                 WeightFormat::NF4,      WeightFormat::FP4,       WeightFormat::INT4_SYM,
                                 WeightFormat::INT4_ASYM, WeightFormat::FP4_BNB};

TEST(Traits, TableIsConsistent) {
  for (WeightFormat f : kAll) {
    const FormatTraits& t = format_traits(f);
    EXPECT_EQ(t.format, f);
    EXPECT_FALSE(t.name.empty());
    EXPECT_TRUE(t.block_params && t.quantize_block && t.dequantize_block);
    if (t.code_bits == 4) {
      EXPECT_GE(t.default_block, t.min_block);
      EXPECT_LE(t.default_block, t.max_block);
    }
  }
  EXPECT_EQ(format_traits(WeightFormat::NF4).bytes_per_block(64), 32u + 4u);
  EXPECT_EQ(format_traits(WeightFormat::INT4_ASYM).bytes_per_block(128), 64u + 4u + 1u);
  EXPECT_EQ(format_traits(WeightFormat::INT8).bytes_per_block(688), 688u + 4u);
  EXPECT_EQ(format_traits(WeightFormat::NF4).default_block, 64);
  EXPECT_EQ(format_traits(WeightFormat::FP4_BNB).name, "fp4_bnb");
  EXPECT_EQ(format_traits(WeightFormat::FP4_BNB).default_block, 64);
  EXPECT_EQ(format_traits(WeightFormat::FP4_BNB).bytes_per_block(64), 32u + 4u);
  EXPECT_EQ(format_traits(WeightFormat::INT4_SYM).default_block, 128);
  EXPECT_EQ(row_code_bytes(WeightFormat::FP4, 33), 17);
  EXPECT_EQ(row_code_bytes(WeightFormat::FP8_E4M3, 33), 33);
  EXPECT_EQ(blocks_per_row(688, 64), 11);
  EXPECT_EQ(blocks_per_row(1, 256), 1);
}

float nf4_widest_gap() {
  float g = 0;
  for (size_t i = 0; i + 1 < 16; ++i) g = std::max(g, kNF4[i + 1] - kNF4[i]);
  return g;
}

// Every format round-trips a block within half a quantization step of its scale.
TEST(Traits, BlockRoundTripBounds) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (WeightFormat f : kAll) {
    const FormatTraits& t = format_traits(f);
    for (int64_t n : {1, 33, 64, 100}) {
      std::vector<float> w(static_cast<size_t>(n)), back(static_cast<size_t>(n));
      for (float& v : w) v = g(rng);
      float s;
      uint8_t z;
      t.block_params(w.data(), n, &s, &z);
      std::vector<uint8_t> codes(static_cast<size_t>(n), 0);
      t.quantize_block(w.data(), n, s, z, codes.data());
      t.dequantize_block(codes.data(), n, s, z, back.data());
      const float amax = absmax(w.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const float err = std::fabs(w[size_t(i)] - back[size_t(i)]);
        float bound = 0;
        switch (f) {
          case WeightFormat::INT8: bound = 0.5f * s; break;
          case WeightFormat::FP8_E4M3: bound = 0.0625f * 1.0001f * std::fabs(w[size_t(i)]) + s * 0.001f; break;
          case WeightFormat::FP8_E5M2: bound = 0.125f * 1.0001f * std::fabs(w[size_t(i)]) + s * 1e-4f; break;
          case WeightFormat::NF4: bound = 0.5f * nf4_widest_gap() * amax * 1.0001f; break;
          case WeightFormat::FP4: bound = 1.0f * s; break;                                     // gap 4..6 = 2·s
          case WeightFormat::FP4_BNB: bound = 0.5f / 3.0f * amax * 1.0001f; break;             // gap 2/3..1
          default: bound = 0.5f * s * 1.0001f; break;
        }
        EXPECT_LE(err, bound) << t.name << " n=" << n << " i=" << i;
      }
    }
  }
}

// The codebook formats' block tables are q4_codebook(f)[c] · scale: bitsandbytes' FP4 by its values (code 8 is -0).
TEST(Traits, Fp4BnbBlockTableIsItsCodebookTimesTheScale) {
  EXPECT_EQ(q4_codebook(WeightFormat::INT4_SYM), nullptr);
  EXPECT_EQ(q4_codebook(WeightFormat::INT8), nullptr);
  ASSERT_NE(q4_codebook(WeightFormat::FP4_BNB), nullptr);
  const float scale = 0.75f;
  float lut[16];
  q4_block_lut(WeightFormat::FP4_BNB, scale, 0, lut);
  const double raw[8] = {0, 0.0625, 8, 12, 4, 6, 2, 3};  // bitsandbytes' get_4bit_type("fp4"), before / 12
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(lut[c], float(raw[c & 7] / 12.0 * (c & 8 ? -1 : 1)) * scale) << c;
    EXPECT_EQ(lut[c], q4_codebook(WeightFormat::FP4_BNB)[c] * scale) << c;
  }
  EXPECT_TRUE(std::signbit(lut[8]));
}

TEST(DoubleQuant, ErrorBoundAndLayout) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.01f, 0.3f);
  const int64_t n = 700;  // 3 groups, the last with 188 scales
  std::vector<float> s(static_cast<size_t>(n)), back(static_cast<size_t>(n));
  for (float& v : s) v = u(rng);
  s[300] = 2.0f;  // an outlier widens group 1 only
  std::vector<int8_t> q(static_cast<size_t>(n));
  std::vector<float> gs(3);
  const float mean = double_quantize(s.data(), n, q.data(), gs.data());
  double sum = 0;
  for (float v : s) sum += v;
  EXPECT_FLOAT_EQ(mean, float(sum / n));
  double_dequantize(q.data(), gs.data(), mean, n, back.data());
  for (int64_t g = 0; g < 3; ++g) {
    float dev = 0;
    for (int64_t i = g * 256; i < std::min(n, (g + 1) * 256); ++i) dev = std::max(dev, std::fabs(s[size_t(i)] - mean));
    EXPECT_FLOAT_EQ(gs[size_t(g)], dev / 127.0f);
    for (int64_t i = g * 256; i < std::min(n, (g + 1) * 256); ++i) {
      EXPECT_LE(std::fabs(back[size_t(i)] - s[size_t(i)]), testing::kDoubleQuantRelError * dev) << i;
      EXPECT_EQ(back[size_t(i)], std::fma(float(q[size_t(i)]), gs[size_t(g)], mean));
    }
  }
  EXPECT_GT(gs[1], 3 * gs[0]);
  // All-equal scales: group scale 0, every code 0, exact decode.
  std::vector<float> same(10, 0.25f);
  float g1;
  std::vector<int8_t> q1(10);
  EXPECT_EQ(double_quantize(same.data(), 10, q1.data(), &g1), 0.25f);
  EXPECT_EQ(g1, 0.0f);
  for (int8_t c : q1) EXPECT_EQ(c, 0);
}

}  // namespace
}  // namespace kq::formats
