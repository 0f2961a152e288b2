#include "formats/packed4.hpp"

#include "formats/fp4.hpp"
#include "formats/fp4_bnb.hpp"
#include "formats/nf4.hpp"

namespace kq::formats {

void pack_nibbles(const uint8_t* codes, int64_t n, uint8_t* packed) {
  int64_t i = 0;
  for (; i + 1 < n; i += 2) packed[i >> 1] = uint8_t((codes[i] & 0xF) | ((codes[i + 1] & 0xF) << 4));
  if (i < n) packed[i >> 1] = uint8_t(codes[i] & 0xF);
}

void unpack_nibbles(const uint8_t* packed, int64_t n, uint8_t* codes) {
  for (int64_t i = 0; i < n; ++i) codes[i] = get_nibble(packed, i);
}

const float* q4_codebook(WeightFormat f) {
  switch (f) {
    case WeightFormat::NF4: return kNF4.data();
    case WeightFormat::FP4: return kE2M1.data();
    case WeightFormat::FP4_BNB: return kFP4Bnb.data();
    default: return nullptr;
  }
}

void q4_block_lut(WeightFormat f, float scale, uint8_t zero, float lut[16]) {
  if (const float* book = q4_codebook(f)) {
    for (int c = 0; c < 16; ++c) lut[c] = book[c] * scale;
    return;
  }
  switch (f) {
    case WeightFormat::INT4_SYM:
      for (int c = 0; c < 16; ++c) lut[c] = float(c - 8) * scale;
      return;
    case WeightFormat::INT4_ASYM:
      for (int c = 0; c < 16; ++c) lut[c] = float(c - int(zero)) * scale;
      return;
    default:
      for (int c = 0; c < 16; ++c) lut[c] = 0.0f;  // not a 4-bit format: callers never pass one
      return;
  }
}

uint8_t nearest_index16(const float* sorted, float x, uint8_t nan_index) {
  if (x != x) return nan_index;
  int i = 0;
  while (i < 15) {
    // The midpoint in double is exact (the sum of two F32 values whose exponents differ by at most 29, or one of
    // them 0, fits in 53 bits: true of the NF4 table), so x > mid means x is strictly nearer sorted[i + 1], and
    // x == mid is an exact tie, which stays at the lower index. (A midpoint computed in F32 rounds, and then
    // picks the farther entry for x within half an ulp of it: 5 of NF4's 15 F32 midpoints did.)
    const double mid = 0.5 * (double(sorted[i]) + double(sorted[i + 1]));
    if (double(x) > mid) {
      ++i;
    } else {
      break;
    }
  }
  return uint8_t(i);
}

}  // namespace kq::formats
