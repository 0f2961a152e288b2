// Host side of the model ops (model_ops.hpp): argument checks, then the
// launchers of model_ops_*.cu. Nothing here synchronizes or allocates.
#include "kernels/cuda/model_ops.hpp"

#include <cmath>
#include <initializer_list>
#include <utility>

#include "kernels/cuda/model_ops_launch.hpp"
#include "kq/error.hpp"

namespace kq::cuda {
namespace {

void check_rows(const char* op, int64_t n, int64_t d) {
  if (n < 0 || d <= 0) raise<InvalidArgument>("{}: bad shape n={} d={}", op, n, d);
}
void check_ld(const char* op, const char* name, int64_t ld, int64_t cols) {
  if (ld < cols) raise<InvalidArgument>("{}: {} = {} is smaller than the {} columns used", op, name, ld, cols);
}
void check_ptr(const char* op, const char* name, const void* p) {
  if (!p) raise<InvalidArgument>("{}: {} is null", op, name);
}

void check_norm(const char* op, const float* x, const uint16_t* add, int64_t ld_add, const float* weight,
                uint16_t* out, int64_t ld_out, int64_t n, int64_t d) {
  check_rows(op, n, d);
  check_ptr(op, "x", x);
  check_ptr(op, "weight", weight);
  check_ptr(op, "out", out);
  check_ld(op, "ld_out", ld_out, d);
  if (add) check_ld(op, "ld_add", ld_add, d);
}

/// The checks of a gated activation (swiglu, swiglu_quantize, geglu): gate, up and out [n, ld_*] of f columns.
void check_glu(const char* op, const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up,
               const uint16_t* out, int64_t ld_out, int64_t n, int64_t f) {
  check_rows(op, n, f);
  check_ptr(op, "gate", gate);
  check_ptr(op, "up", up);
  check_ptr(op, "out", out);
  check_ld(op, "ld_gate", ld_gate, f);
  check_ld(op, "ld_up", ld_up, f);
  check_ld(op, "ld_out", ld_out, f);
}

}  // namespace

void embed_rows(const uint16_t* table, const uint16_t* pos_table, const int32_t* tokens, const int32_t* row_pos,
                int64_t n, int64_t d, float* x, cudaStream_t stream) {
  check_rows("embed_rows", n, d);
  check_ptr("embed_rows", "table", table);
  check_ptr("embed_rows", "tokens", tokens);
  check_ptr("embed_rows", "x", x);
  if (pos_table) check_ptr("embed_rows", "row_pos", row_pos);
  if (n == 0) return;
  ops::embed_rows_launch(table, pos_table, tokens, row_pos, n, d, x, stream);
}

void rms_norm(float* x, const uint16_t* add, int64_t ld_add, const float* weight, float eps, uint16_t* out,
              int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream) {
  check_norm("rms_norm", x, add, ld_add, weight, out, ld_out, n, d);
  if (n == 0) return;
  ops::norm_launch(false, x, add, ld_add, weight, nullptr, eps, out, ld_out, n, d, stream);
}

bool rms_norm_quantize(float* x, const uint16_t* add, int64_t ld_add, const float* weight, float eps,
                       uint16_t* out, int64_t ld_out, int64_t n, int64_t d, ActCode code, void* q,
                       int64_t ldq, float* scale, cudaStream_t stream) {
  check_norm("rms_norm_quantize", x, add, ld_add, weight, out, ld_out, n, d);
  check_ptr("rms_norm_quantize", "q", q);
  check_ptr("rms_norm_quantize", "scale", scale);
  if (n == 0) return true;
  return ops::rms_norm_quant_launch(x, add, ld_add, weight, eps, out, ld_out, n, d, code, q, ldq, scale,
                                    stream);
}

void layer_norm(float* x, const uint16_t* add, int64_t ld_add, const float* gamma, const float* beta, float eps,
                uint16_t* out, int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream) {
  check_norm("layer_norm", x, add, ld_add, gamma, out, ld_out, n, d);
  check_ptr("layer_norm", "beta", beta);
  if (n == 0) return;
  ops::norm_launch(true, x, add, ld_add, gamma, beta, eps, out, ld_out, n, d, stream);
}

void add_residual(float* x, const uint16_t* add, int64_t ld_add, int64_t n, int64_t d, cudaStream_t stream) {
  check_rows("add_residual", n, d);
  check_ptr("add_residual", "x", x);
  check_ptr("add_residual", "add", add);
  check_ld("add_residual", "ld_add", ld_add, d);
  if (n == 0) return;
  ops::add_residual_launch(x, add, ld_add, n, d, stream);
}

void qk_norm(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
             const float* q_weight, const float* k_weight, float eps, int64_t n, cudaStream_t stream) {
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 256)
    raise<InvalidArgument>("qk_norm: head_dim {} must be even, positive and at most 256", head_dim);
  if (q_heads < 0 || (k && k_heads < 0)) raise<InvalidArgument>("qk_norm: negative head count");
  check_rows("qk_norm", n, head_dim);
  check_ptr("qk_norm", "q", q);
  check_ptr("qk_norm", "q_weight", q_weight);
  check_ld("qk_norm", "ldq", ldq, int64_t(q_heads) * head_dim);
  if (!k) k_heads = 0;
  if (k) {
    check_ptr("qk_norm", "k_weight", k_weight);
    check_ld("qk_norm", "ldk", ldk, int64_t(k_heads) * head_dim);
  }
  if (n == 0 || q_heads + k_heads == 0) return;
  ops::qk_norm_launch(q, ldq, q_heads, k, ldk, k_heads, head_dim, q_weight, k_weight, eps, n, stream);
}

