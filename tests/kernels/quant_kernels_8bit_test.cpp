// Optimized INT8 / FP8 kernels of every ISA vs the scalar reference kernels:
// W8A8 INT8 and the activation quantizer bit-identical, weight-only INT8 and
// FP8 within F32 tolerance of a double reference; decode = prefill bits and
// thread invariance (FP8: below the sgemm threshold, sgemm over the decoded
// weights from it on); every FP8 code decoded exactly. Odd shapes throughout
// (K and N not multiples of the vector width, K past one 1024/2048 chunk).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "formats/fp8.hpp"
#include "formats/int8.hpp"
#include "isa_test_util.hpp"
#include "kernels/cpu/linear_f32_kernels.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"

namespace kq::testing {
namespace {

using cpu::Isa;
using cpu::QuantKernels;

struct Shape {
  int64_t N, K;
};
constexpr Shape kShapes[] = {{7, 688}, {5, 33}, {9, 1}, {3, 100}, {1, 256}, {13, 64}, {6, 2100}, {4, 4133}};
// 95, 96, 97: below, at and past the FP8 kernels' sgemm threshold (kFp8SgemmMinM).
constexpr int64_t kBatches[] = {1, 3, 8, 17, 95, 96, 97};
static_assert(cpu::avx2::kFp8SgemmMinM == 96, "kBatches straddles the FP8 sgemm threshold");

/// Random finite FP8 codes of an s.N x s.K weight (E4M3 NaN and E5M2 Inf/NaN patterns replaced), from `seed`.
std::vector<uint8_t> random_finite_fp8(const Shape& s, FP8Format f, uint32_t seed) {
  std::vector<uint8_t> codes = random_bytes(size_t(s.N * s.K), seed);
  for (uint8_t& c : codes)
    if (!std::isfinite(formats::fp8_decode(c, f))) c &= 0xF0;
  return codes;
}

/// The FP8 tests' weight view over `codes` with scales `ws`: per-tensor for N = 13, no bias for N = 5.
cpu::Fp8WeightView fp8_view(const std::vector<uint8_t>& codes, const std::vector<float>& ws,
                            const std::vector<float>& bias, const Shape& s, FP8Format f) {
  cpu::Fp8WeightView w;
  w.codes = codes.data();
  w.scales = ws.data();
  w.per_tensor = s.N == 13;
  w.format = f;
  w.bias = s.N == 5 ? nullptr : bias.data();
  w.N = s.N;
  w.K = s.K;
  return w;
}

class QuantKernels8 : public ::testing::TestWithParam<Isa> {
 protected:
  const QuantKernels& k() const { return cpu::quant_kernels(GetParam()); }
  const QuantKernels& ref() const { return cpu::quant_kernels(Isa::Ref); }
};

TEST_P(QuantKernels8, ActivationQuantizationBitIdentical) {
  KQ_REQUIRE_ISA(GetParam());
  for (int64_t K : {1, 7, 31, 32, 33, 64, 688, 1001}) {
    const int64_t M = 5;
    std::vector<float> x = gaussian(size_t(M * K), uint32_t(K), 3.0f);
    for (int64_t k = 0; k < K; ++k) x[size_t(K + k)] = 0.0f;  // an all-zero token
    x[0] = std::numeric_limits<float>::quiet_NaN();
    if (K > 5) {
      x[size_t(2 * K + 5)] = std::numeric_limits<float>::infinity();
      x[size_t(3 * K + 1)] = 1e-30f;
      x[size_t(4 * K + 2)] = -2.5f * 1e-3f;  // ties (±0.5 steps) appear with a clean absmax
    }
    std::vector<int8_t> q0(static_cast<size_t>(M * K)), q1(static_cast<size_t>(M * K));
    std::vector<float> s0(static_cast<size_t>(M)), s1(static_cast<size_t>(M));
    ref().quantize_rows_s8(x.data(), M, K, q0.data(), s0.data(), 2);
    k().quantize_rows_s8(x.data(), M, K, q1.data(), s1.data(), 2);
    for (int64_t m = 0; m < M; ++m) {
      std::vector<int8_t> q(static_cast<size_t>(K));
      EXPECT_EQ(formats::int8_quantize_dynamic(x.data() + m * K, K, q.data()), s1[size_t(m)]) << K;
      EXPECT_EQ(std::memcmp(q.data(), q1.data() + m * K, size_t(K)), 0) << "K=" << K << " token " << m;
    }
    EXPECT_EQ(s0, s1);
  }
}

// FP8 activation quantization: one row scaled by exactly 1 (absmax = max)
// holding every FP8 value, every midpoint between neighbours (ties to even),
// values just off the midpoints, subnormals, ±0, NaN and ±Inf; one random row.
TEST_P(QuantKernels8, Fp8ActivationQuantizationBitIdentical) {
  KQ_REQUIRE_ISA(GetParam());
  for (FP8Format f : {FP8Format::E4M3, FP8Format::E5M2})
    for (bool sat : {true, false}) {
      std::vector<float> grid;
      for (int c = 0; c < 128; ++c) {
        const float v = formats::fp8_decode(uint8_t(c), f);
        if (!std::isfinite(v)) continue;
        grid.push_back(v);
        const float nx = formats::fp8_decode(uint8_t(c + 1), f);
        if (c < 127 && std::isfinite(nx)) {
          const float mid = 0.5f * (v + nx);
          grid.insert(grid.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)});
        }
      }
      std::vector<float> row1;
      for (float v : grid) row1.insert(row1.end(), {v, -v});
      row1.insert(row1.end(), {-0.0f, 1e-30f, std::numeric_limits<float>::quiet_NaN(),
                               std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()});
      const int64_t K = int64_t(row1.size());
      std::vector<float> x = gaussian(size_t(2 * K), 21, 3.0f);
      std::copy(row1.begin(), row1.end(), x.begin());
      std::vector<float> d0(x.size()), d1(x.size()), s0(2), s1(2);
      ref().quantize_rows_fp8(x.data(), 2, K, f, sat, d0.data(), s0.data(), 2);
      k().quantize_rows_fp8(x.data(), 2, K, f, sat, d1.data(), s1.data(), 2);
      EXPECT_EQ(s0, s1);
      EXPECT_EQ(s0[0], 1.0f);  // the test row is in FP8 units
      for (size_t i = 0; i < x.size(); ++i) {
        if (std::isnan(d0[i])) {
          EXPECT_TRUE(std::isnan(d1[i])) << i;
          continue;
        }
        EXPECT_EQ(std::memcmp(&d0[i], &d1[i], sizeof(float)), 0)
            << fp8_format_name(f) << (sat ? " sat" : " nosat") << " x=" << x[i] << " ref " << d0[i] << " got " << d1[i];
      }
    }
}

