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
  if (x != x) return 0;
  // The codes' magnitudes are not in code order: scan the 8 of them for the nearest, a tie kept by the smaller
  // magnitude. |x| saturates at 1 first; the distances, in double, are then exact at a midpoint of two values.
  const double a = std::min(std::fabs(double(x)), 1.0);
  int best = 0;
  for (int c = 1; c < 8; ++c) {
    const double d = std::fabs(a - double(kFP4Bnb[size_t(c)])), db = std::fabs(a - double(kFP4Bnb[size_t(best)]));
    if (d < db || (d == db && kFP4Bnb[size_t(c)] < kFP4Bnb[size_t(best)])) best = c;
  }
  return uint8_t((x < 0.0f ? 8 : 0) | best);
}

float int4_sym_scale(float absmax) { return absmax / 7.0f; }

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
