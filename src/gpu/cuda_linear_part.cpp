// CudaLinearPart: one output range of a fused CudaLinear (fuse_cuda_linears).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "gpu/cuda_linear.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kq/error.hpp"

namespace kq::gpu {

CudaLinearPart::CudaLinearPart(std::shared_ptr<const CudaLinear> whole, int64_t col0, int64_t n, size_t bytes)
    : whole_(std::move(whole)), col0_(col0), n_(n), bytes_(bytes) {
  if (!whole_ || col0 < 0 || n < 1 || col0 + n > whole_->out_features())
    raise<InvalidArgument>("CudaLinearPart: columns [{}, {}) outside the fused op's {} outputs", col0, col0 + n,
                           whole_ ? whole_->out_features() : 0);
}

Tensor CudaLinearPart::dequantized_weight() const {
  const Tensor all = whole_->dequantized_weight();  // F32 [N, K]
  const int64_t K = in_features();
  Tensor t = Tensor::empty(DType::F32, {n_, K});
  std::memcpy(t.mutable_data<float>(), all.data<float>() + col0_ * K, size_t(n_ * K) * sizeof(float));
  return t;
}

Tensor CudaLinearPart::bias() const {
  const Tensor all = whole_->bias();
  if (!all.defined()) return {};
  Tensor t = Tensor::empty(DType::F32, {n_});
  std::copy_n(all.data<float>() + col0_, n_, t.mutable_data<float>());
  return t;
}

void CudaLinearPart::forward_device(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                                    int64_t ldy) const {
  if (M < 1 || ldy < n_)
    raise<InvalidArgument>("CudaLinearPart ({}, [{}, {}]): forward_device with M = {}, ldy = {}", format(), n_,
                           in_features(), M, ldy);
  const int64_t N = whole_->out_features();
  scratch_.reserve_discard(size_t(M * N));
  whole_->forward_device(ctx, x, ldx, M, scratch_.data(), N);
  KQ_CUDA_CHECK(cudaMemcpy2DAsync(y, size_t(ldy) * 2, scratch_.data() + col0_, size_t(N) * 2, size_t(n_) * 2,
                                  size_t(M), cudaMemcpyDeviceToDevice, ctx.stream()));
}

}  // namespace kq::gpu