TEST_P(QuantKernels8, W8A8BitIdenticalToReference) {
  KQ_REQUIRE_ISA(GetParam());
  for (const Shape& s : kShapes)
    for (bool per_tensor : {false, true}) {
      // Codes over the full signed range, −128 included (a file may hold it).
      std::vector<uint8_t> wb = random_bytes(size_t(s.N * s.K), uint32_t(s.N * 31 + s.K));
      wb[0] = 0x80;
      const std::vector<float> ws = gaussian(size_t(s.N), 3, 0.01f), bias = gaussian(size_t(s.N), 4);
      cpu::Int8WeightView w;
      w.codes = reinterpret_cast<const int8_t*>(wb.data());
      w.scales = ws.data();
      w.per_tensor = per_tensor;
      w.bias = per_tensor ? nullptr : bias.data();
      w.N = s.N;
      w.K = s.K;
      for (int64_t M : kBatches) {
        std::vector<uint8_t> xb = random_bytes(size_t(M * s.K), uint32_t(M + s.K), 1, 255);  // −127..127
        std::vector<int8_t> xq(xb.size());
        for (size_t i = 0; i < xb.size(); ++i) xq[i] = int8_t(int(xb[i]) - 128);
        const std::vector<float> xs = gaussian(size_t(M), 5, 0.02f);
        std::vector<float> y0(static_cast<size_t>(M * s.N)), y1(y0.size());
        ref().gemm_s8s8_f32_rowwise(w, xq.data(), xs.data(), M, y0.data(), 2);
        for (int threads : {1, 3}) {
          std::fill(y1.begin(), y1.end(), NAN);
          k().gemm_s8s8_f32_rowwise(w, xq.data(), xs.data(), M, y1.data(), threads);
          ASSERT_EQ(std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(float)), 0)
              << "N=" << s.N << " K=" << s.K << " M=" << M << " per_tensor=" << per_tensor << " threads=" << threads;
        }
      }
    }
}

