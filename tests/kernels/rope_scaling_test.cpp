// RoPE frequency scaling (cpu::rope_inv_freq, cpu::make_rope_table with a RopeScaling): "linear", "llama3" and
// "longrope" inverse frequencies and cos/sin tables against the formulas of transformers'
// _compute_linear_scaling_rope_parameters / _compute_llama3_parameters / _compute_longrope_parameters recomputed in
// double; RoPE over the first rotary_dim dimensions of each head (Phi-3's partial_rotary_factor).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "kernels/cpu/ops_rope.hpp"

namespace kq::cpu {
namespace {

/// Which llama3 band the wavelength 2π/inv_freq (double) falls in.
enum class Band { Unchanged, Smoothed, Divided };

/// The llama3 band of `inv` under `s`, in double.
Band band_of(double inv, const RopeScaling& s) {
  const double wavelen = 2 * std::numbers::pi / inv;
  const double orig = double(s.original_max_positions);
  if (wavelen < orig / s.high_freq_factor) return Band::Unchanged;
  if (wavelen > orig / s.low_freq_factor) return Band::Divided;
  return Band::Smoothed;
}

/// transformers' scaled inverse frequency i of RoPE (θ, head_dim, s), recomputed in double.
double reference_inv_freq(double theta, int64_t head_dim, int64_t i, const RopeScaling& s) {
  const double inv = std::pow(theta, -double(2 * i) / double(head_dim));
  switch (s.type) {
    case RopeScaling::Type::Default: return inv;
    case RopeScaling::Type::Linear: return inv / s.factor;
    case RopeScaling::Type::Llama3: break;
    case RopeScaling::Type::LongRope: return inv / s.short_factor[size_t(i)];
    case RopeScaling::Type::Dynamic: return inv;
    case RopeScaling::Type::Yarn: {
      // YaRN (Peng et al. 2023, eqs. for the "NTK-by-parts" ramp), as transformers computes the correction range.
      const double d = double(head_dim);
      const auto dim_of = [&](double rotations) {
        return d * std::log(double(s.original_max_positions) / (rotations * 2 * std::numbers::pi)) /
               (2 * std::log(theta));
      };
      double lo = dim_of(s.beta_fast), hi = dim_of(s.beta_slow);
      if (s.truncate) {
        lo = std::floor(lo);
        hi = std::ceil(hi);
      }
      lo = std::max(lo, 0.0);
      hi = std::min(hi, d - 1);
      if (lo == hi) hi += 0.001;
      const double ramp = std::clamp((double(i) - lo) / (hi - lo), 0.0, 1.0);
      return inv / s.factor * ramp + inv * (1 - ramp);
    }
  }
  switch (band_of(inv, s)) {
    case Band::Unchanged: return inv;
    case Band::Divided: return inv / s.factor;
    case Band::Smoothed: break;
  }
  const double wavelen = 2 * std::numbers::pi / inv;
  const double smooth =
      (double(s.original_max_positions) / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  return inv * ((1 - smooth) / s.factor + smooth);
}

RopeScaling llama3(double factor, double low, double high, int64_t original) {
  RopeScaling s;
  s.type = RopeScaling::Type::Llama3;
  s.factor = factor;
  s.low_freq_factor = low;
  s.high_freq_factor = high;
  s.original_max_positions = original;
  return s;
}

// Llama-3.2-1B: head_dim 64, θ 500000, factor 32, low 1, high 4, original 8192. Wavelengths
// 2π·500000^(i/32): i <= 14 below 2048 (unchanged), 15..17 between 2048 and 8192 (smoothed), >= 18 above
// 8192 (divided by 32); none within 4 % of a band limit, so F32 rounding cannot move one across.
TEST(RopeScaling, Llama32InvFreqAndTablesMatchDoubleReference) {
  const double theta = 500000.0;
  const int64_t hd = 64, half = 32;
  const RopeScaling s = llama3(32, 1, 4, 8192);
  const std::vector<float> inv = rope_inv_freq(theta, hd, s);
  const std::vector<float> plain = rope_inv_freq(theta, hd);
  ASSERT_EQ(int64_t(inv.size()), half);
  int counts[3] = {0, 0, 0};
  for (int64_t i = 0; i < half; ++i) {
    SCOPED_TRACE(i);
    const double ref = reference_inv_freq(theta, hd, i, s);
    const Band b = band_of(std::pow(theta, -double(2 * i) / double(hd)), s);
    ++counts[int(b)];
    EXPECT_NEAR(inv[size_t(i)], ref, 2e-6 * ref);
    if (b == Band::Unchanged) {
      EXPECT_EQ(inv[size_t(i)], plain[size_t(i)]);  // bit for bit
    } else if (b == Band::Divided) {
      EXPECT_EQ(inv[size_t(i)], plain[size_t(i)] / 32.0f);
    }
  }
  EXPECT_EQ(counts[int(Band::Unchanged)], 15);
  EXPECT_EQ(counts[int(Band::Smoothed)], 3);
  EXPECT_EQ(counts[int(Band::Divided)], 14);

  // cos/sin of angle p·inv_freq: the F32 angle's error grows with it (transformers' F32 too).
  const int64_t positions = 4096;
  const RopeTable t = make_rope_table(theta, hd, positions, s);
  for (int64_t p = 0; p < positions; p += 7)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(p) * reference_inv_freq(theta, hd, i, s);
      const double tol = 3e-6 * angle + 2e-7;
      EXPECT_NEAR(t.cos[size_t(p * half + i)], std::cos(angle), tol) << "p " << p << " i " << i;
      EXPECT_NEAR(t.sin[size_t(p * half + i)], std::sin(angle), tol) << "p " << p << " i " << i;
    }
  // Position p's values do not depend on the table size.
  const RopeTable small = make_rope_table(theta, hd, 100, s);
  EXPECT_EQ(small.cos, std::vector<float>(t.cos.begin(), t.cos.begin() + 100 * half));
  EXPECT_EQ(small.sin, std::vector<float>(t.sin.begin(), t.sin.begin() + 100 * half));
}

// head_dim 2: one frequency, inv_freq 1, wavelength 2π ≈ 6.283. With low 1 and high 4 the band limits are
// original and original/4: original <= 6 divides by the factor, 7..25 smooths, >= 26 leaves it unchanged;
// at the limits the smoothed value meets the neighbouring band's (smooth 0 and 1).
TEST(RopeScaling, Llama3BandBoundaries) {
  const double factor = 8;
  const auto one = [&](int64_t original) { return rope_inv_freq(10000.0, 2, llama3(factor, 1, 4, original))[0]; };
  EXPECT_EQ(one(1), 0.125f);
  EXPECT_EQ(one(6), 0.125f);  // 2π > 6: divided
  EXPECT_EQ(one(26), 1.0f);   // 2π < 26/4 = 6.5: unchanged
  EXPECT_EQ(one(100000), 1.0f);
  for (int64_t original = 7; original <= 25; ++original) {
    SCOPED_TRACE(original);
    const double smooth = (double(original) / (2 * std::numbers::pi) - 1) / 3;
    ASSERT_GT(smooth, 0);
    ASSERT_LT(smooth, 1);
    EXPECT_NEAR(one(original), (1 - smooth) / factor + smooth, 1e-6);
  }
  EXPECT_NEAR(one(7), 0.125 + 0.875 * (7 / (2 * std::numbers::pi) - 1) / 3, 1e-6);  // just inside: near 1/8
  EXPECT_NEAR(one(25), 1 - 0.875 * (1 - (25 / (2 * std::numbers::pi) - 1) / 3), 1e-6);  // near 1
  // Continuity at the limits: a wavelength exactly at original/low_freq_factor (smooth 0) and at
  // original/high_freq_factor (smooth 1), with low and high chosen so that the limit is 2π.
  const double two_pi = 2 * std::numbers::pi;
  EXPECT_NEAR(rope_inv_freq(10000.0, 2, llama3(factor, 1 / two_pi, 1, 1))[0], 1 / factor, 1e-6);
  EXPECT_NEAR(rope_inv_freq(10000.0, 2, llama3(factor, 0.1, 1 / two_pi, 1))[0], 1.0, 1e-6);
  // high_freq_factor below low_freq_factor is accepted as transformers computes it (the bands swap roles).
  const RopeScaling swapped = llama3(4, 2, 0.5, 20);  // limits 10 and 40: 2π below both: unchanged
  EXPECT_EQ(rope_inv_freq(10000.0, 2, swapped)[0], 1.0f);
}

TEST(RopeScaling, LinearDividesEveryFrequency) {
  RopeScaling s;
  s.type = RopeScaling::Type::Linear;
  for (const double factor : {1.0, 2.0, 0.5, 3.7}) {
    SCOPED_TRACE(factor);
    s.factor = factor;
    const std::vector<float> inv = rope_inv_freq(10000.0, 128, s);
    const std::vector<float> plain = rope_inv_freq(10000.0, 128);
    for (int64_t i = 0; i < 64; ++i) {
      EXPECT_EQ(inv[size_t(i)], plain[size_t(i)] / float(factor));
      const double ref = reference_inv_freq(10000.0, 128, i, s);
      EXPECT_NEAR(inv[size_t(i)], ref, 1e-6 * ref);
    }
  }
  // factor 1: the default table, bit for bit.
  s.factor = 1;
  const RopeTable a = make_rope_table(10000.0, 32, 300, s), b = make_rope_table(10000.0, 32, 300);
  EXPECT_EQ(a.cos, b.cos);
  EXPECT_EQ(a.sin, b.sin);
}

// longrope (Phi-3.5-mini / Phi-4-mini): inv_freq_i / short_factor_i over rotary_dim = 12 of head_dim 16, cos and
// sin times the attention factor, as a [positions, rotary_dim/2] table; apply_rope rotates pairs (i, i + 6) of the
// first 12 dimensions of each head and leaves dimensions 12..15 as they are.
TEST(RopeScaling, LongRopeOverPartOfTheHead) {
  RopeScaling s;
  s.type = RopeScaling::Type::LongRope;
  s.short_factor = {1.0, 1.25, 1.5, 2.0, 3.5, 7.0};
  s.long_factor = {2, 4, 8, 16, 32, 64};
  s.original_max_positions = 64;
  s.attention_factor = 1.1547005383792515;
  const int64_t hd = 16, rot = 12, positions = 50;
  const std::vector<float> inv = rope_inv_freq(10000.0, rot, s);
  ASSERT_EQ(inv.size(), 6u);
  for (int64_t i = 0; i < 6; ++i) {
    const double ref = reference_inv_freq(10000.0, rot, i, s);
    EXPECT_NEAR(inv[size_t(i)], ref, 1e-6 * ref) << i;
  }
  const RopeTable t = make_rope_table(10000.0, hd, positions, s, rot);
  EXPECT_EQ(t.head_dim, hd);
  EXPECT_EQ(t.rotary_dim, rot);
  ASSERT_EQ(t.cos.size(), size_t(positions * 6));
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t i = 0; i < 6; ++i) {
      const double a = double(p) * reference_inv_freq(10000.0, rot, i, s);
      EXPECT_NEAR(t.cos[size_t(p * 6 + i)], std::cos(a) * s.attention_factor, 2e-6) << p << " " << i;
      EXPECT_NEAR(t.sin[size_t(p * 6 + i)], std::sin(a) * s.attention_factor, 2e-6) << p << " " << i;
    }
  // Two heads of 16 at position 37 in a row of stride 40.
  std::vector<float> x(40), y;
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(0.1 * double(i) - 1.3);
  y = x;
  apply_rope(y.data(), 1, 2, 40, 37, t);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 6; ++i) {
      const size_t a = size_t(h * hd + i), b = a + 6;
      const double c = t.cos[size_t(37 * 6 + i)], sn = t.sin[size_t(37 * 6 + i)];
      EXPECT_NEAR(y[a], x[a] * c - x[b] * sn, 1e-6);
      EXPECT_NEAR(y[b], x[b] * c + x[a] * sn, 1e-6);
    }
  for (const size_t passed : {12, 13, 14, 15, 28, 29, 30, 31, 32, 39}) EXPECT_EQ(y[passed], x[passed]) << passed;
  // rotary_dim 0 or head_dim: the whole head, as before.
  RopeScaling plain;
  EXPECT_EQ(make_rope_table(10000.0, hd, 10, plain, 0).cos, make_rope_table(10000.0, hd, 10, plain, hd).cos);
  EXPECT_EQ(make_rope_table(10000.0, hd, 10).rotary_dim, hd);
}