namespace {
/// rotary_dim (0: head_dim) checked against head_dim; the rotated dimensions.
int checked_rotary_dim(const char* op, int head_dim, int rotary_dim) {
  const int rd = rotary_dim == 0 ? head_dim : rotary_dim;
  if (rd < 2 || rd > head_dim || rd % 2 != 0)
    raise<InvalidArgument>("{}: rotary_dim {} must be even and in [2, head_dim = {}]", op, rotary_dim, head_dim);
  return rd;
}
}  // namespace

void rope(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
          const float* cos, const float* sin, const int32_t* row_pos, int64_t n, cudaStream_t stream,
          int rotary_dim) {
  if (head_dim <= 0 || head_dim % 2 != 0) raise<InvalidArgument>("rope: head_dim {} must be even and positive", head_dim);
  const int rd = checked_rotary_dim("rope", head_dim, rotary_dim);
  if (q_heads < 0 || (k && k_heads < 0)) raise<InvalidArgument>("rope: negative head count");
  check_rows("rope", n, head_dim);
  check_ptr("rope", "q", q);
  check_ptr("rope", "cos", cos);
  check_ptr("rope", "sin", sin);
  check_ptr("rope", "row_pos", row_pos);
  check_ld("rope", "ldq", ldq, int64_t(q_heads) * head_dim);
  if (!k) k_heads = 0;
  if (k) check_ld("rope", "ldk", ldk, int64_t(k_heads) * head_dim);
  if (n == 0 || q_heads + k_heads == 0) return;
  ops::rope_launch(q, ldq, q_heads, k, ldk, k_heads, head_dim, rd, cos, sin, row_pos, n, stream);
}

namespace {
void check_kv(const char* op, const KVLayerView& kv) {
  if (!kv.k || !kv.v) raise<InvalidArgument>("{}: KV cache pointer arrays are null", op);
  if (kv.kv_heads <= 0 || kv.head_dim <= 0 || kv.capacity <= 0)
    raise<InvalidArgument>("{}: bad KV cache view kv_heads={} head_dim={} capacity={}", op, kv.kv_heads,
                           kv.head_dim, kv.capacity);
}
}  // namespace

void store_kv(const uint16_t* k, int64_t ldk, const uint16_t* v, int64_t ldv, const KVLayerView& kv,
              const int32_t* row_seq, const int32_t* row_pos, int64_t n, cudaStream_t stream) {
  check_kv("store_kv", kv);
  check_rows("store_kv", n, kv.head_dim);
  check_ptr("store_kv", "k", k);
  check_ptr("store_kv", "v", v);
  check_ptr("store_kv", "row_seq", row_seq);
  check_ptr("store_kv", "row_pos", row_pos);
  const int64_t cols = int64_t(kv.kv_heads) * kv.head_dim;
  check_ld("store_kv", "ldk", ldk, cols);
  check_ld("store_kv", "ldv", ldv, cols);
  if (n == 0) return;
  ops::store_kv_launch(k, ldk, v, ldv, kv, row_seq, row_pos, n, stream);
}

