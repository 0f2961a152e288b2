#pragma once
// Per-stream state of the CUDA backend: the cuBLASLt handle and workspace,
// cached cuBLASLt matmul plans and scratch buffers, in owning RAII classes.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "kernels/cuda/act_code.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/device_info.hpp"

namespace kq::cuda {

/// Owning cuBLASLt library handle (cublasLtCreate / cublasLtDestroy). Move-only.
class LtHandle {
 public:
  LtHandle();
  ~LtHandle();
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
  LtHandle(LtHandle&& o) noexcept;
  LtHandle& operator=(LtHandle&& o) noexcept;
  cublasLtHandle_t get() const { return h_; }

 private:
  cublasLtHandle_t h_ = nullptr;
};

/// Operand types of a cuBLASLt GEMM (all compute y = x·Wᵀ in the "TN" layout).
enum class LtGemmKind : uint8_t {
  BF16,          ///< BF16 x BF16 -> BF16, FP32 accumulation
  FP8Tensor,     ///< E4M3 x E4M3 -> BF16, per-tensor scale pointers (A/B_SCALE_POINTER)
  FP8Rowwise,    ///< E4M3 x E4M3 -> BF16, per-channel x per-token scales fused (OUTER_VEC_32F)
  FP8F32,        ///< E4M3 x E4M3 -> FP32, unscaled (rowwise scales applied by an epilogue kernel)
  INT8,          ///< INT8 x INT8 -> INT32, INT32 accumulation (IMMA)
};

/// Everything a cuBLASLt plan depends on. In cuBLASLt's column-major terms:
/// m = N (output channels), n = M (tokens), k = K; A = W stored [N, lda],
/// B = x stored [M, ldb], D = y stored [M, ldd]; align_* = byte alignment of the
/// three pointers (power of two, at most 256).
struct LtGemmKey {
  LtGemmKind kind = LtGemmKind::BF16;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0;
  uint32_t align_a = 256, align_b = 256, align_d = 256;
  bool operator==(const LtGemmKey& o) const {
    return kind == o.kind && m == o.m && n == o.n && k == o.k && lda == o.lda && ldb == o.ldb && ldd == o.ldd &&
           align_a == o.align_a && align_b == o.align_b && align_d == o.align_d;
  }
};

struct LtGemmKeyHash {
  size_t operator()(const LtGemmKey& k) const noexcept;
};

/// One cuBLASLt matmul: owned operation and layout descriptors plus the
/// algorithm the heuristic chose. Created by GpuContext::plan().
class LtPlan {
 public:
  /// Builds the descriptors and asks the heuristic for one algorithm; `ok()`
  /// is false when cuBLASLt has none for this key on this device.
  /// scale_a / scale_b: device pointers for FP8 scale attributes (may be null otherwise).
  LtPlan(cublasLtHandle_t h, const LtGemmKey& key, size_t workspace_bytes, const void* scale_a,
         const void* scale_b);
  ~LtPlan();
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;

  bool ok() const { return ok_; }
  /// Runs D = op(A)·op(B) (scaled per the kind) on `stream`. Throws kq::Error on failure.
  void run(cublasLtHandle_t h, const void* a, const void* b, void* d, const void* scale_a,
           const void* scale_b, void* workspace, size_t workspace_bytes, cudaStream_t stream);

 private:
  LtGemmKey key_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, d_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  const void* scale_a_ = nullptr;
  const void* scale_b_ = nullptr;
  bool ok_ = false;
};

/// Scratch buffers a GpuContext hands out; each slot is one DeviceBuffer.
enum class Scratch : int { ActQ = 0, ActScale, GemmOut, Weight, Count };

/// Activations already quantized per token by the kernel that produced them
/// (the decode step's RMSNorm or SwiGLU, model_ops.hpp): for the BF16 input
/// x [M, ldx] with K columns, q [M, ldq] holds its `code` codes (zero past K)
/// and scale FP32 [M] its per-token scales, exactly what quantize_rows_fp8 /
/// quantize_rows_int8 would write. A W8A8 decode GEMV whose input is x (same
/// pointer, M, K, ldq = its K_pad, code) uses them instead of quantizing.
struct QuantizedInput {
  const uint16_t* x = nullptr;
  int64_t M = 0, K = 0, ldq = 0;
  ActCode code = ActCode::None;
  const void* q = nullptr;
  const float* scale = nullptr;
  /// Whether this describes input x of an M x K linear with padded row ldq and `c` codes.
  bool matches(const uint16_t* x_, int64_t M_, int64_t K_, int64_t ldq_, ActCode c) const {
    return code != ActCode::None && x == x_ && M == M_ && K == K_ && ldq == ldq_ && code == c;
  }
};

/// The CUDA backend's state for one stream: cuBLASLt handle, workspace,
/// cached plans and scratch memory. Not thread-safe: use one per host thread
/// / stream. The stream is borrowed (nullptr = the legacy default stream).
class GpuContext {
 public:
  /// Binds to the current CUDA device. workspace_bytes: cuBLASLt workspace
  /// (32 MiB is NVIDIA's recommendation for Hopper). Throws kq::Error when no
  /// device is usable.
  explicit GpuContext(cudaStream_t stream = nullptr, size_t workspace_bytes = size_t(32) << 20);

  cudaStream_t stream() const { return stream_; }
  cublasLtHandle_t lt() const { return handle_.get(); }
  void* workspace() { return workspace_.data(); }
  size_t workspace_bytes() const { return workspace_.bytes(); }
  const DeviceQuery& device() const { return *device_; }

  /// The cached plan for `key` (built on first use), or nullptr when cuBLASLt
  /// has no algorithm for it. scale_a/scale_b as for LtPlan.
  LtPlan* plan(const LtGemmKey& key, const void* scale_a = nullptr, const void* scale_b = nullptr);

  /// At least `bytes` of device memory for `slot`, contents undefined; valid
  /// until the next scratch() call for the same slot asks for more.
  void* scratch(Scratch slot, size_t bytes);

  /// The activations a producer kernel quantized for the next linear (see
  /// QuantizedInput); the caller that set it clears it once that linear has
  /// been enqueued, so it never outlives the buffer contents it describes.
  const QuantizedInput& quantized_input() const { return quantized_input_; }
  void set_quantized_input(const QuantizedInput& q) { quantized_input_ = q; }
  void clear_quantized_input() { quantized_input_ = QuantizedInput{}; }

  /// A device word that is 0 between kernel launches on this context's stream,
  /// for kernels whose blocks count themselves (the last one resets it):
  /// w4a16_gemv_rms_norm's residual write.
  unsigned* grid_counter() { return counter_.data(); }

 private:
  cudaStream_t stream_;
  const DeviceQuery* device_;
  LtHandle handle_;
  DeviceBuffer<std::byte> workspace_;
  std::unordered_map<LtGemmKey, std::unique_ptr<LtPlan>, LtGemmKeyHash> plans_;
  std::array<DeviceBuffer<std::byte>, size_t(Scratch::Count)> scratch_;
  QuantizedInput quantized_input_;
  DeviceBuffer<unsigned> counter_;
};

/// Largest power of two (at most 256) dividing the address: the alignment
/// cuBLASLt's heuristic must assume for this pointer.
uint32_t pointer_alignment(const void* p);

}  // namespace kq::cuda
