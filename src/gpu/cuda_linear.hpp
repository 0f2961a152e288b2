#pragma once
// Linear ops on the GPU: the CPU ops of every weight format (FP32, INT8 W8A8,
// FP8 E4M3/E5M2, NF4, FP4, bitsandbytes FP4, INT4 groups) converted once to the CUDA backend's
// device layouts, run with BF16 activations (src/kernels/cuda/: cuBLASLt
// BF16/FP8/INT8 GEMMs, our W4A16 and FP8 GEMVs).
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/gpu_context.hpp"
#include "kernels/linear.hpp"

namespace kq::cuda {
struct W4RmsNormInput;  // kernels/cuda/w4a16.hpp
}

namespace kq::gpu {

/// A Linear whose weights live on the GPU. Implements the kq::Linear
/// interface (weight_bytes = device bytes held, format = the CPU op's format
/// tag, dequantized_weight / bias copied back to the host), plus the device
/// entry point the CUDA model backend calls.
class CudaLinear : public Linear {
 public:
  CudaLinear();
  ~CudaLinear() override;
  CudaLinear(const CudaLinear&) = delete;
  CudaLinear& operator=(const CudaLinear&) = delete;

  /// y[M, N] = BF16(x[M, K] · Wᵀ + bias) on the GPU, FP32 accumulation.
  /// x: BF16 device [M, ldx] (ldx >= K); y: BF16 device [M, ldy] (ldy >= N).
  /// Work is enqueued on ctx.stream(); no host synchronization and no
  /// allocation once warm (scratch grows on first use of a larger M), so a
  /// decode step can be captured in a CUDA graph after one warm-up call.
  /// Throws InvalidArgument for M < 1 or short strides.
  virtual void forward_device(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                              int64_t ldy) const = 0;
  /// How this op quantizes its input per token at decode (W8A8: E4M3 or
  /// INT8 rows padded to K_pad columns), so the kernel producing the input
  /// can write those codes itself (cuda::QuantizedInput, set on the context
  /// for the call). {None, 0} for ops that read BF16 activations.
  struct InputCodes {
    cuda::ActCode code = cuda::ActCode::None;
    int64_t K_pad = 0;
  };
  virtual InputCodes input_codes() const { return {}; }
  /// The BF16 weight [N, K] (row-major on the device) when this op holds one
  /// as it is (the f32 / 16-bit layouts, not fused), shared with the caller:
  /// the CUDA backend gathers a tied embedding table's rows from it instead of
  /// holding a second copy. nullptr for every other layout.
  virtual std::shared_ptr<const cuda::DeviceBuffer<uint16_t>> bf16_weight() const { return nullptr; }
  /// y[1, N] = BF16(h · Wᵀ + bias) for one token whose input is the SwiGLU
  /// h = BF16(silu(gate) · up) (gate, up: BF16 device [K]), computed by this
  /// op while it reads its input (the 4-bit streaming GEMV), so no SwiGLU
  /// kernel runs and gate is left as it is. Returns false with nothing
  /// enqueued where the op has no such path (then run the SwiGLU and
  /// forward_device).
  virtual bool forward_swiglu(cuda::GpuContext& ctx, const uint16_t* gate, const uint16_t* up, uint16_t* y) const {
    (void)ctx, (void)gate, (void)up, (void)y;
    return false;
  }
  /// y[1, N] = BF16(h · Wᵀ + bias) for one token whose input is the RMSNorm
  /// h = BF16(RMSNorm(x + add) · weight) of models::Backend::rms_norm
  /// (cuda::W4RmsNormInput: x F32 [K], add BF16 [K] or null, weight F32 [K]),
  /// computed by this op while it reads its input (the 4-bit streaming GEMV),
  /// x += add written back; h is not stored. Returns false with nothing
  /// enqueued where the op has no such path (then run the norm and
  /// forward_device).
  virtual bool forward_rms_norm(cuda::GpuContext& ctx, const cuda::W4RmsNormInput& in, uint16_t* y) const {
    (void)ctx, (void)in, (void)y;
    return false;
  }
  /// Host entry of the Linear interface: rounds x (F32 [M, K], host) to BF16,
  /// uploads it, runs forward_device on a GpuContext this op owns (created on
  /// first use, default stream), downloads y as F32 [M, N]. Synchronous and
  /// slow (tests only). Unlike the CPU ops it throws kq::Error when the
  /// device fails. Thread-safe (serialized).
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override;

 private:
  mutable std::mutex host_mutex_;
  mutable std::unique_ptr<cuda::GpuContext> host_ctx_;
};

/// Output columns [col0, col0 + N) of a fused CudaLinear (fuse_cuda_linears):
/// computes what one of the fused linears did (same in/out features, format,
/// weights and bias). The CUDA backend runs the whole fused op once for the
/// group (Backend::linear_group); forward_device of a part alone runs the
/// whole op into a scratch buffer of the part and copies its columns
/// (correct, not fast; the scratch grows on first use, so warm it before a
/// graph capture). weight_bytes: the whole op's bytes shared by columns
/// (the last part takes the remainder), so the parts sum to the whole.
class CudaLinearPart final : public CudaLinear {
 public:
  CudaLinearPart(std::shared_ptr<const CudaLinear> whole, int64_t col0, int64_t n, size_t bytes);
  const std::shared_ptr<const CudaLinear>& whole() const { return whole_; }
  int64_t col0() const { return col0_; }