void rope_store_kv(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, const uint16_t* v, int64_t ldv,
                   const KVLayerView& kv, const float* cos, const float* sin, const int32_t* row_seq,
                   const int32_t* row_pos, int64_t n, cudaStream_t stream, int rotary_dim) {
  check_kv("rope_store_kv", kv);
  const int head_dim = kv.head_dim;
  if (head_dim % 2 != 0) raise<InvalidArgument>("rope_store_kv: head_dim {} must be even", head_dim);
  const int rd = checked_rotary_dim("rope_store_kv", head_dim, rotary_dim);
  if (q_heads < 0) raise<InvalidArgument>("rope_store_kv: negative head count");
  check_rows("rope_store_kv", n, head_dim);
  for (const auto& [name, ptr] : {std::pair<const char*, const void*>{"q", q}, {"k", k}, {"v", v}, {"cos", cos},
                                  {"sin", sin}, {"row_seq", row_seq}, {"row_pos", row_pos}})
    check_ptr("rope_store_kv", name, ptr);
  const int64_t cols = int64_t(kv.kv_heads) * head_dim;
  check_ld("rope_store_kv", "ldq", ldq, int64_t(q_heads) * head_dim);
  check_ld("rope_store_kv", "ldk", ldk, cols);
  check_ld("rope_store_kv", "ldv", ldv, cols);
  if (n == 0) return;
  ops::rope_store_kv_launch(q, ldq, q_heads, k, ldk, v, ldv, kv, rd, cos, sin, row_seq, row_pos, n, stream);
}

size_t attention_workspace_bytes(int64_t n, int q_heads, int head_dim, int64_t capacity) {
  if (n <= 0 || q_heads <= 0 || head_dim <= 0 || capacity <= 0) return 0;
  return ops::decode_workspace_bound_floats(n, q_heads, head_dim, capacity) * sizeof(float);
}

void causal_attention(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv, const int32_t* row_seq,
                      const int32_t* row_pos, int64_t n, int64_t max_len, float scale, uint16_t* out, int64_t ldo,
                      void* workspace, cudaStream_t stream) {
  causal_attention(q, ldq, q_heads, kv, row_seq, row_pos, n, max_len, scale, out, ldo, workspace, stream,
                   AttentionPath::Auto);
}

void causal_attention(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv, const int32_t* row_seq,
                      const int32_t* row_pos, int64_t n, int64_t max_len, float scale, uint16_t* out, int64_t ldo,
                      void* workspace, cudaStream_t stream, AttentionPath path, int64_t window, float softcap) {
  const char* op = "causal_attention";
  check_kv(op, kv);
  const int hd = kv.head_dim;
  if (hd != 32 && hd != 64 && hd != 128 && hd != 256)
    raise<Unsupported>("{}: head_dim {} is not supported (32, 64, 128 or 256)", op, hd);
  if (q_heads <= 0 || q_heads % kv.kv_heads != 0)
    raise<InvalidArgument>("{}: q_heads {} is not a positive multiple of kv_heads {}", op, q_heads, kv.kv_heads);
  if (n < 0) raise<InvalidArgument>("{}: n = {} is negative", op, n);
  if (n == 0) return;
  if (max_len < 1 || max_len > kv.capacity)
    raise<InvalidArgument>("{}: max_len {} outside 1..capacity ({})", op, max_len, kv.capacity);
  if (window < 0) raise<InvalidArgument>("{}: window {} is negative (0: none)", op, window);
  if (!std::isfinite(softcap) || softcap < 0)
    raise<InvalidArgument>("{}: softcap {} is not a finite value >= 0 (0: none)", op, softcap);
  const ops::ScoreMap sm = ops::ScoreMap::make(scale, softcap);
  // A window at least max_len long hides no key of any row: plain causal attention.
  const int w = window > 0 && window < max_len ? int(window) : 0;
  check_ptr(op, "q", q);
  check_ptr(op, "out", out);
  check_ptr(op, "row_seq", row_seq);
  check_ptr(op, "row_pos", row_pos);
  check_ld(op, "ldq", ldq, int64_t(q_heads) * hd);
  check_ld(op, "ldo", ldo, int64_t(q_heads) * hd);
  const bool tiles_ok = hd == 64 || hd == 128 || hd == 256;
  const bool prefill = tiles_ok && (path == AttentionPath::Prefill || (path == AttentionPath::Auto && n > 16));
  if (prefill) {
    ops::attention_prefill_launch(q, ldq, q_heads, kv, row_seq, row_pos, n, w, sm, out, ldo, stream);
    return;
  }
  // Each row's keys are at most the window: the plan's splits serve that many.
  const ops::DecodePlan plan =
      ops::decode_plan(n, q_heads, kv.kv_heads, w > 0 ? int64_t(w) : max_len, ops::decode_cluster_limit());
  if (ops::decode_workspace_floats(n, q_heads, hd, plan) > 0 && !workspace)
    raise<InvalidArgument>("{}: workspace is null but {} bytes are needed (attention_workspace_bytes)", op,
                           ops::decode_workspace_floats(n, q_heads, hd, plan) * sizeof(float));
  ops::attention_decode_launch(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, w, sm, out, ldo,
                               static_cast<float*>(workspace), stream);
}