TEST_P(QuantKernels8, WeightOnlyInt8WithinTolerance) {
  KQ_REQUIRE_ISA(GetParam());
  for (const Shape& s : kShapes) {
    std::vector<uint8_t> wb = random_bytes(size_t(s.N * s.K), uint32_t(s.N + 7 * s.K), 1, 255);
    const std::vector<float> ws = gaussian(size_t(s.N), 8, 0.01f), bias = gaussian(size_t(s.N), 9);
    cpu::Int8WeightView w;
    w.codes = reinterpret_cast<const int8_t*>(wb.data());
    w.scales = ws.data();
    w.bias = bias.data();
    w.N = s.N;
    w.K = s.K;
    for (int64_t M : kBatches) {
      const std::vector<float> x = gaussian(size_t(M * s.K), uint32_t(M * 13 + s.K));
      auto run = [&](int64_t m, const float* xp, float* y, int t) { k().gemm_f32s8_f32_rowwise(w, xp, m, y, t); };
      const std::vector<float> y = expect_batch_and_thread_invariant(M, s.N, s.K, x, run, "int8-wo");
      std::vector<double> ref(y.size()), mag(y.size());
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < s.N; ++n) {
          double acc = 0, a = 0;
          for (int64_t kk = 0; kk < s.K; ++kk) {
            const double t = double(x[size_t(m * s.K + kk)]) * double(w.codes[n * s.K + kk]) * ws[size_t(n)];
            acc += t;
            a += std::fabs(t);
          }
          ref[size_t(m * s.N + n)] = acc + bias[size_t(n)];
          mag[size_t(m * s.N + n)] = a + std::fabs(bias[size_t(n)]);
        }
      expect_within_tolerance(y, ref, mag, M, s.N, s.K, "int8-wo N=" + std::to_string(s.N) + " K=" + std::to_string(s.K));
    }
  }
}

// Every finite (E4M3: non-NaN) code of each format decodes exactly: one-hot
// rows against x = 1 give table[code] · 1 · 1 with no rounding, through both
// the main loop (k = 5) and the zero-padded tail (k = 35 of K = 40).
TEST_P(QuantKernels8, EveryFp8CodeDecodesExactly) {
  KQ_REQUIRE_ISA(GetParam());
  for (FP8Format f : {FP8Format::E4M3, FP8Format::E5M2})
    for (int64_t pos : {5, 35}) {
      const int64_t N = 256, K = 40;
      std::vector<uint8_t> codes(size_t(N * K), 0);
      for (int64_t n = 0; n < N; ++n) codes[size_t(n * K + pos)] = uint8_t(n);
      const std::vector<float> ones(size_t(N), 1.0f);
      cpu::Fp8WeightView w;
      w.codes = codes.data();
      w.scales = ones.data();
      w.format = f;
      w.N = N;
      w.K = K;
      for (int64_t M : {1, 2}) {
        std::vector<float> x(size_t(M * K), 0.0f);
        for (int64_t m = 0; m < M; ++m) x[size_t(m * K + pos)] = 1.0f;
        std::vector<float> y(static_cast<size_t>(M * N));
        k().gemm_f32fp8_f32_rowwise(w, x.data(), nullptr, M, y.data(), 2);
        for (int64_t n = 0; n < N; ++n) {
          const float want = formats::fp8_decode(uint8_t(n), f);
          if (std::isnan(want) && f == FP8Format::E4M3) continue;  // ops with E4M3 NaN codes use the reference
          for (int64_t m = 0; m < M; ++m) {
            const float got = y[size_t(m * N + n)];
            if (std::isnan(want))
              EXPECT_TRUE(std::isnan(got)) << fp8_format_name(f) << " code " << n;
            else
              EXPECT_EQ(got, want) << fp8_format_name(f) << " code " << n << " pos " << pos << " M=" << M;
          }
        }
      }
    }
}

