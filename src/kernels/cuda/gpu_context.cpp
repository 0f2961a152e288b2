#include "kernels/cuda/gpu_context.hpp"

#include <bit>
#include <functional>

#include "kernels/cuda/cuda_check.hpp"
#include "kq/error.hpp"

namespace kq::cuda {

// ---- LtHandle -----------------------------------------------------------------
LtHandle::LtHandle() { KQ_CUBLAS_CHECK(cublasLtCreate(&h_)); }
LtHandle::~LtHandle() {
  if (h_) cublasLtDestroy(h_);
}
LtHandle::LtHandle(LtHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
LtHandle& LtHandle::operator=(LtHandle&& o) noexcept {
  if (this != &o) {
    if (h_) cublasLtDestroy(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

size_t LtGemmKeyHash::operator()(const LtGemmKey& k) const noexcept {
  size_t h = std::hash<int>()(int(k.kind));
  auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>()(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  mix(uint64_t(k.m));
  mix(uint64_t(k.n));
  mix(uint64_t(k.k));
  mix(uint64_t(k.lda));
  mix(uint64_t(k.ldb));
  mix(uint64_t(k.ldd));
  mix((uint64_t(k.align_a) << 40) | (uint64_t(k.align_b) << 20) | k.align_d);
  return h;
}

uint32_t pointer_alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return 256;
  // Addresses of large allocations can have 32 or more trailing zero bits:
  // shifting a 32-bit 1 that far is undefined (and gave alignment 1 on the H200).
  const int tz = std::countr_zero(a);
  return tz >= 8 ? 256u : uint32_t(1) << tz;
}

// ---- LtPlan -------------------------------------------------------------------
namespace {

struct KindTypes {
  cublasComputeType_t compute;
  cudaDataType_t scale, ab, d;
};

KindTypes kind_types(LtGemmKind k) {
  switch (k) {
    case LtGemmKind::BF16: return {CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF};
    case LtGemmKind::FP8Tensor:
    case LtGemmKind::FP8Rowwise: return {CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_8F_E4M3, CUDA_R_16BF};
    case LtGemmKind::FP8F32: return {CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_8F_E4M3, CUDA_R_32F};
    case LtGemmKind::INT8: return {CUBLAS_COMPUTE_32I, CUDA_R_32I, CUDA_R_8I, CUDA_R_32I};
  }
  return {CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF};
}

template <class T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const T& v) {
  KQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, a, &v, sizeof(v)));
}

}  // namespace

LtPlan::LtPlan(cublasLtHandle_t h, const LtGemmKey& key, size_t workspace_bytes, const void* scale_a,
               const void* scale_b)
    : key_(key) {
  const KindTypes t = kind_types(key.kind);
  KQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_, t.compute, t.scale));
  set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (key.kind == LtGemmKind::FP8Tensor || key.kind == LtGemmKind::FP8Rowwise) {
    if (key.kind == LtGemmKind::FP8Rowwise) {
      const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
      set_desc(op_, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mode);
      set_desc(op_, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mode);
    }
    set_desc(op_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, scale_a);
    set_desc(op_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, scale_b);
    scale_a_ = scale_a;
    scale_b_ = scale_b;
  }
  // A = W: stored k x m column-major (= [N, lda] row-major), used transposed.
  KQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_, t.ab, uint64_t(key.k), uint64_t(key.m), key.lda));
  // B = x: stored k x n column-major (= [M, ldb] row-major).
  KQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_, t.ab, uint64_t(key.k), uint64_t(key.n), key.ldb));
  // C = D = y: m x n column-major (= [M, ldd] row-major).
  KQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d_, t.d, uint64_t(key.m), uint64_t(key.n), key.ldd));

  cublasLtMatmulPreference_t pref = nullptr;
  KQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  auto set_pref = [pref](cublasLtMatmulPreferenceAttributes_t a, auto v) {
    return cublasLtMatmulPreferenceSetAttribute(pref, a, &v, sizeof(v));
  };
  cublasStatus_t st = set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(workspace_bytes));
  if (st == CUBLAS_STATUS_SUCCESS) st = set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_a);
  if (st == CUBLAS_STATUS_SUCCESS) st = set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_b);
  if (st == CUBLAS_STATUS_SUCCESS) st = set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_d);
  if (st == CUBLAS_STATUS_SUCCESS) st = set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_d);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(h, op_, a_, b_, d_, d_, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  ok_ = st == CUBLAS_STATUS_SUCCESS && found > 0;
  if (ok_) algo_ = result.algo;
}

LtPlan::~LtPlan() {
  if (d_) cublasLtMatrixLayoutDestroy(d_);
  if (b_) cublasLtMatrixLayoutDestroy(b_);
  if (a_) cublasLtMatrixLayoutDestroy(a_);
  if (op_) cublasLtMatmulDescDestroy(op_);
}

void LtPlan::run(cublasLtHandle_t h, const void* a, const void* b, void* d, const void* scale_a,
                 const void* scale_b, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!ok_) raise<Unsupported>("cuBLASLt has no algorithm for this GEMM (m={}, n={}, k={})", key_.m, key_.n, key_.k);
  if (key_.kind == LtGemmKind::FP8Tensor || key_.kind == LtGemmKind::FP8Rowwise) {
    if (scale_a != scale_a_) {
      set_desc(op_, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, scale_a);
      scale_a_ = scale_a;
    }
    if (scale_b != scale_b_) {
      set_desc(op_, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, scale_b);
      scale_b_ = scale_b;
    }
  }
  if (key_.kind == LtGemmKind::INT8) {
    const int32_t alpha = 1, beta = 0;
    KQ_CUBLAS_CHECK(cublasLtMatmul(h, op_, &alpha, a, a_, b, b_, &beta, d, d_, d, d_, &algo_, workspace,
                                   workspace_bytes, stream));
  } else {
    const float alpha = 1.0f, beta = 0.0f;
    KQ_CUBLAS_CHECK(cublasLtMatmul(h, op_, &alpha, a, a_, b, b_, &beta, d, d_, d, d_, &algo_, workspace,
                                   workspace_bytes, stream));
  }
}

// ---- GpuContext -----------------------------------------------------------------
GpuContext::GpuContext(cudaStream_t stream, size_t workspace_bytes)
    : stream_(stream), device_(&current_device()), workspace_(workspace_bytes), counter_(1) {
  KQ_CUDA_CHECK(cudaMemset(counter_.data(), 0, sizeof(unsigned)));
}

LtPlan* GpuContext::plan(const LtGemmKey& key, const void* scale_a, const void* scale_b) {
  auto it = plans_.find(key);
  if (it == plans_.end())
    it = plans_.emplace(key, std::make_unique<LtPlan>(handle_.get(), key, workspace_.bytes(), scale_a, scale_b))
             .first;
  return it->second->ok() ? it->second.get() : nullptr;
}

void* GpuContext::scratch(Scratch slot, size_t bytes) {
  auto& b = scratch_[size_t(slot)];
  // Freeing a buffer the stream may still read needs the stream drained first.
  if (bytes > b.bytes()) {
    KQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    b.reserve_discard((bytes + 255) & ~size_t(255));
  }
  return b.data();
}

}  // namespace kq::cuda
