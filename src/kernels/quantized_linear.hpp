#pragma once
// Quantized Linear ops (INT8, FP8, NF4, FP4, FP4_BNB, INT4): the factory that quantizes
// an F32 weight, the loader that rebuilds an op from a quantized model
// folder's tensors, and the base class the per-format ops share.
// Kernels live in src/kernels/cpu/linear_{int8,fp8,int4}*.cpp.
#include <functional>
#include <memory>
#include <string>

#include "kernels/linear.hpp"
#include "kq/quantize.hpp"
#include "quant/packed_weight.hpp"

namespace kq {

/// Quantizes weight_f32 (F32, BF16 or F16, [N = out, K = in], nn.Linear layout)
/// with round-to-nearest into the op for `spec`. bias: F32/BF16/F16 [N] or an
/// undefined Tensor; it is kept in F32 and counted in weight_bytes().
/// Throws InvalidArgument for an invalid spec, a bad weight/bias shape or
/// dtype, or non-finite weights.
std::unique_ptr<Linear> quantize_linear(const Tensor& weight_f32, const Tensor& bias, const QuantSpec& spec);

/// The op for an already quantized weight (e.g. from AWQ) plus bias (F32 [N] or undefined).
/// Throws InvalidArgument when the bias does not match.
std::unique_ptr<Linear> make_quantized_linear(PackedWeight weight, Tensor bias);

/// Rebuilds an op, bit-identically, from the tensors its export_tensors()
/// wrote under `prefix` (prefix.qweight, .scales, .zeros, .dq_codes,
/// .dq_scales, .dq_mean, optional .bias F32 [N]; AWQ modes also .awq_scales
/// F32 [K], giving an AwqLinear). `get(name)` returns the
/// tensor or an undefined Tensor when absent (wrap TensorStore as
/// `[&](auto& n) { return store.contains(n) ? store.get(n) : Tensor(); }`).
/// Throws FormatError naming the tensor that is missing or has the wrong
/// dtype/shape/values, InvalidArgument for an invalid spec or N, K < 1.
std::unique_ptr<Linear> load_quantized_linear(const std::function<Tensor(const std::string&)>& get,
                                              const std::string& prefix, const QuantSpec& spec, int64_t N, int64_t K);

/// The spec of a quantized op made by the functions above (an AwqLinear's AWQ
/// spec included), nullptr for any other Linear.
const QuantSpec* quantized_linear_spec(const Linear& op);

/// Shared state and accessors of the quantized ops; forward() is per format.
class QuantizedLinear : public Linear {
 public:
  /// bias: F32 [N] or undefined (checked by make_quantized_linear).
  QuantizedLinear(PackedWeight weight, Tensor bias);
  int64_t in_features() const override { return w_.K; }
  int64_t out_features() const override { return w_.N; }
  /// Codes + scales + zero points + double-quant data + bias, as held.
  size_t weight_bytes() const override;
  /// The canonical mode name, QuantSpec::name() (parse_quant_mode accepts it).
  std::string format() const override { return w_.spec.name(); }
  /// F32 [N, K]: the stored weight dequantized, rounded to bf16 when the
  /// compute dtype is BF16 (the values the multiply actually uses).
  Tensor dequantized_weight() const override;
  Tensor bias() const override { return bias_.defined() ? bias_.clone() : Tensor(); }  // a copy
  void export_tensors(const std::string& prefix, std::map<std::string, Tensor>& out) const override;

  const PackedWeight& packed() const { return w_; }
  const QuantSpec& spec() const { return w_.spec; }

 protected:
  const float* bias_data() const { return bias_.defined() ? bias_.data<float>() : nullptr; }

  PackedWeight w_;
  Tensor bias_;  ///< F32 [N] or undefined
};

namespace detail {
/// Per-format constructors (src/kernels/cpu/linear_int8.cpp, linear_fp8.cpp, linear_int4.cpp).
std::unique_ptr<Linear> make_int8_linear(PackedWeight weight, Tensor bias);
std::unique_ptr<Linear> make_fp8_linear(PackedWeight weight, Tensor bias);
std::unique_ptr<Linear> make_int4_linear(PackedWeight weight, Tensor bias);  ///< NF4, FP4, FP4_BNB, INT4 sym/asym
}  // namespace detail

}  // namespace kq