void swiglu(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out, int64_t ld_out,
            int64_t n, int64_t f, cudaStream_t stream) {
  check_glu("swiglu", gate, ld_gate, up, ld_up, out, ld_out, n, f);
  if (n == 0) return;
  ops::swiglu_launch(gate, ld_gate, up, ld_up, out, ld_out, n, f, stream);
}

bool swiglu_quantize(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
                     int64_t ld_out, int64_t n, int64_t f, ActCode code, void* q, int64_t ldq, float* scale,
                     cudaStream_t stream) {
  check_glu("swiglu_quantize", gate, ld_gate, up, ld_up, out, ld_out, n, f);
  check_ptr("swiglu_quantize", "q", q);
  check_ptr("swiglu_quantize", "scale", scale);
  if (n == 0) return true;
  return ops::swiglu_quant_launch(gate, ld_gate, up, ld_up, out, ld_out, n, f, code, q, ldq, scale, stream);
}

void gelu_tanh_inplace(uint16_t* x, int64_t ld, int64_t n, int64_t f, cudaStream_t stream) {
  check_rows("gelu_tanh_inplace", n, f);
  check_ptr("gelu_tanh_inplace", "x", x);
  check_ld("gelu_tanh_inplace", "ld", ld, f);
  if (n == 0) return;
  ops::gelu_tanh_launch(x, ld, n, f, stream);
}

void geglu(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out, int64_t ld_out,
           int64_t n, int64_t f, bool exact, cudaStream_t stream) {
  check_glu("geglu", gate, ld_gate, up, ld_up, out, ld_out, n, f);
  if (n == 0) return;
  ops::geglu_launch(gate, ld_gate, up, ld_up, out, ld_out, n, f, exact, stream);
}

void rms_norm_rows(uint16_t* y, int64_t ld, const float* weight, float eps, int64_t n, int64_t d,
                   cudaStream_t stream) {
  check_rows("rms_norm_rows", n, d);
  check_ptr("rms_norm_rows", "y", y);
  check_ptr("rms_norm_rows", "weight", weight);
  check_ld("rms_norm_rows", "ld", ld, d);
  if (n == 0) return;
  ops::rms_norm_rows_launch(y, ld, weight, eps, n, d, stream);
}

void scale_rows(float* x, float s, int64_t n, int64_t d, cudaStream_t stream) {
  check_rows("scale_rows", n, d);
  check_ptr("scale_rows", "x", x);
  if (n == 0) return;
  ops::scale_rows_launch(x, s, n * d, stream);
}

void f32_to_bf16(const float* in, uint16_t* out, int64_t count, cudaStream_t stream) {
  if (count < 0) raise<InvalidArgument>("f32_to_bf16: count {} is negative", count);
  if (count == 0) return;
  check_ptr("f32_to_bf16", "in", in);
  check_ptr("f32_to_bf16", "out", out);
  ops::f32_to_bf16_launch(in, out, count, stream);
}

void bf16_to_f32(const uint16_t* in, float* out, int64_t count, cudaStream_t stream) {
  if (count < 0) raise<InvalidArgument>("bf16_to_f32: count {} is negative", count);
  if (count == 0) return;
  check_ptr("bf16_to_f32", "in", in);
  check_ptr("bf16_to_f32", "out", out);
  ops::bf16_to_f32_launch(in, out, count, stream);
}

}  // namespace kq::cuda
