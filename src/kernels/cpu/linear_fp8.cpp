// The FP8 Linear (OCP E4M3 / E5M2): W8A8 with dynamic per-token FP8
// activations, or weight-only; per-channel or per-tensor weight scales.
// Weights are stored as real one-byte FP8 codes; on CPU the product is
// computed on the decoded values in F32. Kernels come from the ISA dispatch
// table (dispatch.hpp), chosen when the op is built.
#include <vector>

#include "formats/fp8.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kernels/quantized_linear.hpp"

namespace kq {
namespace {

FP8Format fp8_format_of(const QuantSpec& s) {
  return s.format == PrecisionFormat::FP8_E5M2 ? FP8Format::E5M2 : FP8Format::E4M3;
}

/// true when an E4M3 weight holds a NaN code (S.1111.111). The quantizer never
/// writes one (it rejects non-finite weights and saturates), but a loaded file may.
bool has_e4m3_nan(const PackedWeight& w) {
  if (w.spec.format != PrecisionFormat::FP8_E4M3) return false;
  const uint8_t* c = w.codes.data<uint8_t>();
  for (int64_t i = 0; i < w.codes.numel(); ++i)
    if ((c[i] & 0x7F) == formats::kE4M3NaN) return true;
  return false;
}

class Fp8Linear final : public QuantizedLinear {
 public:
  // The optimized kernels decode E4M3 through FP16 bit patterns, which has no
  // NaN for S.1111.111: such weights keep the reference kernel's NaN semantics.
  Fp8Linear(PackedWeight weight, Tensor bias)
      : QuantizedLinear(std::move(weight), std::move(bias)),
        kernels_(&cpu::quant_kernels()) {
    if (has_e4m3_nan(w_)) kernels_ = &cpu::quant_kernels(cpu::Isa::Ref);
  }

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
      kernels_->gemm_f32fp8_f32_rowwise(v, x, nullptr, M, y, threads);
      return;
    }
    // Per-token FP8 quantization of x (scale = finite absmax / max), kept as
    // the decoded FP8 values in per-thread scratch (grown once, reused).
    thread_local std::vector<float> xd;
    thread_local std::vector<float> xs;
    const int64_t K = w_.K;
    if (xd.size() < size_t(M * K)) xd.resize(size_t(M * K));
    if (xs.size() < size_t(M)) xs.resize(size_t(M));
    float* d = xd.data();
    float* s = xs.data();
    kernels_->quantize_rows_fp8(x, M, K, f, w_.spec.fp8_saturate, d, s, threads);
    kernels_->gemm_f32fp8_f32_rowwise(v, d, s, M, y, threads);
  }

 private:
  const cpu::QuantKernels* kernels_;
};

}  // namespace

std::unique_ptr<Linear> detail::make_fp8_linear(PackedWeight weight, Tensor bias) {
  return std::make_unique<Fp8Linear>(std::move(weight), std::move(bias));
}

}  // namespace kq
