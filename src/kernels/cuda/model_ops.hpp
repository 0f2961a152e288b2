#pragma once
// The non-linear transformer ops on the GPU (everything of a decoder block
// except the Linear projections): token/position embedding, RMSNorm and
// LayerNorm (optionally fused with the residual add), rotary embeddings,
// KV-cache writes, causal attention over the KV cache (prefill and batched
// decode, grouped-query heads sharing K/V reads), SwiGLU, GELU (tanh), and
// dtype conversions.
//
// Conventions shared by every function here:
//  * All pointers are device pointers; work is enqueued on `stream`; nothing
//    synchronizes, allocates or copies to the host, so every op can be
//    captured in a CUDA graph. Launch errors throw kq::Error.
//  * BF16 tensors are uint16_t bits; arithmetic is FP32, results rounded to
//    nearest even once when stored as BF16.
//  * The residual stream x is F32 [n, d] row-major; activations handed to and
//    from Linear ops (normed inputs, q/k/v, attention output, MLP
//    intermediates) are BF16 row-major with the given row stride (ld*).
//  * Per-row metadata lives in device memory so a captured graph can be
//    replayed for the next step after a cudaMemcpyAsync of new values:
//    row_pos[r] = position of row r in its sequence, row_seq[r] = index of
//    the sequence (KV cache) row r belongs to. A prefill chunk of one
//    sequence has row_seq = 0 and row_pos = pos0 .. pos0+n-1; a batched
//    decode step has one row per sequence.
//  * KV caches are BF16; each sequence's cache holds, per layer, keys and
//    values each [kv_heads, capacity, head_dim] (the CPU KVCache layout).
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/act_code.hpp"

