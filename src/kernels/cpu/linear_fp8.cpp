// The FP8 Linear (OCP E4M3 / E5M2): W8A8 with dynamic per-token FP8
// activations, or weight-only; per-channel or per-tensor weight scales.
// Weights are stored as real one-byte FP8 codes; on CPU the product is
// computed on the decoded values in F32.
#include <vector>

#include "formats/fp8.hpp"
#include "kernels/cpu/linear_fp8_ref.hpp"
#include "kernels/quantized_linear.hpp"

namespace kq {
namespace {

FP8Format fp8_format_of(const QuantSpec& s) {
  return s.format == PrecisionFormat::FP8_E5M2 ? FP8Format::E5M2 : FP8Format::E4M3;
}

class Fp8Linear final : public QuantizedLinear {
 public:
  using QuantizedLinear::QuantizedLinear;

  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    if (M <= 0) return;
    const int threads = resolve_threads(ctx.threads);
    const FP8Format f = fp8_format_of(w_.spec);
    cpu::Fp8WeightView v;
    v.codes = w_.codes.data<uint8_t>();
    v.scales = w_.scales.data<float>();
    v.per_tensor = w_.spec.weight_scales == ScaleGranularity::PerTensor;
    v.format = f;
    v.bias = bias_data();
    v.N = w_.N;
    v.K = w_.K;
    if (!w_.spec.quantize_activations) {
      cpu::gemm_f32fp8_f32_rowwise_ref(v, x, nullptr, M, y, threads);
      return;
    }
    // Per-token FP8 quantization of x (scale = finite absmax / max), kept as
    // the decoded FP8 values in per-thread scratch.
    thread_local std::vector<float> xd;
    thread_local std::vector<float> xs;
    const int64_t K = w_.K;
    if (xd.size() < size_t(M * K)) xd.resize(size_t(M * K));
    if (xs.size() < size_t(M)) xs.resize(size_t(M));
    float* d = xd.data();
    float* s = xs.data();
    const bool sat = w_.spec.fp8_saturate;
    const float* table = formats::fp8_table(f).data();
#pragma omp parallel for num_threads(threads) schedule(static) if (M > 1)
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * K;
      s[m] = formats::fp8_scale_for(formats::finite_absmax(xr, K), f);
      for (int64_t k = 0; k < K; ++k) d[m * K + k] = table[formats::fp8_encode(xr[k] / s[m], f, sat)];
    }
    cpu::gemm_f32fp8_f32_rowwise_ref(v, d, s, M, y, threads);
  }
};

}  // namespace

std::unique_ptr<Linear> detail::make_fp8_linear(PackedWeight weight, Tensor bias) {
  return std::make_unique<Fp8Linear>(std::move(weight), std::move(bias));
}

}  // namespace kq
