#pragma once
// Kernel launchers behind model_ops.hpp; arguments are validated by
// model_ops.cpp before these are called (n > 0, d > 0, strides large enough).
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/model_ops.hpp"

namespace kq::cuda::ops {

void embed_rows_launch(const uint16_t* table, const uint16_t* pos_table, const int32_t* tokens,
                       const int32_t* row_pos, int64_t n, int64_t d, float* x, cudaStream_t stream);
/// LayerNorm when beta != nullptr or `layer` is true (gamma = weight), else RMSNorm.
void norm_launch(bool layer, float* x, const uint16_t* add, int64_t ld_add, const float* weight, const float* beta,
                 float eps, uint16_t* out, int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream);
void add_residual_launch(float* x, const uint16_t* add, int64_t ld_add, int64_t n, int64_t d, cudaStream_t stream);
void qk_norm_launch(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
                    const float* q_weight, const float* k_weight, float eps, int64_t n, cudaStream_t stream);
void rope_launch(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
                 int rotary_dim, const float* cos, const float* sin, const int32_t* row_pos, int64_t n,
                 cudaStream_t stream);
void store_kv_launch(const uint16_t* k, int64_t ldk, const uint16_t* v, int64_t ldv, const KVLayerView& kv,
                     const int32_t* row_seq, const int32_t* row_pos, int64_t n, cudaStream_t stream);
void rope_store_kv_launch(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, const uint16_t* v,
                          int64_t ldv, const KVLayerView& kv, int rotary_dim, const float* cos, const float* sin,
                          const int32_t* row_seq, const int32_t* row_pos, int64_t n, cudaStream_t stream);
void swiglu_launch(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
                   int64_t ld_out, int64_t n, int64_t f, cudaStream_t stream);
/// The fused norm / SwiGLU + per-token quantization kernels; false (nothing
/// launched) when the shapes or alignments do not fit their register paths.
bool rms_norm_quant_launch(float* x, const uint16_t* add, int64_t ld_add, const float* weight, float eps,
                           uint16_t* out, int64_t ld_out, int64_t n, int64_t d, ActCode code, void* q,
                           int64_t ldq, float* scale, cudaStream_t stream);
bool swiglu_quant_launch(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up,
                         uint16_t* out, int64_t ld_out, int64_t n, int64_t f, ActCode code, void* q,
                         int64_t ldq, float* scale, cudaStream_t stream);
void gelu_tanh_launch(uint16_t* x, int64_t ld, int64_t n, int64_t f, cudaStream_t stream);
void geglu_launch(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
                  int64_t ld_out, int64_t n, int64_t f, bool exact, cudaStream_t stream);
void rms_norm_rows_launch(uint16_t* y, int64_t ld, const float* weight, float eps, int64_t n, int64_t d,
                          cudaStream_t stream);
void scale_rows_launch(float* x, float s, int64_t count, cudaStream_t stream);
void f32_to_bf16_launch(const float* in, uint16_t* out, int64_t count, cudaStream_t stream);
void bf16_to_f32_launch(const uint16_t* in, float* out, int64_t count, cudaStream_t stream);

/// Split-K plan of the decode attention kernel (flash-decoding).
struct DecodePlan {
  int group = 1;      ///< query heads per kv head
  int heads_per_block = 1;  ///< query heads one block handles (1, 2 or 4)
  int subs = 1;       ///< blocks per kv head (ceil(group / heads_per_block))
  int splits = 1;     ///< key-range splits per (row, kv head, sub)
  int64_t chunk = 0;  ///< keys per split
  bool cluster =
      false;  ///< the splits of one (row, kv head, sub) run as one thread-block cluster (no workspace)
};
/// The plan for n rows; max_cluster: the largest cluster the device may run
/// (0: no clusters, the workspace and combine kernel merge the splits).
DecodePlan decode_plan(int64_t n, int q_heads, int kv_heads, int64_t max_len, int max_cluster = 0);
/// Largest cluster decode_plan may use on the current device: 16 on compute
/// capability >= 9.0 (Hopper), 0 before, without a device or when KQ_ATTN_CLUSTER=0.
/// Read once per process; never throws.
int decode_cluster_limit();
/// Workspace floats the decode plan needs (0 when splits == 1).
size_t decode_workspace_floats(int64_t n, int q_heads, int head_dim, const DecodePlan& p);
/// Upper bound of decode_workspace_floats over every kv_heads dividing q_heads and max_len <= capacity.
size_t decode_workspace_bound_floats(int64_t n, int q_heads, int head_dim, int64_t capacity);

/// How an attention score q·k becomes a softmax logit in log2 units (the kernels use exp2): s · mul, or with
/// logit softcapping (Gemma 2: cap · tanh(scale · s / cap)) tanh(s · mul) · cap_mul with mul = scale / cap and
/// cap_mul = cap · log2(e). The decode kernel folds mul into q.
struct ScoreMap {
  float mul = 0;
  float cap_mul = 0;  ///< 0: no softcapping
  /// scale: the attention scale; softcap: the cap (0: none). A cap of 1e30 or more is applied as no cap:
  /// cap · tanh(x / cap) equals x in float32 for every |x| < 1e26 (the relative change is (x / cap)² / 3), while
  /// cap · log2(e) overflows float32 above 2.36e38 and scale / cap falls into the subnormals the kernels flush.
  static ScoreMap make(float scale, float softcap) {
    constexpr float kLog2e = 1.4426950408889634f;
    constexpr float kNoBend = 1e30f;
    return softcap > 0 && softcap < kNoBend ? ScoreMap{scale / softcap, softcap * kLog2e}
                                            : ScoreMap{scale * kLog2e, 0.0f};
  }
};

/// `window`: a sliding window of that many positions (0: none; model_ops.hpp's causal_attention), with the
/// plan made for at most `window` keys per row; `sm`: the scores' scale and softcapping.
void attention_decode_launch(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                             const int32_t* row_seq, const int32_t* row_pos, int64_t n, const DecodePlan& plan,
                             int window, ScoreMap sm, uint16_t* out, int64_t ldo, float* workspace,
                             cudaStream_t stream);
/// Tensor-core tiled attention (head_dim 64, 128 or 256); `window` as for the decode launch.
void attention_prefill_launch(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                              const int32_t* row_seq, const int32_t* row_pos, int64_t n, int window, ScoreMap sm,
                              uint16_t* out, int64_t ldo, cudaStream_t stream);

}  // namespace kq::cuda::ops
