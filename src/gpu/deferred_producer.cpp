#include "gpu/deferred_producer.hpp"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "kernels/cuda/model_ops.hpp"
#include "kernels/cuda/w4a16.hpp"
#include "kernels/cuda/w8a8.hpp"

namespace kq::gpu {
namespace {

uint16_t* bf16(models::Act a) { return static_cast<uint16_t*>(a.p); }

bool env_off(const char* name) {
  const char* e = std::getenv(name);
  return e && std::strcmp(e, "0") == 0;
}

bool fusion_enabled() {
  static const bool on = !env_off("KQ_FUSED_QUANT");
  return on;
}

bool norm_fusion_enabled() {
  static const bool on = fusion_enabled() && !env_off("KQ_FUSED_NORM");
  return on;
}

}  // namespace

void DeferredProducer::defer_rms_norm(float* x, models::Act add, const float* weight, float eps,
                                      models::Act out, int64_t rows, int64_t d, cudaStream_t stream) {
  flush(stream);
  op_ = Op{Kind::RmsNorm, x, add, {}, out, weight, eps, rows, d};
}

void DeferredProducer::defer_swiglu(models::Act gate, models::Act up, int64_t rows, int64_t f,
                                    cudaStream_t stream) {
  flush(stream);
  op_ = Op{Kind::Swiglu, nullptr, gate, up, gate, nullptr, 0.0f, rows, f};
}

void DeferredProducer::launch(const Op& o, cudaStream_t stream) const {
  if (o.kind == Kind::RmsNorm)
    cuda::rms_norm(o.x, bf16(o.in), o.in.ld, o.weight, o.eps, bf16(o.out), o.out.ld, o.rows, o.cols, stream);
  else if (o.kind == Kind::Swiglu)
    cuda::swiglu(bf16(o.in), o.in.ld, bf16(o.in2), o.in2.ld, bf16(o.out), o.out.ld, o.rows, o.cols, stream);
}

void DeferredProducer::flush(cudaStream_t stream) {
  const Op o = std::exchange(op_, Op{});
  launch(o, stream);
}

bool DeferredProducer::feeds(Kind kind, const CudaLinear& op, models::Act x, int64_t rows) const {
  return op_.kind == kind && fusion_enabled() && rows == 1 && op_.rows == 1 && op_.out.p == x.p &&
         op_.cols == op.in_features();
}

bool DeferredProducer::linear_of_swiglu(const CudaLinear& op, models::Act x, int64_t rows, models::Act y,
                                        cuda::GpuContext& ctx) {
  if (!feeds(Kind::Swiglu, op, x, rows) || !op.forward_swiglu(ctx, bf16(op_.in), bf16(op_.in2), bf16(y)))
    return false;
  op_ = Op{};
  return true;
}

bool DeferredProducer::linear_of_rms_norm(const CudaLinear& op, models::Act x, int64_t rows, models::Act y,
                                          cuda::GpuContext& ctx) {
  if (!norm_fusion_enabled() || !feeds(Kind::RmsNorm, op, x, rows)) return false;
  const cuda::W4RmsNormInput in{op_.x, bf16(op_.in), op_.weight, op_.eps, ctx.grid_counter()};
  if (!op.forward_rms_norm(ctx, in, bf16(y))) return false;
  op_ = Op{};
  return true;
}

bool DeferredProducer::produce_for(const CudaLinear& op, models::Act x, int64_t rows, cuda::GpuContext& ctx) {
  const CudaLinear::InputCodes codes = op.input_codes();
  const int64_t K = op.in_features();
  const Op o = op_;
  const bool match = o.kind != Kind::None && fusion_enabled() && codes.code != cuda::ActCode::None &&
                     rows <= cuda::kW8GemvMaxM && o.rows == rows && o.cols == K && o.out.p == x.p &&
                     o.out.ld == x.ld && codes.K_pad >= K;
  if (!match) {
    flush(ctx.stream());
    return false;
  }
  void* q = ctx.scratch(cuda::Scratch::ActQ, size_t(rows * codes.K_pad));
  auto* scale = static_cast<float*>(ctx.scratch(cuda::Scratch::ActScale, size_t(rows) * sizeof(float)));
  const bool fused =
      o.kind == Kind::RmsNorm
          ? cuda::rms_norm_quantize(o.x, bf16(o.in), o.in.ld, o.weight, o.eps, bf16(o.out), o.out.ld, rows, K,
                                    codes.code, q, codes.K_pad, scale, ctx.stream())
          : cuda::swiglu_quantize(bf16(o.in), o.in.ld, bf16(o.in2), o.in2.ld, bf16(o.out), o.out.ld, rows, K,
                                  codes.code, q, codes.K_pad, scale, ctx.stream());
  op_ = Op{};
  if (!fused) {  // shapes the fused kernels do not take: as it is, and the linear quantizes
    launch(o, ctx.stream());
    return false;
  }
  ctx.set_quantized_input({bf16(x), rows, K, codes.K_pad, codes.code, q, scale});
  return true;
}

}  // namespace kq::gpu
