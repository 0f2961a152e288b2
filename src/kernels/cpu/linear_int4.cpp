// The 4-bit Linear ops (W4A16): NF4, FP4 and bitsandbytes FP4 (blockwise absmax, optional
// double quantization) and INT4 round-to-nearest groups (symmetric or with
// zero points), with F32 or BF16 compute dtype. Kernels come from the ISA
// dispatch table (dispatch.hpp), chosen when the op is built.
#include <vector>

#include "kernels/cpu/dispatch.hpp"
#include "kernels/quantized_linear.hpp"

namespace kq {
namespace {

class Int4Linear final : public QuantizedLinear {
 public:
  Int4Linear(PackedWeight weight, Tensor bias)
      : QuantizedLinear(std::move(weight), std::move(bias)), kernels_(&cpu::quant_kernels()) {}

  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    if (M <= 0) return;
    const int threads = resolve_threads(ctx.threads);
    cpu::Q4WeightView v;
    v.format = w_.weight_format();
    v.codes = w_.codes.data<uint8_t>();
    v.row_bytes = (w_.K + 1) / 2;
    if (w_.dq_codes.defined()) {
      v.dq_codes = w_.dq_codes.data<int8_t>();
      v.dq_scales = w_.dq_scales.data<float>();
      const float* mean = w_.dq_mean.data<float>();
      v.dq_mean = mean ? *mean : 0.0f;
    } else {
      v.scales = w_.scales.data<float>();
    }
    v.zeros = w_.zeros.defined() ? w_.zeros.data<uint8_t>() : nullptr;
    v.bias = bias_data();
    v.N = w_.N;
    v.K = w_.K;
    v.block = w_.block;
    v.nb = w_.blocks_per_row;
    v.bf16 = w_.spec.compute_dtype == DType::BF16;
    if (!v.bf16) {
      kernels_->gemm_f32q4_f32_blockwise(v, x, M, y, threads);
      return;
    }
    // BF16 compute: activations rounded to bfloat16 once per call (per-thread scratch).
    thread_local std::vector<float> xb;
    const size_t n = size_t(M * w_.K);
    if (xb.size() < n) xb.resize(n);
    float* p = xb.data();
    for (size_t i = 0; i < n; ++i) p[i] = bf16_to_f32(f32_to_bf16(x[i]));
    kernels_->gemm_f32q4_f32_blockwise(v, p, M, y, threads);
  }

 private:
  const cpu::QuantKernels* kernels_;
};

}  // namespace

std::unique_ptr<Linear> detail::make_int4_linear(PackedWeight weight, Tensor bias) {
  return std::make_unique<Int4Linear>(std::move(weight), std::move(bias));
}

}  // namespace kq
