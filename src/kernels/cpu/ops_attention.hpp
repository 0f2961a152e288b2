#pragma once
// Causal multi-head attention over a KV cache, with grouped-query attention.
#include <cstdint>

namespace kq::cpu {

/// Head layout of one attention layer. Grouped-query attention (GQA, Ainslie et
/// al. 2023): num_heads % num_kv_heads == 0 and query head h reads KV head
/// h / (num_heads / num_kv_heads); num_kv_heads == num_heads is plain
/// multi-head attention (Vaswani et al. 2017).
struct AttentionDims {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

/// Floats of scratch causal_attention needs for up to `max_rows` query tokens
/// per call and up to `max_keys` cached positions, with `threads` threads.
int64_t attention_scratch_floats(const AttentionDims& dims, int64_t max_rows, int64_t max_keys, int threads);

/// Scaled dot-product attention with a causal mask, for n new tokens at
/// positions pos0 .. pos0+n−1 whose keys/values are already in the cache:
///   out_h[i] = Σ_{lo(i) <= t <= pos0+i} softmax_t(cap(scale · q_h[i]·k_g[t])) · v_g[t],   g = KV head of h,
/// cap(s) = s, or with softcap > 0 Gemma 2's tanh soft-capping softcap · tanh(s / softcap) (transformers'
/// Gemma2 eager_attention_forward: after the scaling, before the mask and the softmax; F32 std::tanh),
/// lo(i) = 0 without a window (window 0), else max(0, pos0+i − window + 1): sliding-window attention
/// (Mistral; transformers' sliding_window_causal mask, key t visible when pos0+i − window < t <= pos0+i), whose
/// keys before the window are neither read nor computed.
/// q:   query token i, head h at q + i·q_stride + h·head_dim (F32).
/// k_cache, v_cache: one layer's cache, F32 [num_kv_heads, capacity, head_dim],
///      positions 0 .. pos0+n−1 filled.
/// out: token i, head h at out + i·out_stride + h·head_dim (F32).
/// scratch: attention_scratch_floats(dims, n, pos0 + n, threads) floats.
/// Decode (few rows): for each (token, KV head) the cached K and V rows are read
/// once and used by all query heads of the group. Prefill: per query head, row
/// blocks of 64 tokens go through oneDNN sgemm (scale·Q·Kᵀ, then P·V) over only
/// the keys the block can see. Heads/blocks split over `threads`. window >= 0, softcap >= 0 (0: none). Never
/// throws.
void causal_attention(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k_cache,
                      const float* v_cache, int64_t capacity, const AttentionDims& dims, float scale,
                      float* out, int64_t out_stride, float* scratch, int threads, int64_t window = 0,
                      float softcap = 0.0f);

}  // namespace kq::cpu
