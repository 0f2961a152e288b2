// Export/import of PackedWeight tensors: bit-identical round trip and errors naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

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
  for (const std::string& mode : valid_quant_mode_names()) {
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

}  // namespace
}  // namespace kq
