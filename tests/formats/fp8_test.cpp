// OCP OFP8 rev 1.0 conformance of the FP8 codec: every code, every midpoint,
// overflow in both modes, specials, subnormals.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "formats/fp8.hpp"

namespace kq::formats {
namespace {

struct Fields {
  int ebits, mbits, bias;
  bool ieee;  // E5M2: IEEE-like Inf/NaN at the top exponent
};
Fields fields(FP8Format f) { return f == FP8Format::E4M3 ? Fields{4, 3, 7, false} : Fields{5, 2, 15, true}; }

// Value of a code computed from its sign/exponent/mantissa fields (independent of the library table).
double expected_value(int code, FP8Format f) {
  const Fields F = fields(f);
  const int e = (code >> F.mbits) & ((1 << F.ebits) - 1);
  const int m = code & ((1 << F.mbits) - 1);
  const int emax = (1 << F.ebits) - 1;
  const double sign = (code & 0x80) ? -1.0 : 1.0;
  if (F.ieee && e == emax) return m == 0 ? sign * INFINITY : NAN;
  if (!F.ieee && e == emax && m == (1 << F.mbits) - 1) return NAN;
  if (e == 0) return sign * std::ldexp(double(m), 1 - F.bias - F.mbits);
  return sign * std::ldexp(double((1 << F.mbits) + m), e - F.bias - F.mbits);
}

bool is_nan_code(int c, FP8Format f) { return std::isnan(expected_value(c, f)); }
bool is_inf_code(int c, FP8Format f) { return std::isinf(expected_value(c, f)); }

// Finite non-negative codes sorted by value (code order is value order for them).
std::vector<int> finite_positive_codes(FP8Format f) {
  std::vector<int> c;
  for (int i = 0; i < 128; ++i)
    if (!is_nan_code(i, f) && !is_inf_code(i, f)) c.push_back(i);
  return c;
}

class Fp8Test : public ::testing::TestWithParam<FP8Format> {};

TEST_P(Fp8Test, AllCodesDecodeToSpecValues) {
  const FP8Format f = GetParam();
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const double want = expected_value(c, f);
    const float got = fp8_decode(uint8_t(c), f);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      ++nans;
    } else {
      EXPECT_EQ(double(got), want) << "code " << c;
      EXPECT_EQ(std::signbit(got), bool(c & 0x80)) << "code " << c;
    }
  }
  EXPECT_EQ(nans, f == FP8Format::E4M3 ? 2 : 6);  // E4M3: S.1111.111; E5M2: S.11111.{01,10,11}
}

