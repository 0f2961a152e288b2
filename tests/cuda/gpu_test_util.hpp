#pragma once
// Helpers for the GPU tests: skipping without a device, fresh random inputs,
// host reference conversions (BF16, OCP E4M3) and the relative L2 error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kq/dtype.hpp"
#include "kq/fp8.hpp"

/// Skips the test (with the reason) when no CUDA device can be used.
#define KQ_REQUIRE_GPU()                                                        \
  do {                                                                          \
    const ::kq::FP8Info& kq_info_ = ::kq::get_fp8_info();                       \
    if (!kq_info_.device_found) GTEST_SKIP() << "no CUDA device: " << kq_info_.reason; \
  } while (0)

/// Skips the test when FP8 tensor cores are not available.
#define KQ_REQUIRE_FP8()                                                        \
  do {                                                                          \
    const ::kq::FP8Info& kq_info_ = ::kq::get_fp8_info();                       \
    if (!kq_info_.available) GTEST_SKIP() << "FP8 not available: " << kq_info_.reason; \
  } while (0)

namespace kq::testing {

/// A generator seeded fresh for every test (the seed goes into failure messages).
struct Rng {
  uint64_t seed;
  std::mt19937_64 gen;
  Rng() : seed(std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32)), gen(seed) {}
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(gen); }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
};

/// n BF16 values ~ N(0, sigma²), never zero.
inline std::vector<uint16_t> random_bf16(Rng& r, size_t n, double sigma = 1.0) {
  std::vector<uint16_t> v(n);
  for (auto& e : v) {
    float f = 0.0f;
    while (f == 0.0f) f = float(r.normal() * sigma);
    e = f32_to_bf16(f);
  }
  return v;
}

inline float bf16f(uint16_t b) { return bf16_to_f32(b); }

/// OCP OFP8 E4M3 code -> value (NaN for S.1111.111).
inline float e4m3_to_f32(uint8_t c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
  const float mag = e == 0 ? std::ldexp(float(m) / 8.0f, -6) : std::ldexp(1.0f + float(m) / 8.0f, e - 7);
  return s ? -mag : mag;
}

/// float -> E4M3, round to nearest, ties to even, saturating to ±448 (NaN -> 0x7F).
inline uint8_t f32_to_e4m3_sat(float v) {
  if (std::isnan(v)) return 0x7F;
  const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const float a = std::fabs(v);
  if (a >= 448.0f) return uint8_t(sign | 0x7E);
  // Positive codes 0x00..0x7E are increasing in value: find the neighbours.
  uint8_t lo = 0;
  for (uint8_t c = 0; c <= 0x7E; ++c)
    if (e4m3_to_f32(c) <= a) lo = c;
  const uint8_t hi = uint8_t(lo + 1);
  const float dl = a - e4m3_to_f32(lo), dh = e4m3_to_f32(hi) - a;
  const uint8_t pick = dl < dh ? lo : (dh < dl ? hi : ((lo & 1) ? hi : lo));
  return uint8_t(sign | pick);
}

/// Random finite E4M3 codes (never NaN), magnitudes spread over the whole range.
inline std::vector<uint8_t> random_e4m3(Rng& r, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& c : v) {
    do c = uint8_t(r.integer(0, 255));
    while ((c & 0x7F) == 0x7F || (c & 0x7F) == 0);
  }
  return v;
}

/// ‖got − ref‖₂ / ‖ref‖₂; +inf when any element of `got` is not finite.
inline double rel_l2(const std::vector<double>& ref, const std::vector<float>& got) {
  if (ref.size() != got.size()) return std::numeric_limits<double>::infinity();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    const double d = double(got[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// BF16 bits [rows, ld] -> float [rows, cols] (drops the row padding).
inline std::vector<float> bf16_matrix(const std::vector<uint16_t>& v, size_t rows, size_t cols, size_t ld) {
  std::vector<float> out(rows * cols);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) out[r * cols + c] = bf16f(v[r * ld + c]);
  return out;
}

}  // namespace kq::testing
