// FP32 Linear: oneDNN sgemm for prefill, AVX2 GEMV for decode.
#include "kernels/linear_f32.hpp"

#include <oneapi/dnnl/dnnl.h>

#include <atomic>
#include <cstdint>

#include "kernels/cpu/dense_linear_args.hpp"
#include "kernels/cpu/linear_f32_kernels.hpp"
#include "kernels/cpu/ops_threads.hpp"
#include "kernels/cpu/ops_vec.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"

namespace kq {
namespace cpu {

void gemm_f32_dnnl(const float* x, int64_t M, const float* w, int64_t N, int64_t K, float* y, int threads) {
  gemm_f32_dnnl_ldy(x, M, w, N, K, y, N, threads);
}

void gemm_f32_dnnl_ldy(const float* x, int64_t M, const float* w, int64_t N, int64_t K, float* y, int64_t ldy,
                       int threads) {
  OmpThreadsScope scope(threads);
  // Row-major C[M,N] = A[M,K] · B[N,K]^T: transa = 'N', transb = 'T'.
  dnnl_sgemm('N', 'T', M, N, K, 1.0f, x, K, w, K, 0.0f, y, ldy);
}

bool gemv_f32_avx2_supported() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma;
}

}  // namespace cpu

namespace {

// linear_f32_live_bytes / linear_f32_peak_bytes.
std::atomic<size_t> g_live_bytes{0};
std::atomic<size_t> g_peak_bytes{0};

class LinearF32 final : public Linear {
 public:
  LinearF32(Tensor weight, Tensor bias, DType disk_dtype)
      : w_(std::move(weight)), b_(std::move(bias)), disk_dtype_(disk_dtype), use_avx2_gemv_(cpu::use_avx2()) {
    const size_t live = g_live_bytes.fetch_add(w_.nbytes()) + w_.nbytes();
    size_t peak = g_peak_bytes.load();
    while (live > peak && !g_peak_bytes.compare_exchange_weak(peak, live)) {
    }
  }
  ~LinearF32() override { g_live_bytes.fetch_sub(w_.nbytes()); }
  LinearF32(const LinearF32&) = delete;
  LinearF32& operator=(const LinearF32&) = delete;

  int64_t in_features() const override { return w_.dim(1); }
  int64_t out_features() const override { return w_.dim(0); }

  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    const int64_t N = w_.shape()[0], K = w_.shape()[1];
    const float* w = w_.data<float>();
    const int threads = resolve_threads(ctx.threads);
    if (M == 1 && use_avx2_gemv_)
      cpu::gemv_f32_avx2(w, N, K, x, y, threads);
    else
      cpu::gemm_f32_dnnl(x, M, w, N, K, y, threads);
    if (b_.defined()) {
      const float* b = b_.data<float>();
      for (int64_t m = 0; m < M; ++m) {
        float* row = y + m * N;
        for (int64_t n = 0; n < N; ++n) row[n] += b[n];
      }
    }
  }

  size_t weight_bytes() const override { return w_.nbytes() + (b_.defined() ? b_.nbytes() : 0); }
  std::string format() const override { return "f32"; }
  Tensor dequantized_weight() const override { return w_.clone(); }  // a copy: no write reaches the model
  Tensor bias() const override { return b_.defined() ? b_.clone() : Tensor(); }  // a copy, as dequantized_weight()

  const Tensor& weight() const { return w_; }
  const float* weight_data() const { return w_.data<float>(); }
  DType disk_dtype() const { return disk_dtype_; }

 private:
  Tensor w_;  // F32 [N, K]
  Tensor b_;  // F32 [N] or undefined
  DType disk_dtype_;  // F32, BF16 or F16
  bool use_avx2_gemv_;
};

}  // namespace

std::unique_ptr<Linear> make_linear_f32(Tensor weight, Tensor bias, DType disk_dtype) {
  if (disk_dtype != DType::F32 && disk_dtype != DType::BF16 && disk_dtype != DType::F16)
    raise<InvalidArgument>("make_linear_f32: disk dtype must be F32, BF16 or F16, got {}", dtype_name(disk_dtype));
  cpu::check_dense_linear_args("make_linear_f32", weight, {DType::F32}, "F32", bias);
  return std::make_unique<LinearF32>(std::move(weight), std::move(bias), disk_dtype);
}

const float* linear_f32_weight_data(const Linear& op) {
  const auto* f = dynamic_cast<const LinearF32*>(&op);
  return f ? f->weight_data() : nullptr;
}

const Tensor* linear_f32_weight(const Linear& op) {
  const auto* f = dynamic_cast<const LinearF32*>(&op);
  return f ? &f->weight() : nullptr;
}

DType linear_f32_disk_dtype(const Linear& op) {
  const auto* f = dynamic_cast<const LinearF32*>(&op);
  return f ? f->disk_dtype() : DType::F32;
}

size_t linear_f32_live_bytes() { return g_live_bytes.load(); }

size_t linear_f32_peak_bytes() { return g_peak_bytes.load(); }

void reset_linear_f32_peak_bytes() { g_peak_bytes.store(g_live_bytes.load()); }

}  // namespace kq
