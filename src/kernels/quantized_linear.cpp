#include "kernels/quantized_linear.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>

#include "kernels/awq_linear.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {

Tensor checked_bias(const Tensor& bias, int64_t N, const std::string& where) {
  if (!bias.defined()) return {};
  if (bias.ndim() != 1 || bias.dim(0) != N)
    raise<InvalidArgument>("{}: bias must be [{}] (one per output channel), got {}", where, N, shape_str(bias.shape()));
  Tensor b = bias.dtype() == DType::F32 ? bias : bias.to_f32();
  if (reinterpret_cast<uintptr_t>(b.raw()) % alignof(float) != 0) b = b.clone();
  return b;
}

/// `weight` through the loader's validation of every tensor's dtype, shape and values (zero copy). Throws
/// FormatError naming the part ("weight.scales", ...) when inconsistent.
PackedWeight revalidated(const PackedWeight& weight) {
  std::map<std::string, Tensor> parts;
  export_packed(weight, "weight", parts);
  return import_packed([&](const std::string& n) { return parts.count(n) ? parts.at(n) : Tensor(); }, "weight",
                       weight.spec, weight.N, weight.K);
}

/// The op of a validated `weight` and `bias` (checked_bias).
std::unique_ptr<Linear> linear_of(PackedWeight weight, Tensor bias) {
  Tensor b = checked_bias(bias, weight.N, "make_quantized_linear");
  switch (weight.spec.format) {
    case PrecisionFormat::INT8: return detail::make_int8_linear(std::move(weight), std::move(b));
    case PrecisionFormat::FP8_E4M3:
    case PrecisionFormat::FP8_E5M2: return detail::make_fp8_linear(std::move(weight), std::move(b));
    default: return detail::make_int4_linear(std::move(weight), std::move(b));
  }
}

}  // namespace

QuantizedLinear::QuantizedLinear(PackedWeight weight, Tensor bias) : w_(std::move(weight)), bias_(std::move(bias)) {}

size_t QuantizedLinear::weight_bytes() const { return w_.bytes() + (bias_.defined() ? bias_.nbytes() : 0); }

Tensor QuantizedLinear::dequantized_weight() const {
  Tensor w = w_.dequantize();
  if (w_.spec.compute_dtype == DType::BF16) {
    float* p = w.mutable_data<float>();
    for (int64_t i = 0; i < w.numel(); ++i) p[i] = bf16_to_f32(f32_to_bf16(p[i]));
  }
  return w;
}

void QuantizedLinear::export_tensors(const std::string& prefix, std::map<std::string, Tensor>& out) const {
  export_packed(w_, prefix, out);
  if (bias_.defined()) out[prefix + ".bias"] = bias_;
}

std::unique_ptr<Linear> make_quantized_linear(PackedWeight weight, Tensor bias) {
  validate_quant_spec(weight.spec);
  try {
    weight = revalidated(weight);
  } catch (const FormatError& e) {
    raise<InvalidArgument>("make_quantized_linear: inconsistent PackedWeight: {}", e.what());
  }
  return linear_of(std::move(weight), std::move(bias));
}

std::unique_ptr<Linear> quantize_linear(const Tensor& weight_f32, const Tensor& bias, const QuantSpec& spec) {
  PackedWeight w = quantize_weight(weight_f32, spec);
  try {
    w = revalidated(w);
  } catch (const FormatError&) {
    // From finite weights only a scale whose dequantized codes overflow F32 fails here: one from a weight near
    // F32's largest value (tester 22). Name that weight, not the packed tensors.
    const Tensor f = weight_f32.dtype() == DType::F32 ? weight_f32 : weight_f32.to_f32();
    const float* p = f.data<float>();
    int64_t at = 0;
    for (int64_t i = 1; i < f.numel(); ++i)
      if (std::fabs(p[i]) > std::fabs(p[at])) at = i;
    raise<InvalidArgument>("the weight holds {} at [{}, {}] (output channel, input channel), too large for {}: its "
                           "quantization scale times the format's largest code value exceeds the largest F32 "
                           "value {} (the dequantized weight would be infinite)",
                           p[at], at / w.K, at % w.K, spec.name(), std::numeric_limits<float>::max());
  }
  return linear_of(std::move(w), bias);
}

std::unique_ptr<Linear> load_quantized_linear(const std::function<Tensor(const std::string&)>& get,
                                              const std::string& prefix, const QuantSpec& spec, int64_t N,
                                              int64_t K) {
  // An F32 [n] tensor of the folder (undefined when absent), its dtype and shape checked.
  auto f32_vector = [&](const std::string& name, int64_t n) {
    Tensor t = get(name);
    if (t.defined() && (t.dtype() != DType::F32 || t.shape() != Shape{n}))
      raise<FormatError>("tensor '{}': expected F32 [{}], got {} {}", name, n, dtype_name(t.dtype()),
                         shape_str(t.shape()));
    return t;
  };
  // AWQ stores the plain INT4 tensors of W·diag(s), then s.
  PackedWeight w = import_packed(get, prefix, spec.awq ? awq_base_spec(spec) : spec, N, K);
  Tensor bias = f32_vector(prefix + ".bias", N);
  if (!spec.awq) return make_quantized_linear(std::move(w), std::move(bias));
  const std::string sname = prefix + ".awq_scales";
  Tensor s = f32_vector(sname, K);
  if (!s.defined()) raise<FormatError>("tensor '{}' is missing (mode {} needs its input scales)", sname, spec.name());
  try {
    return make_awq_linear(std::move(w), std::move(bias), std::move(s));
  } catch (const InvalidArgument& e) {
    raise<FormatError>("tensor '{}': {}", sname, e.what());
  }
}

const QuantSpec* quantized_linear_spec(const Linear& op) {
  if (const auto* a = dynamic_cast<const AwqLinear*>(&op)) return &a->spec();
  const auto* q = dynamic_cast<const QuantizedLinear*>(&op);
  return q ? &q->spec() : nullptr;
}

}  // namespace kq
