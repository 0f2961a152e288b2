#include "kernels/awq_linear.hpp"

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/quantized_linear.hpp"
#include "kq/context.hpp"
#include "kq/error.hpp"

#include <fmt/format.h>

namespace kq {

AwqLinear::AwqLinear(std::unique_ptr<Linear> inner, Tensor scales, QuantSpec spec)
    : inner_(std::move(inner)), scales_(std::move(scales)), spec_(spec) {
  const int64_t K = scales_.numel();
  inv_scales_ = Tensor::empty(DType::F32, {K});
  const float* s = scales_.data<float>();
  float* inv = inv_scales_.mutable_data<float>();
  for (int64_t k = 0; k < K; ++k) inv[k] = 1.0f / s[k];
}

void AwqLinear::forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const {
  const int64_t K = in_features();
  thread_local std::vector<float> scratch;
  scratch.resize(size_t(M * K));
  const float* inv = inv_scales_.data<float>();
  float* xs = scratch.data();
  const int threads = resolve_threads(ctx.threads);  // the caller's count, as the inner op's kernels use
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && M * K > (1 << 16))
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xs[m * K + k] = x[m * K + k] * inv[k];
  inner_->forward(xs, M, y, ctx);
}

size_t AwqLinear::weight_bytes() const { return inner_->weight_bytes() + inv_scales_.nbytes(); }

Tensor AwqLinear::dequantized_weight() const {
  Tensor w = inner_->dequantized_weight();
  const int64_t N = w.dim(0), K = w.dim(1);
  const float* inv = inv_scales_.data<float>();
  float* p = w.mutable_data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) p[n * K + k] *= inv[k];
  return w;
}

void AwqLinear::export_tensors(const std::string& prefix, std::map<std::string, Tensor>& out) const {
  inner_->export_tensors(prefix, out);
  out[prefix + ".awq_scales"] = scales_;
}

QuantSpec awq_base_spec(const QuantSpec& awq_spec) {
  QuantSpec s = awq_spec;
  s.awq = false;
  return s;
}

std::unique_ptr<Linear> make_awq_linear(PackedWeight weight, Tensor bias, Tensor scales) {
  // Messages name what is wrong, not this function: the loader prefixes them
  // with the tensor (and file) they came from.
  if (weight.spec.format != PrecisionFormat::INT4 || weight.spec.awq)
    raise<InvalidArgument>("the AWQ scaled weight must be plain INT4 (int4-gN), got {}", weight.spec.name());
  const int64_t K = weight.K;
  if (!scales.defined() || scales.dtype() != DType::F32 || scales.shape() != Shape{K})
    raise<InvalidArgument>("AWQ scales must be F32 [{}] (one per input channel), got {}", K,
                           scales.defined() ? fmt::format("{} {}", dtype_name(scales.dtype()), shape_str(scales.shape()))
                                            : std::string("none"));
  if (reinterpret_cast<uintptr_t>(scales.raw()) % alignof(float) != 0) scales = scales.clone();
  const float* s = scales.data<float>();
  // The op divides x by s: s must be finite and > 0, and so must 1/s (a
  // subnormal s such as 1e-45 passes the first test but 1/s is inf).
  for (int64_t k = 0; k < K; ++k)
    if (!(std::isfinite(s[k]) && s[k] > 0.0f && std::isfinite(1.0f / s[k])))
      raise<InvalidArgument>(
          "AWQ scale {} at input channel {} is unusable: every scale must be finite and > 0 with a finite "
          "reciprocal 1/s (corrupt file?)",
          s[k], k);
  QuantSpec spec = weight.spec;
  spec.awq = true;
  return std::make_unique<AwqLinear>(make_quantized_linear(std::move(weight), std::move(bias)), std::move(scales),
                                     spec);
}

}  // namespace kq
