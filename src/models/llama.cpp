// Llama (Touvron et al. 2023): RMSNorm pre-norm blocks, rotary position
// embeddings (rotate_half convention), grouped-query attention, SwiGLU MLP.
// Weights follow transformers' LlamaForCausalLM.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops_activation.hpp"
#include "kernels/cpu/ops_attention.hpp"
#include "kernels/cpu/ops_norm.hpp"
#include "kernels/cpu/ops_rope.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "models/common.hpp"

namespace kq::models {
namespace {

struct LlamaBlock {
  Tensor input_norm;                  // F32 [d]
  std::unique_ptr<Linear> q_proj;     // [heads·hd, d]
  std::unique_ptr<Linear> k_proj;     // [kv_heads·hd, d]
  std::unique_ptr<Linear> v_proj;     // [kv_heads·hd, d]
  std::unique_ptr<Linear> o_proj;     // [d, heads·hd]
  Tensor post_attention_norm;         // F32 [d]
  std::unique_ptr<Linear> gate_proj;  // [ffn, d]
  std::unique_ptr<Linear> up_proj;    // [ffn, d]
  std::unique_ptr<Linear> down_proj;  // [d, ffn]
};

class LlamaModel final : public Model {
 public:
  LlamaModel(const ModelConfig& c, WeightSource& w, const ExecContext& ctx, const std::filesystem::path& dir);

 protected:
  void forward_chunk(std::span<const int32_t> tokens, KVCache& cache, float* logits, bool last_only) override;

