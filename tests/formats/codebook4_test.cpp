// 4-bit formats: NF4 codebook (QLoRA), FP4 E2M1 values, bitsandbytes' FP4 values, INT4 codes, nibble order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/tolerances.hpp"
#include "formats/fp4.hpp"
#include "formats/fp4_bnb.hpp"
#include "formats/int4.hpp"
#include "formats/nf4.hpp"
#include "formats/packed4.hpp"
#include "formats/traits.hpp"

namespace kq::formats {
namespace {

// The 16 NF4 values as printed in the QLoRA paper (Dettmers et al. 2023, Appendix E).
constexpr double kPaperNF4[16] = {-1.0,
                                  -0.6961928009986877,
                                  -0.5250730514526367,
                                  -0.39491748809814453,
                                  -0.28444138169288635,
                                  -0.18477343022823334,
                                  -0.09105003625154495,
                                  0.0,
                                  0.07958029955625534,
                                  0.16093020141124725,
                                  0.24611230194568634,
                                  0.33791524171829224,
                                  0.44070982933044434,
                                  0.5626170039176941,
                                  0.7229568362236023,
                                  1.0};

TEST(NF4, CodebookMatchesPaper) {
  for (int i = 0; i < 16; ++i) EXPECT_EQ(kNF4[size_t(i)], float(kPaperNF4[i])) << i;
}

// Φ^-1 by bisection on the normal CDF.
double norm_ppf(double p) {
  double lo = -10, hi = 10;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

TEST(NF4, CodebookIsNormalQuantilesConstruction) {
  // QLoRA / bitsandbytes create_normal_map(offset = 0.9677083): 8 positive
  // quantiles on linspace(offset, 0.5, 9)[:-1], 7 negative on linspace(offset, 0.5, 8)[:-1], and 0,
  // normalised by the largest.
  const double off = 0.9677083;
  std::vector<double> v{0.0};
  for (int i = 0; i < 8; ++i) v.push_back(norm_ppf(off + i * (0.5 - off) / 8));
  for (int j = 0; j < 7; ++j) v.push_back(-norm_ppf(off + j * (0.5 - off) / 7));
  const double m = norm_ppf(off);
  std::sort(v.begin(), v.end());
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(v[size_t(i)] / m, kNF4[size_t(i)], testing::kNF4ConstructionTol) << i;
}

TEST(NF4, EncodeIsNearestEntry) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.2f, 1.2f);
  for (int t = 0; t < 20000; ++t) {
    const float x = u(rng);
    const uint8_t c = nf4_encode(x);
    for (int j = 0; j < 16; ++j) ASSERT_LE(std::fabs(x - kNF4[c]), std::fabs(x - kNF4[size_t(j)])) << x;
  }
  for (int i = 0; i < 16; ++i) EXPECT_EQ(nf4_encode(kNF4[size_t(i)]), i);
  EXPECT_EQ(nf4_encode(5.0f), 15);
  EXPECT_EQ(nf4_encode(-5.0f), 0);
  EXPECT_EQ(nf4_encode(NAN), 7);
}

// The index of the entry of `t` nearest to x, distances in double (exact for the x near a midpoint used here);
// an exact tie goes to the lower index. `tie` reports one.
int nearest_in_double(const float* t, float x, bool* tie) {
  int best = 0;
  double bd = std::fabs(double(x) - double(t[0]));
  *tie = false;
  for (int i = 1; i < 16; ++i) {
    const double d = std::fabs(double(x) - double(t[i]));
    if (d < bd) {
      bd = d, best = i, *tie = false;
    } else if (d == bd) {
      *tie = true;  // keeps the lower index
    }
  }
  return best;
}

// At each of the 15 midpoints (the F32 rounding of it, and 3 floats either side) the code is the truly nearest
// entry (tester 28 F1: with midpoints computed in F32, 5 of these 15 values took the farther entry), and an exact
// tie goes to the lower code, as bitsandbytes' dQuantizeNF4 (strict '>').
TEST(NF4, EncodeIsExactlyNearestAtTheMidpoints) {
  int ties = 0, not_ties = 0;
  for (int i = 0; i < 15; ++i) {
    const double mid = 0.5 * (double(kNF4[size_t(i)]) + double(kNF4[size_t(i + 1)]));
    float x = float(mid);
    for (int s = 0; s < 3; ++s) x = std::nextafter(x, -2.0f);
    for (int s = 0; s < 7; ++s, x = std::nextafter(x, 2.0f)) {
      bool tie = false;
      const int want = nearest_in_double(kNF4.data(), x, &tie);
      EXPECT_EQ(nf4_encode(x), want) << "midpoint " << i << " x " << x;
      if (tie) {
        ++ties;
        EXPECT_EQ(want, i) << "midpoint " << i;
      }
      if (s == 3) not_ties += double(x) != mid;
    }
  }
  EXPECT_EQ(ties, 6);       // F32 holds 6 of the 15 midpoints exactly
  EXPECT_EQ(not_ties, 9);
  // Known values (tester 28, exact search in float64): F32-rounded midpoints and the entry truly nearest them.
  EXPECT_EQ(nf4_encode(-0.8480964f), 1);
  EXPECT_EQ(nf4_encode(-0.2346074f), 5);
  EXPECT_EQ(nf4_encode(-0.13791174f), 5);
  EXPECT_EQ(nf4_encode(0.50166345f), 13);
  EXPECT_EQ(nf4_encode(0.86147845f), 15);
  EXPECT_EQ(nf4_encode(-0.6106329f), 2);
  EXPECT_EQ(nf4_encode(-0.33967942f), 4);
  // Exact ties: the lower code (bitsandbytes' dQuantizeNF4 gives the same).
  EXPECT_EQ(nf4_encode(0.03979015f), 7);
  EXPECT_EQ(nf4_encode(0.20352125f), 9);
  EXPECT_EQ(nf4_encode(0.38931254f), 11);
  EXPECT_EQ(nf4_encode(0.6427869f), 13);
  EXPECT_EQ(nf4_encode(-0.45999527f), 2);
  EXPECT_EQ(nf4_encode(-0.045525018f), 6);
}

TEST(FP4, E2M1ValuesFromBitFields) {
  for (int c = 0; c < 16; ++c) {
    const int s = c >> 3, e = (c >> 1) & 3, m = c & 1;
    const double mag = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * std::ldexp(1.0, e - 1);
    EXPECT_EQ(double(kE2M1[size_t(c)]), s ? -mag : mag) << c;
    EXPECT_EQ(std::signbit(kE2M1[size_t(c)]), bool(s)) << c;
  }
  const float pos[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int c = 0; c < 8; ++c) EXPECT_EQ(kE2M1[size_t(c)], pos[c]);
}

TEST(FP4, EncodeNearestTiesToEvenSaturating) {
  for (int c = 0; c < 16; ++c) EXPECT_EQ(fp4_encode(kE2M1[size_t(c)]), c);
  EXPECT_EQ(fp4_encode(0.25f), 0);   // tie 0 / 0.5 -> code 0 (even)
  EXPECT_EQ(fp4_encode(0.75f), 2);   // tie 0.5 / 1 -> code 2 (1.0)
  EXPECT_EQ(fp4_encode(1.25f), 2);   // tie 1 / 1.5 -> 1.0
  EXPECT_EQ(fp4_encode(1.75f), 4);   // tie 1.5 / 2 -> 2.0
  EXPECT_EQ(fp4_encode(2.5f), 4);    // tie 2 / 3 -> 2.0
  EXPECT_EQ(fp4_encode(3.5f), 6);    // tie 3 / 4 -> 4.0
  EXPECT_EQ(fp4_encode(5.0f), 6);    // tie 4 / 6 -> 4.0
  EXPECT_EQ(fp4_encode(5.01f), 7);
  EXPECT_EQ(fp4_encode(100.0f), 7);  // saturates at 6
  EXPECT_EQ(fp4_encode(-100.0f), 15);
  EXPECT_EQ(fp4_encode(-2.6f), 13);  // -3
  EXPECT_EQ(fp4_encode(NAN), 0);
}

// bitsandbytes' FP4 from its bit fields, as bitsandbytes' own test (tests/test_functional.py, test_4bit_quant)
// builds the code: code = sign·8 + e1·4 + e2·2 + p; exponent e = 2·e1 + e2; e = 0: p ? 0.0625 : 0; else
// 2^(−e + bias + 1) · (p ? 1.5 : 1) with bias 3; then divided by the largest magnitude, 12
// (functional.get_4bit_type("fp4"): data /= data.abs().max()), in F32.
TEST(FP4Bnb, ValuesFromBitsandbytesBitFields) {
  for (int c = 0; c < 16; ++c) {
    const int sign = c >> 3, e1 = (c >> 2) & 1, e2 = (c >> 1) & 1, p = c & 1, e = 2 * e1 + e2;
    const double mag = e == 0 ? (p ? 0.0625 : 0.0) : std::ldexp(1.0, -e + 3 + 1) * (p ? 1.5 : 1.0);
    EXPECT_EQ(kFP4Bnb[size_t(c)], float(sign ? -mag : mag) / 12.0f) << c;
    EXPECT_EQ(std::signbit(kFP4Bnb[size_t(c)]), bool(sign)) << c;  // code 8 is -0
  }
  // bitsandbytes' CUDA dequantizer (dDequantizeFP4Tree) writes the same F32 constants by code.
  const float kernel[8] = {0.0f, 5.208333333e-03f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f};
  for (int c = 0; c < 8; ++c) EXPECT_EQ(kFP4Bnb[size_t(c)], kernel[c]) << c;
  for (int c = 0; c < 8; ++c) EXPECT_EQ(kFP4Bnb[size_t(c + 8)], -kernel[c]) << c;
}

// The magnitudes, sorted, are E2M1's divided by 6 except the smallest nonzero one (1/192 in place of 1/12).
TEST(FP4Bnb, DiffersFromE2M1OverSixOnlyInTheSubnormal) {
  std::vector<double> bnb, e2m1;
  for (int c = 0; c < 8; ++c) {
    bnb.push_back(kFP4Bnb[size_t(c)]);
    e2m1.push_back(double(kE2M1[size_t(c)]) / 6.0);
  }
  std::sort(bnb.begin(), bnb.end());
  for (size_t i = 0; i < 8; ++i) {
    if (i == 1) {
      EXPECT_NEAR(bnb[i], 1.0 / 192.0, 1e-9);
      EXPECT_NEAR(e2m1[i], 1.0 / 12.0, 1e-12);
    } else {
      EXPECT_NEAR(bnb[i], e2m1[i], 1e-7) << i;
    }
  }
}

// bitsandbytes' dQuantizeFP4 (csrc/kernels.cu): |x| against its F32 literals with strict '>', the code of each
// side as in its decision tree; the sign bit (8) for x < 0. Each literal is (nearly) the midpoint of the two
// values it separates, which the first loop checks against kFP4Bnb.
TEST(FP4Bnb, EncodeUsesBitsandbytesThresholds) {
  struct Cut {
    float t;
    int below, above;  // code for |x| == t and for the next float above t
  };
  const Cut cuts[] = {{0.00260417f, 0, 1}, {0.0859375f, 1, 6},  {0.20833333f, 6, 7}, {0.29166667f, 7, 4},
                      {0.4166667f, 4, 5},  {0.583333f, 5, 2},   {0.8333333f, 2, 3}};
  for (const Cut& c : cuts) {
    const double mid = 0.5 * (double(kFP4Bnb[size_t(c.below)]) + double(kFP4Bnb[size_t(c.above)]));
    EXPECT_NEAR(c.t, mid, 4e-7) << c.t;
    EXPECT_LT(kFP4Bnb[size_t(c.below)], kFP4Bnb[size_t(c.above)]) << c.t;
    const float up = std::nextafter(c.t, 2.0f);
    EXPECT_EQ(fp4_bnb_encode(c.t), c.below) << c.t;
    EXPECT_EQ(fp4_bnb_encode(up), c.above) << c.t;
    EXPECT_EQ(fp4_bnb_encode(-c.t), c.below | 8) << c.t;
    EXPECT_EQ(fp4_bnb_encode(-up), c.above | 8) << c.t;
  }
  // float(7/12) = 0.58333331 is above 0.583333f (0.58333302): 2/3, although 1/2 is a hair nearer (tester25 F1).
  const float seven_twelfths = float(7.0 / 12.0);
  EXPECT_EQ(fp4_bnb_encode(seven_twelfths), 2);
  EXPECT_EQ(fp4_bnb_encode(-seven_twelfths), 10);
  EXPECT_EQ(fp4_bnb_encode(float(5.0 / 12.0)), 4);       // 0.41666666 <= 0.4166667f (0.41666669): 1/3
  EXPECT_EQ(fp4_bnb_encode(float(1.0 / 384.0)), 0);      // 0.0026041667 <= 0.00260417f (0.0026041700): 0
  EXPECT_EQ(fp4_bnb_encode(std::nextafter(float(1.0 / 384.0), 1.0f)), 0);
}

// bitsandbytes' kQuantizeBlockwise encodes w · (1 / absmax) (the reciprocal in F32, then the product), not
// w / absmax; the two roundings differ by an ulp, across a threshold here: w / a = 0.83333331 (0.8333333f itself:
// code 2), w · (1 / a) = 0.83333337 (code 3). kq's block quantizer gives bitsandbytes' code 3.
TEST(FP4Bnb, BlockQuantizerMultipliesByTheReciprocalScale) {
  const float a = 0x1.00418ap-1f, w = 0x1.ab17e6p-2f;
  ASSERT_EQ(w / a, 0.8333333f);
  ASSERT_GT(w * (1.0f / a), 0.8333333f);
  const float block[2] = {w, -a};
  uint8_t packed = 0xFF;
  format_traits(WeightFormat::FP4_BNB).quantize_block(block, 2, a, 0, &packed);
  EXPECT_EQ(packed & 15, 3);   // w: 1 (bitsandbytes), not 2/3
  EXPECT_EQ(packed >> 4, 11);  // -a: -1
}

// Away from the thresholds the code is the nearest value (exact double distance), the sign bit set for x < 0,
// |x| saturating at 1; and each code's own value encodes to it.
TEST(FP4Bnb, EncodeIsNearestAwayFromThresholds) {
  const double mids[] = {0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.3f, 1.3f);
  int checked = 0;
  for (int t = 0; t < 50000; ++t) {
    const float x = t % 4 == 0 ? u(rng) * 0.02f : u(rng);
    const uint8_t c = fp4_bnb_encode(x);
    ASSERT_LT(c, 16);
    ASSERT_EQ(bool(c & 8), x < 0.0f) << x;
    const double a = std::min(std::fabs(double(x)), 1.0), got = std::fabs(double(kFP4Bnb[c]));
    bool near_cut = false;
    for (double m : mids) near_cut = near_cut || std::fabs(a - m) < 1e-6;
    if (near_cut) continue;
    ++checked;
    for (int j = 0; j < 8; ++j) {
      const double v = kFP4Bnb[size_t(j)];
      if (v != got) {
        ASSERT_LT(std::fabs(a - got), std::fabs(a - v)) << x << " code " << int(c) << " vs " << j;
      }
    }
  }
  EXPECT_GT(checked, 49000);
  for (int c = 0; c < 16; ++c) {
    if (c != 8) {
      EXPECT_EQ(fp4_bnb_encode(kFP4Bnb[size_t(c)]), c) << c;
    }
  }
  EXPECT_EQ(fp4_bnb_encode(-0.0f), 0);    // not negative: code 0, as bitsandbytes
  EXPECT_EQ(fp4_bnb_encode(-1e-6f), 8);   // a tiny negative: -0
  EXPECT_EQ(fp4_bnb_encode(0.375f), 4);   // between 1/3 and 1/2: nearer 1/3
  EXPECT_EQ(fp4_bnb_encode(0.75f), 2);    // 2/3 (distance 1/12) over 1 (1/4)
  EXPECT_EQ(fp4_bnb_encode(0.8f), 2);
  EXPECT_EQ(fp4_bnb_encode(0.9f), 3);
  EXPECT_EQ(fp4_bnb_encode(5.0f), 3);     // saturates at 1
  EXPECT_EQ(fp4_bnb_encode(-5.0f), 11);
  EXPECT_EQ(fp4_bnb_encode(1e30f), 3);
  EXPECT_EQ(fp4_bnb_encode(NAN), 0);
}

TEST(INT4, SymmetricAndAsymmetricCodes) {
  // GPTQ's symmetric rule: scale = 2·absmax / 15 (absmax 7.5 -> scale 1), q = clamp(round(w / scale), −8, 7) + 8.
  const float s = int4_sym_scale(7.5f);
  EXPECT_EQ(s, 1.0f);
  EXPECT_EQ(int4_sym_encode(7.5f, s), 15);   // +absmax: 7.5 -> 8 (tie to even), clipped to 7
  EXPECT_EQ(int4_sym_encode(-7.5f, s), 0);   // −absmax: −7.5 -> −8 (tie to even), code 0 is used
  EXPECT_EQ(int4_sym_encode(7.0f, s), 15);
  EXPECT_EQ(int4_sym_encode(-7.0f, s), 1);
  EXPECT_EQ(int4_sym_encode(0.0f, s), 8);
  EXPECT_EQ(int4_sym_encode(2.5f, s), 10);  // ties to even: 2
  EXPECT_EQ(int4_sym_encode(-100.0f, s), 0);
  EXPECT_EQ(int4_sym_encode(3.0f, 0.0f), 8);

  float sc;
  uint8_t z;
  int4_asym_params(-1.0f, 2.0f, &sc, &z);
  EXPECT_FLOAT_EQ(sc, 0.2f);
  EXPECT_EQ(z, 5);
  EXPECT_EQ(int4_asym_encode(-1.0f, sc, z), 0);
  EXPECT_EQ(int4_asym_encode(2.0f, sc, z), 15);
  EXPECT_EQ(int4_asym_encode(0.0f, sc, z), 5);  // zero is exact
  int4_asym_params(0.5f, 2.0f, &sc, &z);        // range extended to include 0
  EXPECT_EQ(z, 0);
  int4_asym_params(0.0f, 0.0f, &sc, &z);
  EXPECT_EQ(sc, 0.0f);
  EXPECT_EQ(int4_asym_encode(0.0f, sc, z), z);
}

// GPTQ's symmetric scale (quant.py Quantizer.find_params, sym: (xmax − xmin) / maxq with xmin = −absmax, maxq = 15)
// against the same value computed in double and rounded once to F32, including absmax near F32's largest value
// (where 2·absmax would overflow F32).
TEST(INT4, SymmetricScaleIsTwoAbsmaxOverFifteen) {
  EXPECT_EQ(int4_sym_scale(0.0f), 0.0f);
  EXPECT_EQ(int4_sym_scale(15.0f), 2.0f);
  EXPECT_EQ(int4_sym_scale(1.0f), float(2.0 / 15.0));  // 0.13333334f
  for (const float a : {1e-38f, 1e-30f, 0.0123f, 0.5f, 1.0f, 3.0f, 117.25f, 6.5e4f, 1e20f, 3e38f,
                        std::numeric_limits<float>::max()}) {
    const float want = float(2.0 * double(a) / 15.0);
    EXPECT_EQ(int4_sym_scale(a), want) << a;
    EXPECT_TRUE(std::isfinite(int4_sym_scale(a))) << a;
  }
}

// Whole groups through the format's traits (block params, quantize, dequantize), values worked out by hand.
TEST(INT4, SymmetricGroupsByHand) {
  const FormatTraits& t = format_traits(WeightFormat::INT4_SYM);
  constexpr int64_t B = 32;
  auto run = [&](const std::vector<float>& w, float* scale, std::vector<int>& codes, std::vector<float>& dq) {
    uint8_t zero = 255;
    t.block_params(w.data(), B, scale, &zero);
    EXPECT_EQ(zero, 0);
    std::vector<uint8_t> packed(size_t(B / 2));
    t.quantize_block(w.data(), B, *scale, 0, packed.data());
    codes.resize(size_t(B));
    for (int64_t i = 0; i < B; ++i) codes[size_t(i)] = (packed[size_t(i / 2)] >> (4 * (i % 2))) & 0xF;
    dq.resize(size_t(B));
    t.dequantize_block(packed.data(), B, *scale, 0, dq.data());
  };
  float s = 0;
  std::vector<int> c;
  std::vector<float> d;

  // Positive absmax 7.5: scale 1; 7.5 clips to 7 (code 15, decodes 7); ties go to even.
  std::vector<float> g(size_t(B), 0.0f);
  g[0] = 7.5f, g[1] = 2.5f, g[2] = 3.5f, g[3] = -0.5f, g[4] = -1.5f, g[5] = 6.5f, g[6] = -6.4f, g[7] = 0.49f;
  run(g, &s, c, d);
  EXPECT_EQ(s, 1.0f);
  const int want_pos[8] = {15, 10, 12, 8, 6, 14, 2, 8};
  const float want_pos_dq[8] = {7.0f, 2.0f, 4.0f, 0.0f, -2.0f, 6.0f, -6.0f, 0.0f};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(c[size_t(i)], want_pos[i]) << i;
    EXPECT_EQ(d[size_t(i)], want_pos_dq[i]) << i;
  }
  for (int64_t i = 8; i < B; ++i) EXPECT_EQ(c[size_t(i)], 8) << i;

