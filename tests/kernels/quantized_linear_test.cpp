// Quantized Linear ops: forward() of every mode against a double-precision
// reference computed from dequantized_weight() (and, for W8A8, from the
// per-token quantized activations), on shapes that are not multiples of the
// block/group size; thread- and batch-invariance; export/load round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "common/rtn_modes.hpp"
#include "common/test_util.hpp"
#include "common/tolerances.hpp"
#include "formats/fp8.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {

template <class T = float>
std::vector<T> values(const Tensor& t) {
  std::vector<T> v(static_cast<size_t>(t.numel()));
  if (t.defined() && t.numel() > 0) std::memcpy(v.data(), t.raw(), v.size() * sizeof(T));
  return v;
}

Tensor tensor_from(const std::vector<float>& v, Shape shape) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  std::memcpy(t.raw_mut(), v.data(), v.size() * sizeof(float));
  return t;
}

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

// Activations [M, K] with an outlier channel and, when M >= 3, an all-zero token (row 1).
std::vector<float> activations(int64_t M, int64_t K, uint32_t seed) {
  std::vector<float> x = gaussian(size_t(M * K), seed, 1.0f);
  for (int64_t m = 0; m < M; ++m) x[size_t(m * K + (K > 3 ? 3 : 0))] *= 20.0f;
  if (M >= 3)
    for (int64_t k = 0; k < K; ++k) x[size_t(K + k)] = 0.0f;
  return x;
}

// The activations the op multiplies with: bf16-rounded, or per-token quantized
// and dequantized for W8A8 (INT8: absmax/127, round half even; FP8: absmax/max).
std::vector<double> effective_activations(const QuantSpec& s, const std::vector<float>& x, int64_t M, int64_t K) {
  std::vector<double> e(x.size());
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x.data() + m * K;
    double* out = e.data() + m * K;
    if (s.compute_dtype == DType::BF16) {
      for (int64_t k = 0; k < K; ++k) out[k] = bf16_to_f32(f32_to_bf16(row[k]));
    } else if (!s.quantize_activations) {
      for (int64_t k = 0; k < K; ++k) out[k] = row[k];
    } else if (s.format == PrecisionFormat::INT8) {
      float amax = 0;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
      const float sc = amax > 0 ? amax / 127.0f : 1.0f;
      for (int64_t k = 0; k < K; ++k)
        out[k] = double(std::clamp(std::nearbyint(row[k] / sc), -127.0f, 127.0f)) * double(sc);
    } else {
      const FP8Format f = s.format == PrecisionFormat::FP8_E4M3 ? FP8Format::E4M3 : FP8Format::E5M2;
      float amax = 0;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
      const float sc = amax > 0 ? amax / fp8_max(f) : 1.0f;
      for (int64_t k = 0; k < K; ++k)
        out[k] = double(formats::fp8_decode(formats::fp8_encode(row[k] / sc, f, s.fp8_saturate), f)) * double(sc);
    }
  }
  return e;
}

struct Case {
  int64_t N, K;
  bool bias;
};
constexpr Case kCases[] = {{7, 688, true}, {5, 100, false}, {3, 33, true}, {9, 1, true}, {1, 256, false}, {13, 64, true}};

class QuantizedLinearAllModes : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedLinearAllModes, ForwardMatchesDoubleReference) {
  const QuantSpec spec = parse_quant_mode(GetParam());
  for (const Case& c : kCases) {
    const std::vector<float> wv = gaussian(size_t(c.N * c.K), uint32_t(c.N * 7919 + c.K), 0.05f);
    const std::vector<float> bv = gaussian(size_t(c.N), 99, 0.1f);
    const Tensor bias = c.bias ? tensor_from(bv, {c.N}) : Tensor();
    const std::unique_ptr<Linear> op = quantize_linear(tensor_from(wv, {c.N, c.K}), bias, spec);
    ASSERT_EQ(op->in_features(), c.K);
    ASSERT_EQ(op->out_features(), c.N);
    EXPECT_EQ(op->format(), spec.name());
    ASSERT_NE(quantized_linear_spec(*op), nullptr);
    EXPECT_EQ(*quantized_linear_spec(*op), spec);
    EXPECT_EQ(op->weight_bytes(), quantized_weight_bytes(spec, c.N, c.K) + (c.bias ? size_t(4 * c.N) : 0));

    const Tensor W = op->dequantized_weight();
    ASSERT_EQ(W.shape(), (Shape{c.N, c.K}));
    const std::vector<float> Wv = values(W);
    if (spec.compute_dtype == DType::BF16) {
      for (float v : Wv) ASSERT_EQ(v, bf16_to_f32(f32_to_bf16(v)));
    }
    const std::vector<float> ob = values(op->bias());
    static_assert(cpu::avx2::kQ4SgemmMinM == cpu::avx2::kFp8SgemmMinM);
    constexpr int64_t kS = cpu::avx2::kQ4SgemmMinM;  // from here the FP8 / 4-bit prefill runs through sgemm
    for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), int64_t(11), kS - 1, kS, kS + 1}) {
      const std::vector<float> x = activations(M, c.K, uint32_t(M * 31 + c.K));
      std::vector<float> y(size_t(M * c.N), NAN);
      op->forward(x.data(), M, y.data(), ExecContext{Device::CPU, 2});
      const std::vector<double> xe = effective_activations(spec, x, M, c.K);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < c.N; ++n) {
          double ref = c.bias ? double(ob[size_t(n)]) : 0.0, mag = std::fabs(ref);
          for (int64_t k = 0; k < c.K; ++k) {
            const double t = xe[size_t(m * c.K + k)] * double(Wv[size_t(n * c.K + k)]);
            ref += t;
            mag += std::fabs(t);
          }
          ASSERT_NEAR(y[size_t(m * c.N + n)], ref, testing::forward_tolerance(c.K, mag))
              << GetParam() << " N=" << c.N << " K=" << c.K << " M=" << M << " [" << m << ", " << n << "]";
        }
    }
  }
}