// longrope's long factors: rope_inv_freq(..., Long) divides by long_factor_i; make_rope_table's long_from picks,
// row by row, the short factors' angles before it and the long factors' from it on (both times the attention
// factor), each row equal, bit for bit, to the row of the table of that one factor list.
TEST(RopeScaling, LongRopeLongFactorsFromAPosition) {
  RopeScaling s;
  s.type = RopeScaling::Type::LongRope;
  s.short_factor = {1.0, 1.25, 1.5, 2.0, 3.5, 7.0};
  s.long_factor = {2, 4, 8, 16, 32, 64};
  s.original_max_positions = 16;
  s.attention_factor = 1.2;
  const int64_t hd = 16, rot = 12, positions = 40;
  RopeScaling as_long = s;
  as_long.short_factor = s.long_factor;  // the reference's long list, read as the short one
  const std::vector<float> inv = rope_inv_freq(10000.0, rot, s, LongRopeFactors::Long);
  EXPECT_EQ(inv, rope_inv_freq(10000.0, rot, as_long));
  for (int64_t i = 0; i < 6; ++i) {
    const double ref = reference_inv_freq(10000.0, rot, i, as_long);
    EXPECT_NEAR(inv[size_t(i)], ref, 1e-6 * ref) << i;
    EXPECT_LT(inv[size_t(i)], rope_inv_freq(10000.0, rot, s)[size_t(i)]) << i;  // long factors > short ones here
  }
  const RopeTable shorts = make_rope_table(10000.0, hd, positions, s, rot);
  const RopeTable longs = make_rope_table(10000.0, hd, positions, s, rot, 0);
  const RopeTable mixed = make_rope_table(10000.0, hd, positions, s, rot, 16);
  EXPECT_EQ(longs.cos, make_rope_table(10000.0, hd, positions, as_long, rot).cos);
  EXPECT_EQ(shorts.cos, make_rope_table(10000.0, hd, positions, s, rot, positions).cos);
  for (int64_t p = 1; p < positions; ++p) {
    const RopeTable& want = p < 16 ? shorts : longs;
    const RopeTable& other = p < 16 ? longs : shorts;
    for (int64_t i = 0; i < 6; ++i) {
      const size_t k = size_t(p * 6 + i);
      EXPECT_EQ(mixed.cos[k], want.cos[k]) << p << " " << i;
      EXPECT_EQ(mixed.sin[k], want.sin[k]) << p << " " << i;
    }
    EXPECT_NE(mixed.sin[size_t(p * 6)], other.sin[size_t(p * 6)]) << p;  // pair 0: short 1, long 2
  }
  // The other types ignore long_from.
  const RopeScaling y = [] {
    RopeScaling r;
    r.type = RopeScaling::Type::Linear;
    r.factor = 2;
    return r;
  }();
  EXPECT_EQ(make_rope_table(10000.0, hd, positions, y, 0, 0).cos, make_rope_table(10000.0, hd, positions, y).cos);
}