  // Negative absmax −15: scale 2; −15 -> −7.5 -> −8 (code 0, decodes −16); 15 is not present, 13 -> 6.5 -> 6.
  std::fill(g.begin(), g.end(), 0.0f);
  g[0] = -15.0f, g[1] = 13.0f, g[2] = -14.0f, g[3] = 1.0f, g[4] = 3.0f;
  run(g, &s, c, d);
  EXPECT_EQ(s, 2.0f);
  const int want_neg[5] = {0, 14, 1, 8, 10};
  const float want_neg_dq[5] = {-16.0f, 12.0f, -14.0f, 0.0f, 4.0f};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(c[size_t(i)], want_neg[i]) << i;
    EXPECT_EQ(d[size_t(i)], want_neg_dq[i]) << i;
  }

  // absmax 1: scale = float(2/15) = 0.13333334 lies above 2/15, so ±1 / scale = ±7.4999995 rounds to ±7 (codes
  // 15 and 1), as GPTQ's F32 division would.
  std::fill(g.begin(), g.end(), 0.0f);
  g[0] = 1.0f, g[1] = -1.0f;
  run(g, &s, c, d);
  EXPECT_EQ(s, float(2.0 / 15.0));
  EXPECT_GT(double(s), 2.0 / 15.0);
  EXPECT_EQ(c[0], 15);
  EXPECT_EQ(c[1], 1);
  EXPECT_EQ(d[1], -7.0f * s);

  // A zero group: scale 0, every code 8, decodes to 0.
  std::fill(g.begin(), g.end(), 0.0f);
  run(g, &s, c, d);
  EXPECT_EQ(s, 0.0f);
  for (int64_t i = 0; i < B; ++i) {
    EXPECT_EQ(c[size_t(i)], 8) << i;
    EXPECT_EQ(d[size_t(i)], 0.0f) << i;
  }
}

