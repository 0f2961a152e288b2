// Export/import of PackedWeight tensors: bit-identical round trip and errors naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/rtn_modes.hpp"
#include "kq/error.hpp"
#include "quant/packed_weight.hpp"
#include "quant/test_weights.hpp"

namespace kq {
namespace {

TensorGetter getter(const std::map<std::string, Tensor>& m) {
  return [&m](const std::string& n) { return m.count(n) ? m.at(n) : Tensor(); };
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(PackedIO, RoundTripEveryMode) {
  for (const std::string& mode : kq::testing::rtn_mode_names()) {
    const QuantSpec spec = parse_quant_mode(mode);
    const PackedWeight p = quantize_weight(testing::gaussian_weight(5, 100, 3), spec);
    std::map<std::string, Tensor> m;
    export_packed(p, "layer.w", m);
    // Copies, so the import cannot alias the original storage.
    std::map<std::string, Tensor> copies;
    for (auto& [k, v] : m) copies[k] = v.clone();
    const PackedWeight q = import_packed(getter(copies), "layer.w", spec, 5, 100);
    std::map<std::string, Tensor> m2;
    export_packed(q, "layer.w", m2);
    ASSERT_EQ(m.size(), m2.size()) << mode;
    for (auto& [k, v] : m) EXPECT_TRUE(same_bytes(v, m2.at(k))) << mode << " " << k;
    EXPECT_TRUE(same_bytes(p.dequantize(), q.dequantize())) << mode;
    EXPECT_EQ(q.bytes(), p.bytes());
  }
}

void expect_format_error(const std::map<std::string, Tensor>& m, const QuantSpec& spec, const std::string& needle) {
  try {
    import_packed(getter(m), "x", spec, 4, 70);
    ADD_FAILURE() << "no error; wanted one naming " << needle;
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(PackedIO, ErrorsNameTheTensor) {
  const QuantSpec asym = parse_quant_mode("int4-g32-asym");
  std::map<std::string, Tensor> m;
  export_packed(quantize_weight(testing::gaussian_weight(4, 70, 1), asym), "x", m);

  auto drop = m;
  drop.erase("x.scales");
  expect_format_error(drop, asym, "'x.scales' is missing");

  auto wrong = m;
  wrong["x.qweight"] = Tensor::zeros(DType::U8, {4, 36});
  expect_format_error(wrong, asym, "'x.qweight'");
  wrong = m;
  wrong["x.scales"] = Tensor::zeros(DType::BF16, {4, 3});
  expect_format_error(wrong, asym, "'x.scales'");

  auto z = m;
  z["x.zeros"] = m.at("x.zeros").clone();
  const uint8_t bad_zero = 16;
  std::memcpy(static_cast<uint8_t*>(z["x.zeros"].raw_mut()) + 2, &bad_zero, 1);
  expect_format_error(z, asym, "'x.zeros'");

  auto nan = m;
  nan["x.scales"] = m.at("x.scales").clone();
  const float bad_scale = NAN;
  std::memcpy(static_cast<float*>(nan["x.scales"].raw_mut()) + 1, &bad_scale, sizeof(float));
  expect_format_error(nan, asym, "'x.scales'");

  // The symmetric mode does not use zero points: their presence means a mode mismatch.
  expect_format_error(m, parse_quant_mode("int4-g32"), "'x.zeros' is present");

  std::map<std::string, Tensor> dq;
  export_packed(quantize_weight(testing::gaussian_weight(4, 70, 1), parse_quant_mode("nf4")), "x", dq);
  dq.erase("x.dq_mean");
  expect_format_error(dq, parse_quant_mode("nf4"), "'x.dq_mean'");

  EXPECT_THROW(import_packed(getter(m), "x", asym, 0, 70), InvalidArgument);
}


/// A copy of m with element i of tensor `name` (F32) set to v.
std::map<std::string, Tensor> with_f32(const std::map<std::string, Tensor>& m, const std::string& name, int64_t i,
                                       float v) {
  auto c = m;
  c[name] = m.at(name).clone();
  std::memcpy(static_cast<float*>(c[name].raw_mut()) + i, &v, sizeof(float));
  return c;
}

std::map<std::string, Tensor> exported(const std::string& mode) {
  std::map<std::string, Tensor> m;
  export_packed(quantize_weight(testing::gaussian_weight(4, 70, 1), parse_quant_mode(mode)), "x", m);
  return m;
}

// Fresh-user finding: FP8 codes that decode to NaN (E4M3 has one NaN pattern
// per sign, S.1111.111) loaded silently and eval failed later with
// "non-finite logits". The quantizer saturates, so such codes mean corruption.
TEST(PackedIO, RejectsNonFiniteFp8Codes) {
  for (const auto& [mode, code] : std::vector<std::pair<std::string, uint8_t>>{
           {"fp8", 0x7F}, {"fp8", 0xFF}, {"fp8-e5m2", 0x7C}, {"fp8-e5m2", 0xFE}}) {
    auto m = exported(mode);
    m["x.qweight"] = m.at("x.qweight").clone();
    static_cast<uint8_t*>(m["x.qweight"].raw_mut())[75] = code;  // row 1, column 5
    const std::string want = fmt::format("tensor 'x.qweight': FP8 {} code 0x{:02X} ({}) at index 75 (row 1, column 5)",
                                         mode == "fp8" ? "E4M3" : "E5M2", code, code == 0x7C ? "Inf" : "NaN");
    expect_format_error(m, parse_quant_mode(mode), want);
  }
  // Every finite code is accepted: all 254 finite E4M3 codes in one tensor.
  auto m = exported("fp8");
  m["x.qweight"] = m.at("x.qweight").clone();
  uint8_t* c = static_cast<uint8_t*>(m["x.qweight"].raw_mut());
  int64_t i = 0;
  for (int code = 0; code < 256; ++code)
    if ((code & 0x7F) != 0x7F) c[i++] = uint8_t(code);
  EXPECT_NO_THROW(import_packed(getter(m), "x", parse_quant_mode("fp8"), 4, 70));
}

// Fresh-user finding: negative and zero scales were accepted (perplexity drifted).
TEST(PackedIO, RejectsNegativeScalesInEveryModeAndZeroScalesWhereNeverWritten) {
  for (const std::string& mode : kq::testing::rtn_mode_names()) {
    const QuantSpec spec = parse_quant_mode(mode);
    const auto m = exported(mode);
    const bool dq = m.count("x.dq_scales") > 0;
    const std::string scales = dq ? "x.dq_scales" : "x.scales";
    const int64_t i = m.at(scales).numel() - 1;
    expect_format_error(with_f32(m, scales, i, -0.25f), spec,
                        fmt::format("tensor '{}': negative scale -0.25 at index {}", scales, i));
    if (dq) {
      expect_format_error(with_f32(m, "x.dq_mean", 0, -1e-3f), spec, "tensor 'x.dq_mean': negative scale");
      // A zero group scale is what double_quantize writes for a group of equal scales.
      EXPECT_NO_THROW(import_packed(getter(with_f32(m, scales, i, 0.0f)), "x", spec, 4, 70)) << mode;
    } else if (formats::format_traits(weight_format_of(spec)).code_bits == 8) {
      expect_format_error(with_f32(m, scales, i, 0.0f), spec,
                          fmt::format("tensor 'x.scales': zero scale at index {}", i));
      expect_format_error(with_f32(m, scales, i, -0.0f), spec, "zero scale");
    } else {
      EXPECT_NO_THROW(import_packed(getter(with_f32(m, scales, i, 0.0f)), "x", spec, 4, 70)) << mode;
    }
  }
}

/// The largest |value| of a code of `f` at scale 1, from the formats' definitions: INT8 codes −128..127, OCP FP8
/// E4M3 max 448 and E5M2 max 57344, NF4 (QLoRA) values in [−1, 1], FP4 (E2M1) max 6, bitsandbytes' FP4 (its
/// table over its absmax 12) in [−1, 1], INT4 symmetric (code − 8) in −8..7, asymmetric (code − zero) in −15..15.
double published_code_max(formats::WeightFormat f) {
  switch (f) {
    case formats::WeightFormat::INT8: return 128.0;
    case formats::WeightFormat::FP8_E4M3: return 448.0;
    case formats::WeightFormat::FP8_E5M2: return 57344.0;
    case formats::WeightFormat::NF4: return 1.0;
    case formats::WeightFormat::FP4: return 6.0;
    case formats::WeightFormat::INT4_SYM: return 8.0;
    case formats::WeightFormat::INT4_ASYM: return 15.0;
    case formats::WeightFormat::FP4_BNB: return 1.0;
  }
  return 0.0;
}

bool all_finite(const Tensor& t) {
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

// Tester round 21, finding 2: an INT8 folder whose scales were 1e38 (x code 127 = 1.3e40, not an F32) loaded
// and evaluated to a meaningless perplexity. A scale (or a double-quantized block scale) whose product with the
// format's largest |code value| overflows F32 is refused naming the tensor and index; one just below loads, and
// every weight it dequantizes to is finite.
TEST(PackedIO, RejectsScalesThatOverflowWhenApplied) {
  expect_format_error(with_f32(exported("int8"), "x.scales", 2, 1e38f), parse_quant_mode("int8"),
                      "tensor 'x.scales': scale 1e+38 at index 2 overflows F32 when applied");
  const double fmax = double(std::numeric_limits<float>::max());
  int checked = 0;
  for (const std::string& mode : kq::testing::rtn_mode_names()) {
    const QuantSpec spec = parse_quant_mode(mode);
    const double bound = fmax / published_code_max(weight_format_of(spec));
    const auto m = exported(mode);
    const bool dq = m.count("x.dq_mean") > 0;
    // Double quantization: the mean moves every decoded block scale (the group scales add a few ulps at most).
    const std::string name = dq ? "x.dq_mean" : "x.scales";
    const int64_t i = dq ? 0 : m.at(name).numel() - 1;
    if (bound * 1.01 < fmax)  // NF4 (largest |value| 1): every finite scale is safe
      expect_format_error(with_f32(m, name, i, float(bound * 1.01)), spec,
                          dq ? "tensor 'x.dq_codes': decoded block scale" : "tensor 'x.scales': scale");
    const auto ok = with_f32(m, name, i, float(bound * 0.99));
    PackedWeight p;
    ASSERT_NO_THROW(p = import_packed(getter(ok), "x", spec, 4, 70)) << mode;
    EXPECT_TRUE(all_finite(p.dequantize())) << mode;
    ++checked;
  }
  EXPECT_GE(checked, 10);
  // A double-quantized block scale that decodes to Inf (127 x 3e38 + mean) is named too.
  const auto nf4 = with_f32(exported("nf4"), "x.dq_scales", 0, 3e38f);
  expect_format_error(nf4, parse_quant_mode("nf4"), "tensor 'x.dq_codes': the block scale at index");
}

// The rule above follows what the quantizer writes for an all-zero row:
// scale 1 for INT8/FP8 (so 0 never appears), scale 0 for a 4-bit block (so 0 must load).
TEST(PackedIO, AllZeroRowsRoundTripUnderTheScaleRule) {
  Tensor w = testing::gaussian_weight(4, 70, 2).clone();
  float* p = w.mutable_data<float>();
  for (int64_t k = 0; k < 70; ++k) p[2 * 70 + k] = 0.0f;
  for (const std::string& mode : kq::testing::rtn_mode_names()) {
    const QuantSpec spec = parse_quant_mode(mode);
    const PackedWeight q = quantize_weight(w, spec);
    const int bits = formats::format_traits(weight_format_of(spec)).code_bits;
    if (bits == 8 && spec.weight_scales != ScaleGranularity::PerTensor) {
      EXPECT_EQ(q.scales.data<float>()[2], 1.0f) << mode;
    }
    if (bits == 4 && q.scales.defined()) {
      EXPECT_EQ(q.scales.data<float>()[2 * q.blocks_per_row], 0.0f) << mode;
    }
    std::map<std::string, Tensor> m;
    export_packed(q, "x", m);
    const PackedWeight r = import_packed(getter(m), "x", spec, 4, 70);
    EXPECT_TRUE(same_bytes(q.dequantize(), r.dequantize())) << mode;
  }
}

}  // namespace
}  // namespace kq