namespace kq::cuda {

/// Where the KV caches of the sequences of one step live, for one layer:
/// sequence s's keys of this layer start at k[s], its values at v[s]
/// (device arrays of device pointers, [num_seqs]); within one cache,
/// element (head h, position p, dim i) is at h·capacity·head_dim + p·head_dim + i.
struct KVLayerView {
  uint16_t* const* k = nullptr;
  uint16_t* const* v = nullptr;
  int64_t capacity = 0;  ///< positions each cache holds
  int kv_heads = 0;
  int head_dim = 0;
};

/// x[r, :] = table[tokens[r], :] (+ pos_table[row_pos[r], :] when pos_table is
/// not null: GPT-2's learned position embedding). table: BF16 [vocab, d];
/// pos_table: BF16 [max_positions, d] or nullptr; tokens, row_pos: int32 [n];
/// x: F32 [n, d]. Token ids are validated on the host before upload.
void embed_rows(const uint16_t* table, const uint16_t* pos_table, const int32_t* tokens, const int32_t* row_pos,
                int64_t n, int64_t d, float* x, cudaStream_t stream);

/// RMSNorm (Zhang & Sennrich 2019, as in Llama): out[r, :] = BF16(x[r, :] /
/// sqrt(mean(x[r, :]²) + eps) · weight). When `add` is not null, first
/// x[r, :] += add[r, :] (the residual connection, written back to x), so one
/// launch does "x += sublayer output; h = norm(x)". x: F32 [n, d]; add: BF16
/// [n, ld_add] or nullptr; weight: F32 [d]; out: BF16 [n, ld_out].
void rms_norm(float* x, const uint16_t* add, int64_t ld_add, const float* weight, float eps, uint16_t* out,
              int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream);

/// rms_norm whose BF16 output row is also quantized per token for a W8A8
/// linear, in the same kernel: q [n, ldq] gets the `code` codes (E4M3 or
/// INT8 bytes, zero in columns [d, ldq)) and scale FP32 [n] the per-token
/// scales, bit for bit what quantize_rows_fp8 / quantize_rows_int8
/// (w8a8_kernels.hpp) would write from `out`. Returns false with nothing
/// launched when the row does not fit the register kernel (d % 4 != 0, d >
/// 16384, unaligned pointers or strides, ldq < d or ldq % 4 != 0): then call
/// rms_norm and let the linear quantize. Throws InvalidArgument as rms_norm
/// and for a null q or scale.
bool rms_norm_quantize(float* x, const uint16_t* add, int64_t ld_add, const float* weight, float eps,
                       uint16_t* out, int64_t ld_out, int64_t n, int64_t d, ActCode code, void* q,
                       int64_t ldq, float* scale, cudaStream_t stream);

/// LayerNorm (Ba et al. 2016, as in GPT-2): out = BF16((x − mean) / sqrt(var +
/// eps) · gamma + beta), population variance; optional fused residual add as
/// rms_norm. gamma, beta: F32 [d].
void layer_norm(float* x, const uint16_t* add, int64_t ld_add, const float* gamma, const float* beta, float eps,
                uint16_t* out, int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream);

/// x[r, :] += add[r, :] (residual add without a norm, e.g. after the last
/// block when no logits are wanted). x: F32 [n, d]; add: BF16 [n, ld_add].
void add_residual(float* x, const uint16_t* add, int64_t ld_add, int64_t n, int64_t d, cudaStream_t stream);

/// Per-head RMSNorm in place (Qwen3's q_norm / k_norm, before RoPE): each
/// head vector v (head_dim values) of q and k becomes BF16(v / sqrt(mean(v²)
/// + eps) · w), w = q_weight for q's heads, k_weight for k's. q: BF16 [n,
/// ldq] holding q_heads heads of head_dim; k: BF16 [n, ldk] holding k_heads
/// heads (k may be null); q_weight, k_weight: F32 [head_dim]; head_dim even
/// and at most 256. One warp per (row, head), holding the head in registers.
/// Throws InvalidArgument for a bad shape, stride or pointer.
void qk_norm(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
             const float* q_weight, const float* k_weight, float eps, int64_t n, cudaStream_t stream);
/// Rotary position embedding (Su et al. 2021), rotate_half convention of
/// Hugging Face Llama: for each head and i < rd/2 (rd = rotary_dim, 0: head_dim),
/// with c = cos[p, i], s = sin[p, i], p = row_pos[r]: (a, b) = (x[i], x[i + rd/2]) →
/// (a·c − b·s, b·c + a·s); dimensions rd.. of each head are left as they are
/// (Phi-3's partial_rotary_factor). q: BF16 [n, ldq] holding q_heads heads of
/// head_dim; k: BF16 [n, ldk] holding k_heads heads (k may be null).
/// cos, sin: F32 [max_positions, rd/2]. Throws InvalidArgument for an odd
/// head_dim or a rotary_dim that is odd or outside [2, head_dim].
void rope(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
          const float* cos, const float* sin, const int32_t* row_pos, int64_t n, cudaStream_t stream,
          int rotary_dim = 0);

/// Writes the keys and values of n rows into the caches: for row r, head h,
/// cache row_seq[r] at position row_pos[r]. k, v: BF16 [n, ldk] / [n, ldv]
/// with kv_heads·head_dim values per row (heads adjacent).
void store_kv(const uint16_t* k, int64_t ldk, const uint16_t* v, int64_t ldv, const KVLayerView& kv,
              const int32_t* row_seq, const int32_t* row_pos, int64_t n, cudaStream_t stream);

/// rope(q, k) then store_kv(k, v) in one kernel (one launch per decode layer
/// instead of two): q and k rotated in place, the rotated keys and the values
/// written to the caches. k holds kv.kv_heads heads of kv.head_dim; the same
/// results and errors as the two calls (rotary_dim as for rope).
void rope_store_kv(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, const uint16_t* v, int64_t ldv,
                   const KVLayerView& kv, const float* cos, const float* sin, const int32_t* row_seq,
                   const int32_t* row_pos, int64_t n, cudaStream_t stream, int rotary_dim = 0);

/// Which attention kernel causal_attention runs.
///  * Decode: flash-decoding (one block per row, kv head and key split, then
///    a combine pass when split); efficient whenever rows belong to different
///    sequences (batched decode) or there are few rows. Any head_dim in
///    {64, 128, 256}.
///  * Prefill: FlashAttention-2 style tiles of 64 query rows × 64 keys on the
///    tensor cores; efficient for many consecutive rows of one sequence (a
///    prefill chunk); rows of several sequences in one tile cost one pass
///    over the keys per sequence. head_dim 64, 128 or 256 (else Decode is used).
///  * Auto: Prefill when n > 16 and head_dim is 64, 128 or 256, else Decode.
///    A batched decode step of more than 16 sequences should ask for Decode.
enum class AttentionPath { Auto, Decode, Prefill };

/// Scratch bytes causal_attention needs for n rows of q_heads heads with
/// caches of `capacity` positions (split-K partial results); 0 is allowed
/// when it needs none.
size_t attention_workspace_bytes(int64_t n, int q_heads, int head_dim, int64_t capacity);

/// Causal scaled-dot-product attention over the KV caches: for row r and
/// query head h (kv head h / (q_heads / kv_heads), grouped-query attention
/// reading each K/V row once for the whole group where possible),
/// out[r, h] = Σ_{lo ≤ p ≤ row_pos[r]} softmax_p(scale · q[r, h] · K[p]) · V[p],
/// with K, V of cache row_seq[r]; lo = 0, or with a sliding window (window >
/// 0: Mistral; transformers' sliding_window_causal mask) lo = max(0,
/// row_pos[r] − window + 1): the keys before it are not read (the decode
/// kernel splits only [lo, row_pos[r]] over its key splits, the prefill
/// kernel skips the key tiles before every row's window and masks the
/// partial one). The rows' own keys/values must already be
/// stored (store_kv). q: BF16 [n, ldq]; out: BF16 [n, ldo]; FP32 softmax
/// and accumulation. workspace: attention_workspace_bytes(...) bytes.
/// max_len: an upper bound of row_pos[r] + 1 over the rows, known on the host
/// (it sizes the launch; rows read their true length from row_pos).
/// Requirements: head_dim 32, 64, 128 or 256 (32 and 256: decode kernel only); q_heads a multiple of kv_heads;
/// 1 <= max_len <= capacity; ldq, ldo >= q_heads·head_dim; every cache
/// pointer 16-byte aligned (K/V rows are read with 16-byte loads); window >= 0
/// (0: none). Throws kq::InvalidArgument (naming the argument) otherwise, or
/// when the workspace is null but needed. Uses AttentionPath::Auto.
void causal_attention(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                      const int32_t* row_seq, const int32_t* row_pos, int64_t n, int64_t max_len, float scale,
                      uint16_t* out, int64_t ldo, void* workspace, cudaStream_t stream);
/// As above with the kernel chosen explicitly (results agree to rounding), a
/// sliding window of `window` positions (0: none) and attention logit
/// softcapping (Gemma 2's attn_logit_softcapping; 0: none): each score
/// scale · q · K[p] becomes softcap · tanh(scale · q · K[p] / softcap) before
/// the softmax. Throws InvalidArgument for a negative or non-finite softcap.
void causal_attention(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                      const int32_t* row_seq, const int32_t* row_pos, int64_t n, int64_t max_len, float scale,
                      uint16_t* out, int64_t ldo, void* workspace, cudaStream_t stream, AttentionPath path,
                      int64_t window = 0, float softcap = 0);

/// SwiGLU (Shazeer 2020, Llama MLP): out[r, j] = BF16(silu(gate[r, j]) · up[r, j]),
/// silu(g) = g / (1 + e^−g). gate, up, out: BF16 [n, ld] with f columns used;
/// out may alias gate.
void swiglu(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
            int64_t ld_out, int64_t n, int64_t f, cudaStream_t stream);

/// swiglu whose output is also quantized per token for a W8A8 linear, as
/// rms_norm_quantize (q [n, ldq], scale [n], the same codes quantize_rows_*
/// would give from `out`). Returns false with nothing launched unless f % 8
/// == 0, f <= 16384, the BF16 rows are 16-byte aligned (pointers and strides
/// in elements multiples of 8) and ldq >= f is a multiple of 8. Throws as swiglu.
bool swiglu_quantize(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
                     int64_t ld_out, int64_t n, int64_t f, ActCode code, void* q, int64_t ldq, float* scale,
                     cudaStream_t stream);

/// GELU, tanh approximation (GPT-2's gelu_new), in place on BF16 [n, ld] (f columns).
void gelu_tanh_inplace(uint16_t* x, int64_t ld, int64_t n, int64_t f, cudaStream_t stream);

/// GeGLU (Shazeer 2020; Gemma's MLP): out[r, c] = BF16(GELU(gate[r, c]) · up[r, c]) in F32, GELU the tanh
/// approximation (gelu_pytorch_tanh) or, with `exact`, the erf form. gate, up, out: BF16 [n, ld_*] (f columns;
/// out may alias gate). Throws InvalidArgument as swiglu.
void geglu(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out, int64_t ld_out,
           int64_t n, int64_t f, bool exact, cudaStream_t stream);

/// RMSNorm of BF16 rows in place (Gemma's post_attention_layernorm / post_feedforward_layernorm on a
/// sub-layer's output before its residual add): y[r, :] = BF16(y[r, :] / sqrt(mean(y[r, :]²) + eps) · weight),
/// the sum in F32. y: BF16 [n, ld] (d columns); weight: F32 [d]. Throws InvalidArgument for a bad shape,
/// stride or pointer.
void rms_norm_rows(uint16_t* y, int64_t ld, const float* weight, float eps, int64_t n, int64_t d,
                   cudaStream_t stream);

/// x[r, :] *= s for the n rows of the F32 residual stream x [n, d] (Gemma's embedding scale sqrt(hidden)).
/// Throws InvalidArgument for a bad shape or a null x.
void scale_rows(float* x, float s, int64_t n, int64_t d, cudaStream_t stream);

/// F32 → BF16 (round to nearest even) and BF16 → F32, count elements.
void f32_to_bf16(const float* in, uint16_t* out, int64_t count, cudaStream_t stream);
void bf16_to_f32(const uint16_t* in, float* out, int64_t count, cudaStream_t stream);

}  // namespace kq::cuda
