#pragma once
// Element-wise activations of the feed-forward blocks.
#include <cstdint>

namespace kq::cpu {

/// GELU, tanh approximation ("gelu_new" in GPT-2; Hendrycks & Gimpel 2016):
/// x ← 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). In place over n floats.
void gelu_new_inplace(float* x, int64_t n, int threads);

/// GELU, exact form x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (Hendrycks & Gimpel 2016;
/// config activation "gelu"). In place over n floats.
void gelu_erf_inplace(float* x, int64_t n, int threads);

/// SiLU / swish (Elfwing et al. 2018; Ramachandran et al. 2017): x ← x·σ(x). In place.
void silu_inplace(float* x, int64_t n, int threads);

/// SwiGLU gating (Shazeer 2020, as in Llama's MLP): gate ← silu(gate) · up,
/// n floats each. Never throws.
void swiglu_inplace(float* gate, const float* up, int64_t n, int threads);

/// GeGLU gating (Shazeer 2020, as in Gemma's MLP): gate ← GELU(gate) · up, n floats each; GELU is the tanh
/// approximation (gelu_new_inplace's), or the exact erf form when `exact`. Never throws.
void geglu_inplace(float* gate, const float* up, int64_t n, bool exact, int threads);

}  // namespace kq::cpu