  int64_t in_features() const override { return whole_->in_features(); }
  int64_t out_features() const override { return n_; }
  size_t weight_bytes() const override { return bytes_; }
  std::string format() const override { return whole_->format(); }
  Tensor dequantized_weight() const override;
  Tensor bias() const override;
  void forward_device(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                      int64_t ldy) const override;
  InputCodes input_codes() const override { return whole_->input_codes(); }

 private:
  std::shared_ptr<const CudaLinear> whole_;
  int64_t col0_, n_;
  size_t bytes_;
  mutable cuda::DeviceBuffer<uint16_t> scratch_;  // [M, whole N]
};

/// Fuses linears that read the same input into one CudaLinear whose weight
/// is theirs concatenated along N (device-to-device copies; the inputs are
/// left as they are), returned as one CudaLinearPart per input in order (the
/// parts share the fused op; drop the inputs to free their memory). Fusable:
/// CudaLinears made by to_cuda / random_cuda_linear of one device layout and
/// format tag (and, for 4-bit, one codebook, block size and zero-point kind),
/// one K, all with a bias or none, the same AWQ input scales or none, and every N but the last a multiple of 16
/// (the 8-bit layouts pad rows to 16). Otherwise returns no parts and sets
/// `why` (when given) to the reason. Throws kq::Error when the device fails.
std::vector<std::unique_ptr<CudaLinearPart>> fuse_cuda_linears(std::span<const CudaLinear* const> ops,
                                                               std::string* why = nullptr);

/// Converts a CPU Linear (make_linear_f32 or any quantized op of
/// kernels/quantized_linear.hpp) to the GPU. Device paths per CPU format:
///   f32                 → BF16 weight (round to nearest even), cuBLASLt BF16 GEMM
///                         (cuBLASLt picks its GEMV kernels at M = 1);
///   int8 W8A8 (per-channel, or per-tensor: the one scale repeated)
///                       → cuda::Int8Weight, int8_w8a8_linear (per-token INT8
///                         activations, INT32 accumulation): same codes, same math;
///   int8 weight-only    → BF16(scale · q), BF16 GEMM: keeps the CPU op's
///                         unquantized activations (no W8A16 INT8 kernel exists;
///                         running it as W8A8 would add activation error);
///   fp8 E4M3 W8A8 (per-channel or per-tensor)
///                       → cuda::Fp8Weight, fp8_w8a8_linear (our GEMV at M <= 16),
///                         same codes; on a device without FP8 (cc < 8.9) → BF16;
///   fp8 E5M2 (W8A8 or weight-only), fp8 E4M3 weight-only
///                       → BF16(scale · code), BF16 GEMM. cuBLASLt has no E5M2 ×
///                         E5M2 GEMM and weight-only means BF16 activations.
///                         Every E5M2/E4M3 value is exact in BF16 (2 or 3 mantissa
///                         bits, exponents inside BF16's range) but value · scale
///                         is not: one rounding, relative error <= 2^-9, far
///                         below the FP8 step (2^-3 / 2^-4). E5M2 W8A8's activation
///                         quantization is not applied (activations stay BF16);
///   nf4 / fp4 / fp4-bnb / int4-gN (symmetric, asymmetric), any block 32..256, F32 or BF16
///   compute dtype       → cuda::W4Weight, w4a16_linear; double-quantized (QLoRA)
///                         block scales are decoded to FP32 on the host first;
///                         the device holds the scales in BF16 (rounding <= 2^-9;
///                         fp4-bnb: absmax / 12 with its code values times 12,
///                         exact in BF16, as cuda::W4Format::FP4Bnb);
///   awq-gN (AwqLinear: INT4 weight of W · diag(s))
///                       → the same W4Weight with input scales 1 / s (FP32 [K],
///                         cuda::set_w4_input_scale), applied to x by the kernels;
///                         format tag of the AWQ op. Fusable with ops of the same
///                         scales (quantize_model gives q/k/v and gate/up one s).
/// The bias (F32 [N]) is held on the device and added by a small kernel after
/// the GEMM (y = BF16(BF16(x·Wᵀ) + bias): one extra rounding). `ctx` is used
/// to read the device's properties; weights are uploaded synchronously.
/// Throws Unsupported naming the format when `op` is neither of the above
/// (e.g. already a CudaLinear), kq::Error when the device fails.
std::unique_ptr<CudaLinear> to_cuda(const Linear& op, cuda::GpuContext& ctx);

}  // namespace kq::gpu