// Every code against a double-precision reference of GPTQ's rule on random groups: round(w / scale) with the F32
// scale, ties to even, clamp to [−8, 7]; all 16 codes occur (code 0 included).
TEST(INT4, SymmetricRandomGroupsMatchGptqRule) {
  const FormatTraits& t = format_traits(WeightFormat::INT4_SYM);
  std::mt19937 rng(28);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  constexpr int64_t B = 128;
  std::vector<float> w(static_cast<size_t>(B));
  std::vector<uint8_t> packed(size_t(B / 2));
  std::vector<int> seen(16, 0);
  for (int rep = 0; rep < 200; ++rep) {
    for (float& x : w) x = nd(rng);
    float s = 0;
    uint8_t z = 0;
    t.block_params(w.data(), B, &s, &z);
    double amax = 0;
    for (float x : w) amax = std::max(amax, double(std::fabs(x)));
    ASSERT_EQ(s, float(2.0 * amax / 15.0));
    t.quantize_block(w.data(), B, s, z, packed.data());
    for (int64_t i = 0; i < B; ++i) {
      const int code = (packed[size_t(i / 2)] >> (4 * (i % 2))) & 0xF;
      const float r = float(double(w[size_t(i)]) / double(s));  // the F32 quotient, as torch computes x / scale
      const double q = std::clamp(double(std::nearbyint(r)), -8.0, 7.0);
      ASSERT_EQ(code, int(q) + 8) << rep << " " << i;
      ++seen[size_t(code)];
    }
  }
  for (int c = 0; c < 16; ++c) EXPECT_GT(seen[size_t(c)], 0) << c;
}

