// AWQ op construction (make_awq_linear, and load_quantized_linear for AWQ
// modes): every input scale s must be finite and > 0 and so must 1/s, which
// the op multiplies x by. A subnormal scale such as 1e-45 passed the old
// "finite and > 0" check and gave inf, then non-finite logits, naming nothing.
// Messages name the channel (and, from the loader, the tensor), never a C++
// function.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kernels/awq_linear.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "quant/packed_weight.hpp"

namespace kq {
namespace {

constexpr int64_t kN = 8, kK = 160;  // K not a multiple of the group (64)

Tensor random_weight(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.05f);
  Tensor t = Tensor::empty(DType::F32, {kN, kK});
  for (int64_t i = 0; i < kN * kK; ++i) t.mutable_data<float>()[i] = g(rng);
  return t;
}

Tensor ones_scales() {
  Tensor s = Tensor::empty(DType::F32, {kK});
  for (int64_t k = 0; k < kK; ++k) s.mutable_data<float>()[k] = 1.0f;
  return s;
}

bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

/// The values no AWQ scale may hold (1e-45 and the smallest normal float's
/// tenth are finite and > 0, but 1/s overflows to inf).
std::vector<float> bad_scales() {
  return {1e-45f, std::numeric_limits<float>::min() / 10.0f, 0.0f, -0.0f, -1.0f,
          std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
          -std::numeric_limits<float>::infinity()};
}

TEST(AwqLinearScales, UnusableScalesAreRefusedNamingTheChannel) {
  const QuantSpec spec = parse_quant_mode("awq-g64");
  const QuantSpec base = awq_base_spec(spec);
  const Tensor w = random_weight(1);
  // Good scales, including large and small normal ones, are accepted.
  Tensor ok = ones_scales();
  ok.mutable_data<float>()[0] = 1e-30f;
  ok.mutable_data<float>()[1] = 1e30f;
  EXPECT_NO_THROW(make_awq_linear(quantize_weight(w, base), Tensor(), ok));
  for (const float v : bad_scales()) {
    SCOPED_TRACE(v);
    Tensor s = ones_scales();
    s.mutable_data<float>()[37] = v;
    try {
      make_awq_linear(quantize_weight(w, base), Tensor(), s);
      ADD_FAILURE() << "scale " << v << " accepted";
    } catch (const InvalidArgument& e) {
      const std::string m = e.what();
      EXPECT_TRUE(has(m, "input channel 37")) << m;
      EXPECT_FALSE(has(m, "make_awq_linear")) << m;  // a user reads it: no C++ function names
    }
  }
  // Other construction errors do not name the function either.
  try {
    make_awq_linear(quantize_weight(w, base), Tensor(), Tensor::empty(DType::F32, {kK + 1}));
    ADD_FAILURE() << "scales of the wrong shape accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_FALSE(has(e.what(), "make_awq_linear")) << e.what();
  }
}

TEST(AwqLinearScales, LoaderNamesTheScalesTensor) {
  const QuantSpec spec = parse_quant_mode("awq-g64");
  auto op = make_awq_linear(quantize_weight(random_weight(2), awq_base_spec(spec)), Tensor(), ones_scales());
  std::map<std::string, Tensor> parts;
  op->export_tensors("blk.proj", parts);
  auto get = [&](const std::string& n) { return parts.count(n) ? parts.at(n) : Tensor(); };
  ASSERT_NO_THROW(load_quantized_linear(get, "blk.proj", spec, kN, kK));
  for (const float v : bad_scales()) {
    SCOPED_TRACE(v);
    Tensor s = ones_scales();
    s.mutable_data<float>()[5] = v;
    parts["blk.proj.awq_scales"] = s;
    try {
      load_quantized_linear(get, "blk.proj", spec, kN, kK);
      ADD_FAILURE() << "scale " << v << " loaded";
    } catch (const FormatError& e) {
      const std::string m = e.what();
      EXPECT_TRUE(has(m, "'blk.proj.awq_scales'")) << m;
      EXPECT_TRUE(has(m, "input channel 5")) << m;
      EXPECT_FALSE(has(m, "make_awq_linear")) << m;
    }
  }
}

}  // namespace
}  // namespace kq
