// The INT8 Linear: W8A8 (dynamic per-token INT8 activations, INT32
// accumulation) or weight-only, with per-channel or per-tensor weight scales.
// Kernels come from the ISA dispatch table (dispatch.hpp), chosen when the op is built.
#include <vector>

#include "kernels/cpu/dispatch.hpp"
#include "kernels/quantized_linear.hpp"

namespace kq {
namespace {

class Int8Linear final : public QuantizedLinear {
 public:
  Int8Linear(PackedWeight weight, Tensor bias)
      : QuantizedLinear(std::move(weight), std::move(bias)), kernels_(&cpu::quant_kernels()) {}

  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    if (M <= 0) return;
    const int threads = resolve_threads(ctx.threads);
    cpu::Int8WeightView v;
    v.codes = w_.codes.data<int8_t>();
    v.scales = w_.scales.data<float>();
    v.per_tensor = w_.spec.weight_scales == ScaleGranularity::PerTensor;
    v.bias = bias_data();
    v.N = w_.N;
    v.K = w_.K;
    if (!w_.spec.quantize_activations) {
      kernels_->gemm_f32s8_f32_rowwise(v, x, M, y, threads);
      return;
    }
    // Dynamic per-token activation quantization into per-thread scratch
    // (grown once, reused: no allocation per call in steady state).
    thread_local std::vector<int8_t> xq;
    thread_local std::vector<float> xs;
    const int64_t K = w_.K;
    if (xq.size() < size_t(M * K)) xq.resize(size_t(M * K));
    if (xs.size() < size_t(M)) xs.resize(size_t(M));
    kernels_->quantize_rows_s8(x, M, K, xq.data(), xs.data(), threads);
    kernels_->gemm_s8s8_f32_rowwise(v, xq.data(), xs.data(), M, y, threads);
  }

 private:
  const cpu::QuantKernels* kernels_;
};

}  // namespace

std::unique_ptr<Linear> detail::make_int8_linear(PackedWeight weight, Tensor bias) {
  return std::make_unique<Int8Linear>(std::move(weight), std::move(bias));
}

}  // namespace kq