TEST_P(QuantizedLinearAllModes, ThreadAndBatchInvariant) {
  const QuantSpec spec = parse_quant_mode(GetParam());
  // Below the FP8 / 4-bit kernels' sgemm threshold, whose order depends on M (quant_kernels_avx2.hpp).
  constexpr int64_t N = 13, K = 100, M = 11;
  static_assert(M < cpu::avx2::kQ4SgemmMinM && M < cpu::avx2::kFp8SgemmMinM);
  const std::unique_ptr<Linear> op =
      quantize_linear(tensor_from(gaussian(size_t(N * K), 4, 0.05f), {N, K}), Tensor(), spec);
  const std::vector<float> x = activations(M, K, 8);
  std::vector<float> y1(static_cast<size_t>(M * N)), y3(static_cast<size_t>(M * N)), row(static_cast<size_t>(N));
  op->forward(x.data(), M, y1.data(), ExecContext{Device::CPU, 1});
  op->forward(x.data(), M, y3.data(), ExecContext{Device::CPU, 3});
  EXPECT_EQ(y1, y3);
  for (int64_t m = 0; m < M; ++m) {  // decode (M = 1) gives the same bits as prefill
    op->forward(x.data() + m * K, 1, row.data(), ExecContext{Device::CPU, 2});
    for (int64_t n = 0; n < N; ++n) ASSERT_EQ(row[size_t(n)], y1[size_t(m * N + n)]) << m << ", " << n;
  }
}

TEST_P(QuantizedLinearAllModes, ExportLoadRoundTripIsBitIdentical) {
  const QuantSpec spec = parse_quant_mode(GetParam());
  const int64_t N = 5, K = 688, M = 4;
  const std::unique_ptr<Linear> op = quantize_linear(tensor_from(gaussian(size_t(N * K), 6, 0.05f), {N, K}),
                                                     tensor_from(gaussian(size_t(N), 1, 0.1f), {N}), spec);
  std::map<std::string, Tensor> out;
  op->export_tensors("model.layers.0.mlp.down_proj", out);
  std::map<std::string, Tensor> copy;
  for (auto& [k, v] : out) copy[k] = v.clone();
  const std::unique_ptr<Linear> back = load_quantized_linear(
      [&](const std::string& n) { return copy.count(n) ? copy.at(n) : Tensor(); }, "model.layers.0.mlp.down_proj",
      spec, N, K);
  EXPECT_EQ(back->weight_bytes(), op->weight_bytes());
  EXPECT_EQ(back->format(), op->format());
  EXPECT_EQ(values(back->dequantized_weight()), values(op->dequantized_weight()));
  EXPECT_EQ(values(back->bias()), values(op->bias()));
  std::map<std::string, Tensor> again;
  back->export_tensors("model.layers.0.mlp.down_proj", again);
  ASSERT_EQ(again.size(), out.size());
  for (auto& [k, v] : out) {
    ASSERT_TRUE(again.count(k)) << k;
    EXPECT_EQ(again.at(k).dtype(), v.dtype()) << k;
    EXPECT_EQ(again.at(k).shape(), v.shape()) << k;
    EXPECT_EQ(std::memcmp(again.at(k).raw(), v.raw(), v.nbytes()), 0) << k;
  }
  const std::vector<float> x = activations(M, K, 2);
  std::vector<float> y0(static_cast<size_t>(M * N)), y1(static_cast<size_t>(M * N));
  op->forward(x.data(), M, y0.data(), ExecContext{});
  back->forward(x.data(), M, y1.data(), ExecContext{});
  EXPECT_EQ(y0, y1);
}

std::string mode_param_name(const ::testing::TestParamInfo<std::string>& p) {
  std::string n = p.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Modes, QuantizedLinearAllModes, ::testing::ValuesIn(kq::testing::rtn_mode_names()),
                         mode_param_name);