TEST(Fp8Values, SpecAnchors) {
  EXPECT_EQ(fp8_decode(0x7E, FP8Format::E4M3), 448.0f);
  EXPECT_EQ(fp8_decode(0xFE, FP8Format::E4M3), -448.0f);
  EXPECT_EQ(fp8_decode(0x01, FP8Format::E4M3), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_decode(0x08, FP8Format::E4M3), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(fp8_decode(0x38, FP8Format::E4M3), 1.0f);
  EXPECT_TRUE(std::isnan(fp8_decode(0x7F, FP8Format::E4M3)));
  EXPECT_TRUE(std::isnan(fp8_decode(0xFF, FP8Format::E4M3)));
  EXPECT_EQ(fp8_decode(0x7B, FP8Format::E5M2), 57344.0f);
  EXPECT_EQ(fp8_decode(0x7C, FP8Format::E5M2), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp8_decode(0xFC, FP8Format::E5M2), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp8_decode(0x01, FP8Format::E5M2), std::ldexp(1.0f, -16));
  EXPECT_EQ(fp8_decode(0x04, FP8Format::E5M2), std::ldexp(1.0f, -14));
  EXPECT_EQ(fp8_decode(0x3C, FP8Format::E5M2), 1.0f);
  for (int c : {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF}) EXPECT_TRUE(std::isnan(fp8_decode(uint8_t(c), FP8Format::E5M2)));
  EXPECT_EQ(fp8_max(FP8Format::E4M3), 448.0f);
  EXPECT_EQ(fp8_max(FP8Format::E5M2), 57344.0f);
}

TEST_P(Fp8Test, EveryRepresentableValueEncodesToItsCode) {
  const FP8Format f = GetParam();
  for (int c = 0; c < 256; ++c) {
    if (is_nan_code(c, f) || is_inf_code(c, f)) continue;
    for (bool sat : {true, false}) EXPECT_EQ(fp8_encode(fp8_decode(uint8_t(c), f), f, sat), c) << "code " << c;
  }
}

TEST_P(Fp8Test, MidpointsRoundToEvenAndNeighboursGoTheRightWay) {
  const FP8Format f = GetParam();
  const std::vector<int> codes = finite_positive_codes(f);
  for (size_t i = 0; i + 1 < codes.size(); ++i) {
    const int lo = codes[i], hi = codes[i + 1];
    const float a = float(expected_value(lo, f)), b = float(expected_value(hi, f));
    const float mid = 0.5f * (a + b);  // exact: a, b have ≤ 4 significant bits
    ASSERT_EQ(double(mid), 0.5 * (double(a) + double(b)));
    const int even = (lo % 2 == 0) ? lo : hi;  // positive codes: code LSB = mantissa LSB
    for (bool sat : {true, false}) {
      EXPECT_EQ(fp8_encode(mid, f, sat), even) << "midpoint of codes " << lo << ", " << hi;
      EXPECT_EQ(fp8_encode(-mid, f, sat), 0x80 | even);
      EXPECT_EQ(fp8_encode(std::nextafter(mid, 0.0f), f, sat), lo);
      EXPECT_EQ(fp8_encode(std::nextafter(mid, INFINITY), f, sat), hi);
      EXPECT_EQ(fp8_encode(-std::nextafter(mid, INFINITY), f, sat), 0x80 | hi);
    }
  }
}

TEST(Fp8Overflow, E4M3SaturatingAndNonSaturating) {
  const FP8Format f = FP8Format::E4M3;
  // 464 is the midpoint between 448 (mantissa 110, even) and the unrepresentable 480: ties to 448.
  EXPECT_EQ(fp8_encode(464.0f, f, false), 0x7E);
  EXPECT_EQ(fp8_encode(std::nextafter(464.0f, 0.0f), f, false), 0x7E);
  EXPECT_EQ(fp8_encode(std::nextafter(464.0f, INFINITY), f, false), 0x7F);  // NaN
  EXPECT_EQ(fp8_encode(std::nextafter(464.0f, INFINITY), f, true), 0x7E);
  EXPECT_EQ(fp8_encode(449.0f, f, true), 0x7E);
  EXPECT_EQ(fp8_encode(1e30f, f, true), 0x7E);
  EXPECT_EQ(fp8_encode(-1e30f, f, true), 0xFE);
  EXPECT_EQ(fp8_encode(1e30f, f, false), 0x7F);
  EXPECT_EQ(fp8_encode(-1e30f, f, false), 0xFF);
  EXPECT_EQ(fp8_encode(INFINITY, f, true), 0x7E);
  EXPECT_EQ(fp8_encode(-INFINITY, f, true), 0xFE);
  EXPECT_EQ(fp8_encode(INFINITY, f, false), 0x7F);
  EXPECT_EQ(fp8_encode(-INFINITY, f, false), 0xFF);
  EXPECT_EQ(fp8_encode(std::numeric_limits<float>::max(), f, true), 0x7E);
}

TEST(Fp8Overflow, E5M2SaturatingAndNonSaturating) {
  const FP8Format f = FP8Format::E5M2;
  // 61440 is the midpoint between 57344 (mantissa 11, odd) and 65536: ties go up, i.e. overflow.
  EXPECT_EQ(fp8_encode(61440.0f, f, false), 0x7C);  // +Inf
  EXPECT_EQ(fp8_encode(61440.0f, f, true), 0x7B);
  EXPECT_EQ(fp8_encode(std::nextafter(61440.0f, 0.0f), f, false), 0x7B);
  EXPECT_EQ(fp8_encode(-61440.0f, f, false), 0xFC);
  EXPECT_EQ(fp8_encode(1e30f, f, true), 0x7B);
  EXPECT_EQ(fp8_encode(-1e30f, f, true), 0xFB);
  EXPECT_EQ(fp8_encode(INFINITY, f, false), 0x7C);
  EXPECT_EQ(fp8_encode(-INFINITY, f, false), 0xFC);
  EXPECT_EQ(fp8_encode(INFINITY, f, true), 0x7B);
  EXPECT_EQ(fp8_encode(-INFINITY, f, true), 0xFB);
}

TEST_P(Fp8Test, NaNZeroAndUnderflow) {
  const FP8Format f = GetParam();
  for (bool sat : {true, false}) {
    EXPECT_TRUE(std::isnan(fp8_decode(fp8_encode(std::numeric_limits<float>::quiet_NaN(), f, sat), f)));
    EXPECT_TRUE(std::isnan(fp8_decode(fp8_encode(-std::numeric_limits<float>::quiet_NaN(), f, sat), f)));
    EXPECT_EQ(fp8_encode(0.0f, f, sat), 0x00);
    EXPECT_EQ(fp8_encode(-0.0f, f, sat), 0x80);
    const float min_sub = fp8_decode(0x01, f);
    EXPECT_EQ(fp8_encode(0.5f * min_sub, f, sat), 0x00);  // tie between 0 (even) and the smallest subnormal
    EXPECT_EQ(fp8_encode(std::nextafter(0.5f * min_sub, 1.0f), f, sat), 0x01);
    EXPECT_EQ(fp8_encode(-0.4f * min_sub, f, sat), 0x80);
    EXPECT_EQ(fp8_encode(1e-40f, f, sat), 0x00);  // F32 subnormal input
    EXPECT_EQ(fp8_encode(-std::numeric_limits<float>::denorm_min(), f, sat), 0x80);
  }
}

// Brute force: nearest finite value, ties to the even code, saturating at max.
uint8_t brute_force_encode(float x, FP8Format f) {
  const std::vector<int> codes = finite_positive_codes(f);
  const double a = std::fabs(double(x));
  int best = codes[0];
  double best_d = INFINITY;
  for (int c : codes) {
    const double d = std::fabs(expected_value(c, f) - a);
    if (d < best_d || (d == best_d && c % 2 == 0)) {
      best = c;
      best_d = d;
    }
  }
  return uint8_t((std::signbit(x) ? 0x80 : 0) | best);
}

TEST_P(Fp8Test, MatchesBruteForceNearestEven) {
  const FP8Format f = GetParam();
  std::mt19937 rng(7);
  const float maxv = fp8_max(f);
  std::uniform_int_distribution<int> expo(-30, 17);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  for (int i = 0; i < 20000; ++i) {
    float x = std::ldexp(mant(rng), expo(rng)) * ((i & 1) ? -1.0f : 1.0f);
    x = std::clamp(x, -maxv, maxv);
    ASSERT_EQ(fp8_encode(x, f, true), brute_force_encode(x, f)) << "x = " << x;
  }
}

TEST(Fp8Rows, ScaleAndRowHelpers) {
  const float x[4] = {1.0f, -896.0f, INFINITY, NAN};
  EXPECT_EQ(finite_absmax(x, 4), 896.0f);
  EXPECT_EQ(fp8_scale_for(896.0f, FP8Format::E4M3), 2.0f);
  EXPECT_EQ(fp8_scale_for(0.0f, FP8Format::E4M3), 1.0f);
  uint8_t c[4];
  fp8_quantize_row(x, 4, 2.0f, FP8Format::E4M3, true, c);
  float y[4];
  fp8_dequantize_row(c, 4, 2.0f, FP8Format::E4M3, y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -896.0f);
  EXPECT_EQ(y[2], 896.0f);  // +Inf saturates to max · scale
  EXPECT_TRUE(std::isnan(y[3]));
}

std::string format_param_name(const ::testing::TestParamInfo<FP8Format>& p) {
  return std::string(fp8_format_name(p.param));
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp8Test, ::testing::Values(FP8Format::E4M3, FP8Format::E5M2), format_param_name);

}  // namespace
}  // namespace kq::formats