 private:
  Tensor embed_;  // F32 [vocab, d]
  std::vector<LlamaBlock> blocks_;
  Tensor norm_;                      // F32 [d]
  std::unique_ptr<Linear> lm_head_;  // [vocab, d]; shares embed_ when tied
  cpu::RopeTable rope_;              // cos/sin [max_positions, hd/2]
  // Scratch, rows = tokens of one chunk.
  Scratch x_, h_, q_, k_, v_, att_, gate_, up_, attn_;
};

LlamaModel::LlamaModel(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                       const std::filesystem::path& dir)
    : Model(c, ctx, dir), rope_(cpu::make_rope_table(c.rope_theta, c.head_dim, c.max_positions)) {
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;

  embed_ = w.get("model.embed_tokens.weight", {c.vocab_size, d}, Init::Weight);
  register_parameter(embed_);
  blocks_.resize(size_t(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LlamaBlock& b = blocks_[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto linear = [&](const std::string& m, int64_t out, int64_t in, bool bias) -> std::unique_ptr<Linear> {
      if (auto q = w.quantized_linear(p + m, p + m, out, in)) return q;
      return make_linear_f32(w.get(p + m + ".weight", {out, in}, Init::Weight),
                             bias ? w.get(p + m + ".bias", {out}, Init::Zeros) : Tensor());
    };
    b.input_norm = w.get(p + "input_layernorm.weight", {d}, Init::Ones);
    b.q_proj = linear("self_attn.q_proj", q_dim, d, c.attention_bias);
    b.k_proj = linear("self_attn.k_proj", kv_dim, d, c.attention_bias);
    b.v_proj = linear("self_attn.v_proj", kv_dim, d, c.attention_bias);
    b.o_proj = linear("self_attn.o_proj", d, q_dim, c.attention_bias);
    b.post_attention_norm = w.get(p + "post_attention_layernorm.weight", {d}, Init::Ones);
    b.gate_proj = linear("mlp.gate_proj", ffn, d, c.mlp_bias);
    b.up_proj = linear("mlp.up_proj", ffn, d, c.mlp_bias);
    b.down_proj = linear("mlp.down_proj", d, ffn, c.mlp_bias);
    register_parameter(b.input_norm);
    register_parameter(b.post_attention_norm);
    register_linear(p + "self_attn.q_proj", &b.q_proj);
    register_linear(p + "self_attn.k_proj", &b.k_proj);
    register_linear(p + "self_attn.v_proj", &b.v_proj);
    register_linear(p + "self_attn.o_proj", &b.o_proj);
    register_linear(p + "mlp.gate_proj", &b.gate_proj);
    register_linear(p + "mlp.up_proj", &b.up_proj);
    register_linear(p + "mlp.down_proj", &b.down_proj);
  }
  norm_ = w.get("model.norm.weight", {d}, Init::Ones);
  register_parameter(norm_);
  lm_head_ = w.quantized_linear("lm_head", "lm_head", c.vocab_size, d);
  if (!lm_head_)
    lm_head_ = c.tie_word_embeddings
                   ? make_linear_f32(embed_)
                   : make_linear_f32(w.get("lm_head.weight", {c.vocab_size, d}, Init::Weight));
  register_linear("lm_head", &lm_head_, /*is_lm_head=*/true);
  set_disk_weight_bytes(w.disk_bytes());
}

void LlamaModel::forward_chunk(std::span<const int32_t> tokens, KVCache& cache, float* logits,
                               bool last_only) {
  const ModelConfig& c = config();
  const ExecContext& ctx = context();
  const int threads = resolve_threads(ctx.threads);
  const int64_t n = int64_t(tokens.size()), pos0 = cache.size();
  const int64_t d = c.hidden_size, ffn = c.intermediate_size, rows = chunk_rows(c.max_positions);
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  const float eps = float(c.norm_eps);
  const cpu::AttentionDims dims{c.num_heads, c.num_kv_heads, c.head_dim};
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  float* x = x_.get(size_t(rows * d));          // residual stream [n, d]
  float* h = h_.get(size_t(rows * d));          // normed input / block output [n, d]
  float* q = q_.get(size_t(rows * q_dim));      // [n, heads·hd]
  float* k = k_.get(size_t(rows * kv_dim));     // [n, kv_heads·hd]
  float* v = v_.get(size_t(rows * kv_dim));     // [n, kv_heads·hd]
  float* att = att_.get(size_t(rows * q_dim));  // attention output [n, heads·hd]
  float* gate = gate_.get(size_t(rows * ffn));  // [n, ffn]
  float* up = up_.get(size_t(rows * ffn));      // [n, ffn]
  float* attn_scratch =
      attn_.get(size_t(cpu::attention_scratch_floats(dims, rows, c.max_positions, threads)));

  // Token embedding (positions enter through RoPE).
  for (int64_t i = 0; i < n; ++i) {
    const float* e = embed_.data<float>() + int64_t(tokens[size_t(i)]) * d;
    std::copy(e, e + d, x + i * d);
  }

  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LlamaBlock& b = blocks_[size_t(l)];
    // Attention: x += o_proj(attention(rope(q_proj(h)), rope(k_proj(h)), v_proj(h))), h = rms_norm(x).
    cpu::rms_norm(x, n, d, b.input_norm.data<float>(), eps, h, threads);
    b.q_proj->forward(h, n, q, ctx);
    b.k_proj->forward(h, n, k, ctx);
    b.v_proj->forward(h, n, v, ctx);
    cpu::apply_rope(q, n, c.num_heads, q_dim, pos0, rope_);
    cpu::apply_rope(k, n, c.num_kv_heads, kv_dim, pos0, rope_);
    store_kv(cache, l, pos0, n, k, v, kv_dim);
    cpu::causal_attention(q, q_dim, n, pos0, cache.keys(l), cache.values(l), cache.capacity(), dims, scale,
                          att, q_dim, attn_scratch, threads);
    b.o_proj->forward(att, n, h, ctx);
    add_inplace(x, h, n * d, threads);
    // MLP: x += down_proj(silu(gate_proj(h)) · up_proj(h)), h = rms_norm(x).
    cpu::rms_norm(x, n, d, b.post_attention_norm.data<float>(), eps, h, threads);
    b.gate_proj->forward(h, n, gate, ctx);
    b.up_proj->forward(h, n, up, ctx);
    cpu::swiglu_inplace(gate, up, n * ffn, threads);
    b.down_proj->forward(gate, n, h, ctx);
    add_inplace(x, h, n * d, threads);
  }

  // Final RMSNorm and lm_head, for every row or only the last one.
  if (!logits) return;
  const int64_t first = last_only ? n - 1 : 0;
  cpu::rms_norm(x + first * d, n - first, d, norm_.data<float>(), eps, h, threads);
  lm_head_->forward(h, n - first, logits, ctx);
}

}  // namespace

std::unique_ptr<Model> make_llama(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                                  const std::filesystem::path& source_dir) {
  return std::make_unique<LlamaModel>(c, w, ctx, source_dir);
}

}  // namespace kq::models