TEST(QuantizedLinear, ReconstructionErrorPerFormat) {
  const int64_t N = 64, K = 688;
  const std::vector<float> wv = gaussian(size_t(N * K), 11, 0.05f);
  for (const std::string& mode : kq::testing::rtn_mode_names()) {
    const QuantSpec spec = parse_quant_mode(mode);
    const std::vector<float> d = values(quantize_linear(tensor_from(wv, {N, K}), Tensor(), spec)->dequantized_weight());
    double num = 0, den = 0;
    for (size_t i = 0; i < wv.size(); ++i) {
      num += (double(wv[i]) - d[i]) * (double(wv[i]) - d[i]);
      den += double(wv[i]) * wv[i];
    }
    EXPECT_LE(std::sqrt(num / den), testing::max_rel_rms_error(spec) * (spec.compute_dtype == DType::BF16 ? 1.05 : 1.0))
        << mode;
  }
}

TEST(QuantizedLinear, LoadErrorsNameTheTensor) {
  const QuantSpec spec = parse_quant_mode("nf4");
  std::map<std::string, Tensor> m;
  quantize_linear(tensor_from(gaussian(200, 1, 0.05f), {2, 100}), tensor_from({0.5f, 1.0f}, {2}), spec)
      ->export_tensors("h.0.attn", m);
  auto get = [&](const std::map<std::string, Tensor>& t) {
    return [&t](const std::string& n) { return t.count(n) ? t.at(n) : Tensor(); };
  };
  auto missing = m;
  missing.erase("h.0.attn.qweight");
  try {
    load_quantized_linear(get(missing), "h.0.attn", spec, 2, 100);
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'h.0.attn.qweight'"), std::string::npos) << e.what();
  }
  auto bad_bias = m;
  bad_bias["h.0.attn.bias"] = Tensor::zeros(DType::BF16, {2});
  try {
    load_quantized_linear(get(bad_bias), "h.0.attn", spec, 2, 100);
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'h.0.attn.bias'"), std::string::npos) << e.what();
  }
  // Wrong K for the stored codes.
  EXPECT_THROW(load_quantized_linear(get(m), "h.0.attn", spec, 2, 120), FormatError);
  // A different mode than the one written.
  EXPECT_THROW(load_quantized_linear(get(m), "h.0.attn", parse_quant_mode("nf4-nodq"), 2, 100), FormatError);
}

TEST(QuantizedLinear, BadArguments) {
  const QuantSpec spec = parse_quant_mode("int8");
  const Tensor w = tensor_from(gaussian(12, 1, 0.05f), {3, 4});
  EXPECT_THROW(quantize_linear(w, tensor_from({1, 2}, {2}), spec), InvalidArgument);
  EXPECT_THROW(quantize_linear(tensor_from(gaussian(12, 1, 0.05f), {12}), Tensor(), spec), InvalidArgument);
  PackedWeight p = quantize_weight(w, spec);
  p.scales = Tensor::zeros(DType::F32, {2});
  EXPECT_THROW(make_quantized_linear(p, Tensor()), InvalidArgument);
}

// A finite weight so large that its scale times the format's largest code value overflows F32: named by its
// value, index and the mode, not by the packed tensors (tester 22). INT4 symmetric: scale 2·|w|/15 (with
// rounding), times code −8: over F32's largest value from |w| ≈ 3.19e38; INT8 (scale |w|/127, times −128)
// quantizes 3.3e38.
TEST(QuantizedLinear, AWeightTooLargeForTheModeIsNamed) {
  std::vector<float> v = gaussian(4 * 256, 3, 0.05f);
  v[2 * 256 + 5] = -3.3e38f;
  const Tensor w = tensor_from(v, {4, 256});
  const std::string m =
      testing::error_of<InvalidArgument>([&] { quantize_linear(w, Tensor(), parse_quant_mode("int4-g128")); });
  EXPECT_TRUE(testing::has(m, "holds -3.3e+38 at [2, 5] (output channel, input channel), too large for int4-g128") &&
              !testing::has(m, "PackedWeight") && !testing::has(m, "make_quantized_linear") &&
              !testing::has(m, "weight.scales"))
      << m;
  EXPECT_EQ(quantize_linear(w, Tensor(), parse_quant_mode("int8"))->out_features(), 4);
}

TEST(QuantizedLinear, BaseLinearExportIsUnsupported) {
  struct Plain final : Linear {
    int64_t in_features() const override { return 1; }
    int64_t out_features() const override { return 1; }
    void forward(const float*, int64_t, float*, const ExecContext&) const override {}
    size_t weight_bytes() const override { return 0; }
    std::string format() const override { return "plain"; }
    Tensor dequantized_weight() const override { return {}; }
    Tensor bias() const override { return {}; }
  };
  std::map<std::string, Tensor> out;
  EXPECT_THROW(Plain().export_tensors("p", out), Unsupported);
  EXPECT_EQ(quantized_linear_spec(Plain()), nullptr);
}

}  // namespace
}  // namespace kq
