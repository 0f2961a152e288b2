#include "formats/fp8.hpp"

#include <bit>
#include <cmath>
#include <limits>

#include "core/enum_name.hpp"
#include "kq/error.hpp"

namespace kq::formats {
namespace {

constexpr float pow2(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

// Decoded values of all 256 codes from their sign/exponent/mantissa fields.
constexpr std::array<float, 256> make_table(int ebits, int mbits, bool ieee_specials) {
  std::array<float, 256> t{};
  const int bias = (1 << (ebits - 1)) - 1;
  const int emax_field = (1 << ebits) - 1;
  const int mmax = (1 << mbits) - 1;
  for (int c = 0; c < 256; ++c) {
    const int e = (c >> mbits) & emax_field;
    const int m = c & mmax;
    float v;
    if (ieee_specials && e == emax_field) {
      v = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    } else if (!ieee_specials && e == emax_field && m == mmax) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (e == 0) {
      v = float(m) * pow2(1 - bias - mbits);
    } else {
      v = (1.0f + float(m) * pow2(-mbits)) * pow2(e - bias);
    }
    t[size_t(c)] = (c & 0x80) ? -v : v;
  }
  return t;
}

constexpr std::array<float, 256> kE4M3Table = make_table(4, 3, false);
constexpr std::array<float, 256> kE5M2Table = make_table(5, 2, true);

// Round a non-negative value below 2^23 to an integer, ties to even
// (independent of the floating-point environment's rounding mode).
uint32_t round_half_even(float q) {
  const float fl = std::floor(q);
  const float diff = q - fl;  // exact for q < 2^23
  uint32_t r = uint32_t(fl);
  if (diff > 0.5f || (diff == 0.5f && (r & 1u))) ++r;
  return r;
}

}  // namespace

const std::array<float, 256>& fp8_table(FP8Format f) { return f == FP8Format::E4M3 ? kE4M3Table : kE5M2Table; }

uint8_t fp8_encode(float x, FP8Format f, bool saturate) {
  const bool e4 = f == FP8Format::E4M3;
  const int mbits = e4 ? 3 : 2;
  const int bias = e4 ? 7 : 15;
  const uint32_t max_code = e4 ? kE4M3MaxCode : kE5M2MaxCode;
  const uint8_t overflow_code = e4 ? kE4M3NaN : kE5M2Inf;

  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint8_t sign = uint8_t((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint8_t(sign | (e4 ? kE4M3NaN : kE5M2NaN));
  if (a == 0x7f800000u) return uint8_t(sign | (saturate ? max_code : overflow_code));

  uint32_t code;
  const int fexp = int(a >> 23);  // F32 biased exponent
  if (fexp < 127 + 1 - bias) {
    // Below the smallest FP8 normal: count in units of the smallest subnormal
    // 2^(1-bias-mbits). The scaling by a power of two is exact; a result of
    // 2^mbits is the smallest normal, whose code is exactly 2^mbits too.
    const float q = std::bit_cast<float>(a) * pow2(bias - 1 + mbits);
    code = round_half_even(q);
  } else {
    // Round the F32 exponent+mantissa field to mbits mantissa bits (a carry
    // into the exponent is the correct result), then rebias the exponent.
    const int shift = 23 - mbits;
    const uint32_t r = (a + ((1u << (shift - 1)) - 1u) + ((a >> shift) & 1u)) >> shift;
    code = r - (uint32_t(127 - bias) << mbits);
  }
  if (code > max_code) return uint8_t(sign | (saturate ? max_code : overflow_code));
  return uint8_t(sign | code);
}

float finite_absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > m && a <= std::numeric_limits<float>::max()) m = a;
  }
  return m;
}

float fp8_scale_for(float absmax, FP8Format f) {
  const float max = fp8_max(f);
  float s = absmax / max;
  if (!(absmax > 0.0f) || !std::isfinite(s)) return 1.0f;
  // absmax / max below the smallest normal float: rounded to the coarse subnormal
  // grid (or to 0 under absmax ~6e-43), so absmax / s may not fit the format: the
  // next float up until it does (a few steps at most).
  if (s < std::numeric_limits<float>::min()) {
    if (s == 0.0f) s = std::numeric_limits<float>::denorm_min();
    while (absmax / s > max) s = std::nextafter(s, std::numeric_limits<float>::infinity());
  }
  return s;
}

void fp8_quantize_row(const float* x, int64_t n, float scale, FP8Format f, bool saturate, uint8_t* codes) {
  for (int64_t i = 0; i < n; ++i) codes[i] = fp8_encode(x[i] / scale, f, saturate);
}

void fp8_dequantize_row(const uint8_t* codes, int64_t n, float scale, FP8Format f, float* out) {
  const std::array<float, 256>& t = fp8_table(f);
  for (int64_t i = 0; i < n; ++i) out[i] = t[codes[i]] * scale;
}

}  // namespace kq::formats

namespace kq {

std::string_view fp8_format_name(FP8Format f) {
  switch (f) {
    case FP8Format::E4M3: return "e4m3";
    case FP8Format::E5M2: return "e5m2";
  }
  return unknown_enum_name(int64_t(f));
}

float fp8_max(FP8Format f) {
  switch (f) {
    case FP8Format::E4M3: return formats::kE4M3Max;
    case FP8Format::E5M2: return formats::kE5M2Max;
  }
  raise<InvalidArgument>("fp8_max: FP8Format {} is neither E4M3 nor E5M2", int(f));
}

}  // namespace kq
