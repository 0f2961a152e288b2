#pragma once
// The one operation interface every weight format implements: a linear
// projection. Models hold Linear ops and never see the weight format. Public
// because a Model exposes its ops (LinearSlot::op) and takes a LinearTransform
// (Model::random): a user can inspect an op, wrap it, or pass it through, and
// may implement Linear: such a layer runs as it is in a CPU model, while a CUDA
// model (Model::to_device, or a transform of a model built for CUDA) throws
// Unsupported for it, having a GPU path only for the library's own ops. Those
// implementations (FP32, each quantized format) are internal to the library.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "kq/context.hpp"
#include "kq/error.hpp"
#include "kq/tensor.hpp"

namespace kq {

/// y[M, N] = x[M, K] · Wᵀ (+ bias[N]), with W logically [N, K] = [out, in]
/// (nn.Linear layout; GPT-2 Conv1D [in, out] weights are transposed at load).
/// Implementations in the library: FP32 (oneDNN sgemm), and one per quantized format.
class Linear {
 public:
  virtual ~Linear() = default;
  /// K, the input dimension.
  virtual int64_t in_features() const = 0;
  /// N, the output dimension.
  virtual int64_t out_features() const = 0;
  /// x: F32 row-major [M, K]; y: F32 row-major [M, N], overwritten. M >= 1.
  /// M == 1 is the decode (GEMV) path, M > 1 prefill (GEMM). Never throws.
  virtual void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const = 0;
  /// Bytes the weights occupy in memory, everything included (codes, scales,
  /// zero points, second-level scales, bias), counted as actually held.
  virtual size_t weight_bytes() const = 0;
  /// Short format tag, e.g. "f32", "int8-w8a8", "nf4-b64-dq".
  virtual std::string format() const = 0;
  /// The weight as the op computes with it, dequantized: F32 [N, K]. The
  /// library's ops return a copy (the FP32 op too): writing to it leaves the
  /// op, and the model holding it, unchanged.
  virtual Tensor dequantized_weight() const = 0;
  /// Bias F32 [N], or an undefined tensor when the layer has none. A copy, as
  /// dequantized_weight() is: writing to it leaves the op unchanged.
  virtual Tensor bias() const = 0;
  /// Adds the dense tensors holding this op's weights to `out`, named
  /// `prefix` + suffix (quantized ops: ".qweight" codes, ".scales", ".zeros",
  /// ".dq_codes", ".dq_scales", ".dq_mean", ".bias"; see quantized_linear.hpp),
  /// for writing a quantized model folder. Tensors are shared, not copied.
  /// The default throws Unsupported naming the prefix and format.
  virtual void export_tensors(const std::string& prefix, std::map<std::string, Tensor>& out) const {
    (void)out;
    raise<Unsupported>("Linear '{}' of format '{}' cannot export its tensors", prefix, format());
  }
};

}  // namespace kq
