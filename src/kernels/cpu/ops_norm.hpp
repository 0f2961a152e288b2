#pragma once
// Normalization layers over the last dimension of row-major [n, d] activations.
#include <cstdint>

namespace kq::cpu {

/// LayerNorm (Ba, Kiros & Hinton 2016), as torch.nn.LayerNorm (biased variance):
/// y[i,:] = (x[i,:] − mean) / sqrt(var + eps) · gamma + beta.
/// x, y: F32 [n, d] (may alias); gamma, beta: F32 [d]. Mean and variance are
/// accumulated in double. Rows split over `threads`. Never throws.
void layer_norm(const float* x, int64_t n, int64_t d, const float* gamma, const float* beta, float eps,
                float* y, int threads);

/// RMSNorm (Zhang & Sennrich 2019), as Llama's LlamaRMSNorm:
/// y[i,:] = x[i,:] / sqrt(mean(x[i,:]²) + eps) · gamma.
/// x, y: F32 [n, d] (may alias); gamma: F32 [d]. Never throws.
void rms_norm(const float* x, int64_t n, int64_t d, const float* gamma, float eps, float* y, int threads);

}  // namespace kq::cpu
