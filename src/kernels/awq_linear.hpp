#pragma once
// AWQ (activation-aware weight quantization, Lin et al., MLSys 2024) as an op:
// an INT4 group-quantized weight of W·diag(s) and the per-input-channel scales
// s, so y = Q(W·diag(s)) · (x / s) ≈ W·x. The scales are found on calibration
// activations (src/api/awq.cpp); this file only runs and stores the result.
//
// The paper folds 1/s into the operator before the layer (a norm or another
// linear); here the op divides x by s itself (M·K multiplies, negligible next
// to the GEMM), which works for every layer, whatever precedes it, and lets
// each layer have its own s.
#include <memory>
#include <string>

#include "kernels/linear.hpp"
#include "kq/quantize.hpp"
#include "quant/packed_weight.hpp"

namespace kq {

/// y[M, N] = inner(x[M, K] · diag(1 / s)), inner an INT4 op (plain spec, awq = false)
/// holding Q(W · diag(s)); s F32 [K], finite and > 0.
class AwqLinear : public Linear {
 public:
  /// inner: a quantized INT4 op over K inputs; scales: F32 [K], finite, > 0
  /// (checked by make_awq_linear). spec: inner's spec with awq = true.
  AwqLinear(std::unique_ptr<Linear> inner, Tensor scales, QuantSpec spec);
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  /// x / s into a per-thread scratch row block, then the INT4 op. Never throws
  /// (beyond std::bad_alloc for the scratch).
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override;
  /// The INT4 op's bytes plus the F32 [K] of 1/s held for the forward pass.
  size_t weight_bytes() const override;
  /// QuantSpec::name() of the AWQ spec, e.g. "awq-g128".
  std::string format() const override { return spec_.name(); }
  /// F32 [N, K]: Q(W · diag(s)) dequantized, times diag(1 / s): the weight the op applies.
  Tensor dequantized_weight() const override;
  Tensor bias() const override { return inner_->bias(); }
  /// The INT4 op's tensors plus prefix.awq_scales (s, F32 [K]).
  void export_tensors(const std::string& prefix, std::map<std::string, Tensor>& out) const override;

  const QuantSpec& spec() const { return spec_; }
  const Linear& inner() const { return *inner_; }
  /// s, F32 [K].
  const Tensor& scales() const { return scales_; }

 private:
  std::unique_ptr<Linear> inner_;
  Tensor scales_;      ///< s, F32 [K]
  Tensor inv_scales_;  ///< 1 / s, F32 [K]
  QuantSpec spec_;
};

/// The AWQ op from the packed INT4 weight of W · diag(s) (weight.spec: INT4,
/// awq = false), its bias (F32 [N] or undefined) and s (F32 [K]).
/// Throws InvalidArgument for a non-INT4 weight, or scales that are not F32
/// [K] or hold a value that is not finite and > 0 or whose reciprocal is not
/// finite (e.g. 1e-45; naming its index). Messages do not name this function.
std::unique_ptr<Linear> make_awq_linear(PackedWeight weight, Tensor bias, Tensor scales);

/// The plain INT4 spec an AWQ spec stores its scaled weight in (awq = false).
QuantSpec awq_base_spec(const QuantSpec& awq_spec);

}  // namespace kq