TEST_P(QuantKernels8, Fp8WithinToleranceOfDoubleReference) {
  KQ_REQUIRE_ISA(GetParam());
  for (FP8Format f : {FP8Format::E4M3, FP8Format::E5M2})
    for (const Shape& s : kShapes)
      for (bool w8a8 : {false, true}) {
        const std::vector<uint8_t> codes = random_finite_fp8(s, f, uint32_t(s.K * 3 + s.N + int(f)));
        const std::vector<float> ws = gaussian(size_t(s.N), 10, 0.01f), bias = gaussian(size_t(s.N), 11);
        const cpu::Fp8WeightView w = fp8_view(codes, ws, bias, s, f);
        for (int64_t M : kBatches) {
          std::vector<float> x = gaussian(size_t(M * s.K), uint32_t(M * 7 + s.K), 2.0f);
          if (w8a8)  // the op passes decoded FP8 activations
            for (float& v : x) v = formats::fp8_decode(formats::fp8_encode(v, f, true), f);
          const std::vector<float> xs = gaussian(size_t(M), 12, 0.1f);
          const float* xsp = w8a8 ? xs.data() : nullptr;
          auto run = [&](int64_t m, const float* xp, float* y, int t) {
            // A single token of the batch keeps its own activation scale.
            const float* sp = xsp ? xsp + (xp - x.data()) / s.K : nullptr;
            k().gemm_f32fp8_f32_rowwise(w, xp, sp, m, y, t);
          };
          const std::vector<float> y = run_batch(M, s.N, s.K, x, run, cpu::avx2::kFp8SgemmMinM, "fp8");
          std::vector<double> ref(y.size()), mag(y.size());
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < s.N; ++n) {
              const double sc = double(ws[size_t(w.per_tensor ? 0 : n)]) * (w8a8 ? double(xs[size_t(m)]) : 1.0);
              double acc = 0, a = 0;
              for (int64_t kk = 0; kk < s.K; ++kk) {
                const double t = double(x[size_t(m * s.K + kk)]) * formats::fp8_decode(codes[size_t(n * s.K + kk)], f);
                acc += t;
                a += std::fabs(t);
              }
              const double b = w.bias ? double(bias[size_t(n)]) : 0.0;
              ref[size_t(m * s.N + n)] = acc * sc + b;
              mag[size_t(m * s.N + n)] = a * std::fabs(sc) + std::fabs(b);
            }
          expect_within_tolerance(y, ref, mag, M, s.N, s.K,
                                  std::string(fp8_format_name(f)) + (w8a8 ? " w8a8" : " wo") + " N=" +
                                      std::to_string(s.N) + " K=" + std::to_string(s.K));
        }
      }
}

// FP8 prefill from kFp8SgemmMinM tokens on: oneDNN sgemm over exactly the
// decoded FP8 weights (one panel), then the reference's epilogue
// acc · (xs[m] · ws[n]) + bias[n], bit for bit; both formats, weight-only and
// W8A8, per-channel and per-tensor scales, with and without bias.
TEST_P(QuantKernels8, Fp8PrefillIsSgemmOverTheDecodedWeights) {
  KQ_REQUIRE_ISA(GetParam());
  const int64_t min_m = cpu::avx2::kFp8SgemmMinM;
  for (FP8Format f : {FP8Format::E4M3, FP8Format::E5M2})
    for (const Shape& s : {Shape{37, 700}, Shape{13, 33}, Shape{5, 2100}})
      for (bool w8a8 : {false, true})
        for (int64_t M : {min_m, min_m + 1, min_m + 27}) {
          const std::vector<uint8_t> codes = random_finite_fp8(s, f, uint32_t(s.K + s.N + int(f)));
          std::vector<float> W(codes.size());
          for (size_t i = 0; i < codes.size(); ++i) W[i] = formats::fp8_decode(codes[i], f);
          const std::vector<float> ws = gaussian(size_t(s.N), 10, 0.01f), bias = gaussian(size_t(s.N), 11);
          const std::vector<float> xs = gaussian(size_t(M), 12, 0.1f);
          const cpu::Fp8WeightView w = fp8_view(codes, ws, bias, s, f);
          const std::vector<float> x = gaussian(size_t(M * s.K), uint32_t(M * 7 + s.K), 2.0f);
          std::vector<float> y(size_t(M * s.N), std::nanf("")), want(y.size());
          k().gemm_f32fp8_f32_rowwise(w, x.data(), w8a8 ? xs.data() : nullptr, M, y.data(), 2);
          cpu::gemm_f32_dnnl(x.data(), M, W.data(), s.N, s.K, want.data(), 2);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < s.N; ++n) {
              const float sc = ws[size_t(w.per_tensor ? 0 : n)];
              float& v = want[size_t(m * s.N + n)];
              v = v * (w8a8 ? xs[size_t(m)] * sc : sc) + (w.bias ? bias[size_t(n)] : 0.0f);
            }
          for (size_t i = 0; i < y.size(); ++i)
            ASSERT_EQ(y[i], want[i]) << fp8_format_name(f) << (w8a8 ? " w8a8" : " wo") << " N=" << s.N
                                     << " K=" << s.K << " M=" << M << " at " << i;
        }
}

INSTANTIATE_TEST_SUITE_P(Isas, QuantKernels8, ::testing::ValuesIn(kOptimizedIsas), isa_param_name);

}  // namespace
}  // namespace kq::testing
