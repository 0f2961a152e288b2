// The 16-bit (BF16 / F16) unquantized Linear; kernels from the ISA dispatch
// table (linear_w16_ref.cpp, linear_w16_avx2.cpp), chosen when the op is built.
#include "kernels/linear_w16.hpp"

#include <cstdint>

#include "kernels/cpu/dense_linear_args.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {

class LinearW16 final : public Linear {
 public:
  LinearW16(Tensor weight, Tensor bias)
      : w_(std::move(weight)), b_(std::move(bias)), kernels_(&cpu::quant_kernels()) {}

  int64_t in_features() const override { return w_.dim(1); }
  int64_t out_features() const override { return w_.dim(0); }

  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    if (M <= 0) return;
    cpu::W16WeightView v;
    v.w = w_.data<uint16_t>();
    v.dtype = w_.dtype();
    v.bias = b_.defined() ? b_.data<float>() : nullptr;
    v.N = w_.dim(0);
    v.K = w_.dim(1);
    kernels_->gemm_f32w16_f32(v, x, M, y, resolve_threads(ctx.threads));
  }

  size_t weight_bytes() const override { return w_.nbytes() + (b_.defined() ? b_.nbytes() : 0); }
  std::string format() const override { return w_.dtype() == DType::BF16 ? "bf16" : "f16"; }
  Tensor dequantized_weight() const override { return w_.to_f32(); }
  Tensor bias() const override { return b_.defined() ? b_.clone() : Tensor(); }  // a copy, as dequantized_weight()

  const Tensor& weight() const { return w_; }

 private:
  Tensor w_;  // BF16 or F16 [N, K]
  Tensor b_;  // F32 [N] or undefined
  const cpu::QuantKernels* kernels_;
};

}  // namespace

std::unique_ptr<Linear> make_linear_w16(Tensor weight, Tensor bias) {
  cpu::check_dense_linear_args("make_linear_w16", weight, {DType::BF16, DType::F16}, "BF16 or F16", bias);
  return std::make_unique<LinearW16>(std::move(weight), std::move(bias));
}

const Tensor* linear_w16_weight(const Linear& op) {
  const auto* w = dynamic_cast<const LinearW16*>(&op);
  return w ? &w->weight() : nullptr;
}

std::unique_ptr<Linear> linear_in_disk_dtype(const Linear& op) {
  const float* w = linear_f32_weight_data(op);
  const DType d = linear_f32_disk_dtype(op);
  if (!w || (d != DType::BF16 && d != DType::F16)) return nullptr;
  Tensor held = Tensor::empty(d, {op.out_features(), op.in_features()});
  convert_from_f32(d, w, held.raw_mut(), size_t(held.numel()));
  return make_linear_w16(std::move(held), op.bias());
}

}  // namespace kq