RopeScaling yarn(double factor, int64_t original) {
  RopeScaling s;
  s.type = RopeScaling::Type::Yarn;
  s.factor = factor;
  s.original_max_positions = original;
  s.attention_factor = 0.1 * std::log(factor) + 1;  // transformers' default (no mscale keys)
  return s;
}

// YaRN as Qwen2.5 / Qwen3 document it for 128K (factor 4, original 32768, θ 1e6, head_dim 128): the correction
// dims 128·ln(32768 / (β·2π)) / (2·ln 1e6) are 23.6 (β_fast 32) and 39.7 (β_slow 1), so pairs 0..23 keep their
// frequency, pairs 40..63 are divided by 4 and 24..39 blend linearly; cos/sin are times 0.1·ln 4 + 1 = 1.13863.
TEST(RopeScaling, YarnMatchesTheFormulaAndItsKnownBands) {
  const RopeScaling s = yarn(4.0, 32768);
  const std::vector<float> inv = rope_inv_freq(1e6, 128, s), plain = rope_inv_freq(1e6, 128);
  ASSERT_EQ(inv.size(), 64u);
  for (int64_t i = 0; i < 64; ++i) {
    const double ref = reference_inv_freq(1e6, 128, i, s);
    EXPECT_NEAR(inv[size_t(i)], ref, 2e-6 * ref) << i;
    if (i <= 23) {
      EXPECT_EQ(inv[size_t(i)], plain[size_t(i)]) << i;
    }
    if (i >= 40) {
      EXPECT_NEAR(inv[size_t(i)], plain[size_t(i)] / 4, 1e-6 * plain[size_t(i)]) << i;
    }
    if (i > 23 && i < 40) {
      EXPECT_LT(inv[size_t(i)], plain[size_t(i)]) << i;
      EXPECT_GT(inv[size_t(i)], plain[size_t(i)] / 4) << i;
    }
  }
  EXPECT_NEAR(s.attention_factor, 1.1386294361, 1e-9);
  const RopeTable t = make_rope_table(1e6, 128, 40, s);
  EXPECT_FLOAT_EQ(t.cos[0], float(s.attention_factor));  // position 0: cos 1 times the attention factor
  EXPECT_EQ(t.sin[0], 0.0f);
  for (int64_t p = 0; p < 40; ++p)
    for (int64_t i = 0; i < 64; ++i) {
      const double a = double(p) * reference_inv_freq(1e6, 128, i, s);
      EXPECT_NEAR(t.cos[size_t(p * 64 + i)], std::cos(a) * s.attention_factor, 4e-6) << p << " " << i;
      EXPECT_NEAR(t.sin[size_t(p * 64 + i)], std::sin(a) * s.attention_factor, 4e-6) << p << " " << i;
    }
  // truncate false (gpt-oss): the ramp runs between the unrounded dims 23.6 and 39.65, so pair 24 blends less
  // (ramp 0.025 instead of 1/17) and pair 23 is still unchanged.
  RopeScaling exact = s;
  exact.truncate = false;
  const std::vector<float> untruncated = rope_inv_freq(1e6, 128, exact);
  for (int64_t i = 0; i < 64; ++i) {
    const double ref = reference_inv_freq(1e6, 128, i, exact);
    EXPECT_NEAR(untruncated[size_t(i)], ref, 2e-6 * ref) << i;
  }
  EXPECT_EQ(untruncated[23], plain[23]);
  EXPECT_GT(untruncated[24], inv[24]);
  // Other betas move the ramp: β_fast 64 lowers the first blended pair (dim 128·ln(32768/(64·2π))/(2·ln 1e6) =
  // 20.4 -> 20).
  RopeScaling wide = s;
  wide.beta_fast = 64;
  const std::vector<float> w = rope_inv_freq(1e6, 128, wide);
  EXPECT_EQ(w[20], plain[20]);
  EXPECT_LT(w[21], plain[21]);
}

// "dynamic" (dynamic NTK) changes the base only past max_position_embeddings, which kq's context never exceeds.
TEST(RopeScaling, DynamicIsTheDefaultWithinTheContext) {
  RopeScaling s;
  s.type = RopeScaling::Type::Dynamic;
  s.factor = 2.0;
  EXPECT_EQ(rope_inv_freq(10000.0, 64, s), rope_inv_freq(10000.0, 64));
  EXPECT_EQ(make_rope_table(10000.0, 64, 30, s).cos, make_rope_table(10000.0, 64, 30).cos);
}

}  // namespace
}  // namespace kq::cpu
