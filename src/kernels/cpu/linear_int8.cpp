// The INT8 Linear: W8A8 (dynamic per-token INT8 activations, INT32
// accumulation) or weight-only, with per-channel or per-tensor weight scales.
#include <vector>

#include "formats/int8.hpp"
#include "kernels/cpu/linear_int8_ref.hpp"
#include "kernels/quantized_linear.hpp"

namespace kq {
namespace {

class Int8Linear final : public QuantizedLinear {
 public:
  using QuantizedLinear::QuantizedLinear;

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
      cpu::gemm_f32s8_f32_rowwise_ref(v, x, M, y, threads);
      return;
    }
    // Dynamic per-token activation quantization into per-thread scratch
    // (grown once, reused: no allocation per call in steady state).
    thread_local std::vector<int8_t> xq;
    thread_local std::vector<float> xs;
    const int64_t K = w_.K;
    if (xq.size() < size_t(M * K)) xq.resize(size_t(M * K));
    if (xs.size() < size_t(M)) xs.resize(size_t(M));
    int8_t* q = xq.data();
    float* s = xs.data();
#pragma omp parallel for num_threads(threads) schedule(static) if (M > 1)
    for (int64_t m = 0; m < M; ++m) s[m] = formats::int8_quantize_dynamic(x + m * K, K, q + m * K);
    cpu::gemm_s8s8_f32_rowwise_ref(v, q, s, M, y, threads);
  }
};

}  // namespace

std::unique_ptr<Linear> detail::make_int8_linear(PackedWeight weight, Tensor bias) {
  return std::make_unique<Int8Linear>(std::move(weight), std::move(bias));
}

}  // namespace kq
