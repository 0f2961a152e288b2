#pragma once
// Scalar math helpers for the CPU ops, written so the compiler can vectorize
// loops that call them (no library calls, no branches).
#include <bit>
#include <cstdint>

namespace kq::cpu {

/// e^x in F32 with |relative error| < 2e-7 for x in [-87, 88] (Cephes expf:
/// x = n·ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r, then scale by 2^n).
/// Returns 0 for x < -87.3 (including -inf) and clamps x > 88.3 to e^88.3.
/// NaN input gives an unspecified value. Inline and branch-free, so loops over it vectorize;
/// `static` so each ISA-specific file (ops_vec_avx2.cpp) keeps its own copy.
static inline float exp_f32(float x) {
  const bool underflow = x < -87.3f;
  x = x > 88.3f ? 88.3f : x;  // n <= 127: 2^n stays finite
  x = x < -87.3f ? -87.3f : x;
  // n = round(x / ln2) via the 1.5·2^23 trick (vectorizes without SSE4.1 rounding).
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;  // ln2 split in a high part (exact) ...
  r = r - n * -2.12194440e-4f;     // ... and a low part
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  const float y = er * std::bit_cast<float>(bits);
  return underflow ? 0.0f : y;
}

}  // namespace kq::cpu
