#pragma once
// Producer-side activation quantization for the CUDA backend's decode steps.
//
// A W8A8 linear quantizes its BF16 input per token before its GEMV: one more
// one-row kernel per linear, on the critical path of every decode step. The
// kernel that produced that input (the RMSNorm before q/k/v and gate/up, the
// SwiGLU before down) already holds the row in registers and can write the
// codes itself (cuda::rms_norm_quantize / swiglu_quantize). The backend does
// not know the consumer when the model asks for the norm, so it defers the
// norm / SwiGLU launch to the next op: when that op is a W8A8 linear reading
// the deferred output (at most 8 rows: the decode GEMV path), one fused
// kernel runs and the linear is handed a cuda::QuantizedInput; before any
// other op the deferred kernel is launched as it is. The results are the same
// bits either way (the fused kernels reproduce the stand-alone quantizers).
// Likewise a one-row SwiGLU or RMSNorm feeding a 4-bit linear is computed by
// that linear's GEMV while it stages its input (linear_of_swiglu,
// linear_of_rms_norm).
// KQ_FUSED_QUANT=0 turns every fusion off, KQ_FUSED_NORM=0 only the RMSNorm
// into the 4-bit GEMV (A/B runs).
#include <cstdint>

#include "gpu/cuda_linear.hpp"
#include "kernels/cuda/gpu_context.hpp"
#include "models/backend.hpp"

namespace kq::gpu {

class DeferredProducer {
 public:
  /// Defers rms_norm(x, add, weight, eps) -> out for `rows` rows of width d
  /// (models::Backend::rms_norm), launching any earlier deferred op first.
  void defer_rms_norm(float* x, models::Act add, const float* weight, float eps, models::Act out,
                      int64_t rows, int64_t d, cudaStream_t stream);
  /// Defers gate[:, :f] = silu(gate) · up for `rows` rows (models::Backend::swiglu).
  void defer_swiglu(models::Act gate, models::Act up, int64_t rows, int64_t f, cudaStream_t stream);
  /// Launches the deferred op, if any, unfused. Call before every other op of
  /// the step and at its end.
  void flush(cudaStream_t stream);
  /// Launches the deferred op for `op` reading x [rows, K]: fused with op's
  /// per-token quantization when op is a W8A8 linear (CudaLinear::input_codes)
  /// at <= 8 rows reading exactly the deferred output; then ctx holds the
  /// QuantizedInput and true is returned (clear it after op's call: see
  /// QuantizedScope). Otherwise flush() and false.
  bool produce_for(const CudaLinear& op, models::Act x, int64_t rows, cuda::GpuContext& ctx);
  /// When the deferred op is a one-row SwiGLU whose output is x and `op`
  /// computes it while reading its input (CudaLinear::forward_swiglu: the
  /// 4-bit streaming GEMV), runs y = op(SwiGLU) instead of both and returns
  /// true: the SwiGLU's output is then never written (gate keeps its input
  /// values; only this op reads it in the architectures). Otherwise false,
  /// nothing launched.
  bool linear_of_swiglu(const CudaLinear& op, models::Act x, int64_t rows, models::Act y, cuda::GpuContext& ctx);
  /// The same for a deferred one-row RMSNorm (CudaLinear::forward_rms_norm):
  /// its residual add is written, its output never. Call it only where `op` is
  /// the norm output's one reader (a fused q/k/v or gate/up group, the
  /// lm_head), never for one linear of several sharing it.
  bool linear_of_rms_norm(const CudaLinear& op, models::Act x, int64_t rows, models::Act y, cuda::GpuContext& ctx);

 private:
  enum class Kind { None, RmsNorm, Swiglu };
  /// Whether the deferred op is a one-row `kind` writing x, the input of `op`.
  bool feeds(Kind kind, const CudaLinear& op, models::Act x, int64_t rows) const;
  struct Op {
    Kind kind = Kind::None;
    float* x = nullptr;        // RmsNorm: residual [rows, d]
    models::Act in, in2, out;  // RmsNorm: add, -, out; Swiglu: gate, up, out (= gate)
    const float* weight = nullptr;
    float eps = 0.0f;
    int64_t rows = 0, cols = 0;  // d or f
  };
  void launch(const Op& op, cudaStream_t stream) const;
  Op op_;
};

/// Clears the context's QuantizedInput when the linear call it was set for
/// returns (or throws).
class QuantizedScope {
 public:
  QuantizedScope(cuda::GpuContext& ctx, bool active) : ctx_(ctx), active_(active) {}
  ~QuantizedScope() {
    if (active_) ctx_.clear_quantized_input();
  }
  QuantizedScope(const QuantizedScope&) = delete;
  QuantizedScope& operator=(const QuantizedScope&) = delete;

 private:
  cuda::GpuContext& ctx_;
  bool active_;
};

}  // namespace kq::gpu
