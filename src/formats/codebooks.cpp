// Element encoders of the 4-bit formats (NF4, FP4 E2M1, bitsandbytes FP4, INT4).
#include <algorithm>
#include <cmath>

#include "formats/fp4.hpp"
#include "formats/fp4_bnb.hpp"
#include "formats/int4.hpp"
#include "formats/nf4.hpp"
#include "formats/packed4.hpp"

namespace kq::formats {

uint8_t nf4_encode(float x) { return nearest_index16(kNF4.data(), x, 7); }

uint8_t fp4_encode(float x) {
  if (x != x) return 0;
  // Magnitude codes 0..7 are ascending; a midpoint tie goes to the even code (even mantissa).
  const float a = std::fabs(x);
  int m = 0;
  while (m < 7) {
    const float mid = 0.5f * (kE2M1[size_t(m)] + kE2M1[size_t(m + 1)]);
    if (a > mid || (a == mid && (m & 1))) {
      ++m;
    } else {
      break;
    }
  }
  return uint8_t((std::signbit(x) ? 8 : 0) | m);
}

uint8_t fp4_bnb_encode(float x) {
  // bitsandbytes' decision tree on |x| with its F32 literals (each a decimal rounding of the midpoint of two
  // neighbouring magnitudes: 7/24, 7/12, 5/6, 5/12, 11/128, 5/24, 1/384) and strict '>': a ratio at or below a
  // threshold takes the smaller magnitude. 0.583333f is 3.2e-7 below 7/12, so float(7/12) = 0.58333331 goes up to
  // 2/3. NaN fails every comparison (code 0); |x| > 1 takes code 3 (1).
  const uint8_t sign = x < 0.0f ? 8 : 0;
  const float a = std::fabs(x);
  uint8_t c = 0;
  if (a > 0.29166667f) {
    if (a > 0.583333f) {
      c = a > 0.8333333f ? 3 : 2;
    } else {
      c = a > 0.4166667f ? 5 : 4;
    }
  } else if (a > 0.0859375f) {
    c = a > 0.20833333f ? 7 : 6;
  } else {
    c = a > 0.00260417f ? 1 : 0;
  }
  return uint8_t(sign | c);
}

// GPTQ's symmetric scale (xmax − xmin) / maxq = 2·absmax / 15. 2·absmax is exact in F32 (or overflows), so
// absmax / 7.5f is the same single rounding of the same real value, without the overflow.
float int4_sym_scale(float absmax) { return absmax / 7.5f; }

uint8_t int4_sym_encode(float w, float scale) {
  if (!(scale > 0.0f)) return uint8_t(kInt4SymOffset);
  const float q = std::nearbyint(w / scale);
  if (q != q) return uint8_t(kInt4SymOffset);
  return uint8_t(int(std::clamp(q, -8.0f, 7.0f)) + kInt4SymOffset);
}

void int4_asym_params(float lo, float hi, float* scale, uint8_t* zero) {
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  const float s = (hi - lo) / float(kInt4Levels);
  if (!(s > 0.0f) || !std::isfinite(s)) {
    *scale = 0.0f;
    *zero = 0;
    return;
  }
  *scale = s;
  *zero = uint8_t(std::clamp(std::nearbyint(-lo / s), 0.0f, float(kInt4Levels)));
}

uint8_t int4_asym_encode(float w, float scale, uint8_t zero) {
  if (!(scale > 0.0f)) return zero;
  const float q = std::nearbyint(w / scale);
  if (q != q) return zero;
  return uint8_t(std::clamp(q + float(zero), 0.0f, float(kInt4Levels)));
}

}  // namespace kq::formats