TEST(Packed4, NibbleOrderLowFirst) {
  const uint8_t codes[5] = {0x1, 0x2, 0x3, 0xF, 0x7};
  uint8_t packed[3] = {0xAA, 0xAA, 0xAA};
  pack_nibbles(codes, 5, packed);
  EXPECT_EQ(packed[0], 0x21);
  EXPECT_EQ(packed[1], 0xF3);
  EXPECT_EQ(packed[2], 0x07);  // odd tail: high nibble is zero padding
  uint8_t back[5];
  unpack_nibbles(packed, 5, back);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(back[i], codes[i]);
  EXPECT_EQ(get_nibble(packed, 3), 0xF);
}

TEST(Packed4, BlockTables) {
  float lut[16];
  q4_block_lut(WeightFormat::NF4, 2.0f, 0, lut);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(lut[c], 2.0f * kNF4[size_t(c)]);
  q4_block_lut(WeightFormat::FP4, 0.5f, 0, lut);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(lut[c], 0.5f * kE2M1[size_t(c)]);
  q4_block_lut(WeightFormat::INT4_SYM, 0.25f, 0, lut);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(lut[c], 0.25f * float(c - 8));
  q4_block_lut(WeightFormat::INT4_ASYM, 0.25f, 3, lut);
  for (int c = 0; c < 16; ++c) EXPECT_EQ(lut[c], 0.25f * float(c - 3));
}

}  // namespace
}  // namespace kq::formats
