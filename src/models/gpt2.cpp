// GPT-2 (Radford et al. 2019): learned position embeddings, pre-LayerNorm
// blocks, fused QKV projection, GELU MLP, lm_head tied to the token embedding.
// Weights follow transformers' GPT2LMHeadModel; its Conv1D weights are stored
// [in, out] and transposed to [out, in] here.
#include <cmath>

#include "kernels/cpu/ops_activation.hpp"
#include "kernels/cpu/ops_attention.hpp"
#include "kernels/cpu/ops_norm.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"
#include "models/common.hpp"

namespace kq::models {
namespace {

struct Gpt2Block {
  Tensor ln_1_w, ln_1_b;              // F32 [d]
  std::unique_ptr<Linear> c_attn;     // [3d, d] -> q | k | v
  std::unique_ptr<Linear> attn_proj;  // [d, d]
  Tensor ln_2_w, ln_2_b;              // F32 [d]
  std::unique_ptr<Linear> c_fc;       // [ffn, d]
  std::unique_ptr<Linear> mlp_proj;   // [d, ffn]
};

class Gpt2Model final : public Model {
 public:
  Gpt2Model(const ModelConfig& c, WeightSource& w, const ExecContext& ctx, const std::filesystem::path& dir);

 protected:
  void forward_chunk(std::span<const int32_t> tokens, KVCache& cache, float* logits, bool last_only) override;

 private:
  Tensor wte_;  // F32 [vocab, d]
  Tensor wpe_;  // F32 [max_positions, d]
  std::vector<Gpt2Block> blocks_;
  Tensor ln_f_w_, ln_f_b_;           // F32 [d]
  std::unique_ptr<Linear> lm_head_;  // [vocab, d]; shares wte_ when tied
  bool exact_gelu_ = false;          // "gelu" (erf) instead of the tanh approximation
  // Scratch, rows = tokens of one chunk.
  Scratch x_, h_, qkv_, att_, ff_, attn_;
};

Gpt2Model::Gpt2Model(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                     const std::filesystem::path& dir)
    : Model(c, ctx, dir) {
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  // Hub checkpoints name tensors "h.0...", transformers' saves "transformer.h.0...".
  std::string p;
  if (w.contains("transformer.wte.weight"))
    p = "transformer.";
  else if (!w.contains("wte.weight"))
    raise<FormatError>("{}: neither 'transformer.wte.weight' nor 'wte.weight' found: not a GPT-2 checkpoint",
                       dir.string());
  exact_gelu_ = c.activation == "gelu";

  wte_ = w.get(p + "wte.weight", {c.vocab_size, d}, Init::Weight);
  wpe_ = w.get(p + "wpe.weight", {c.max_positions, d}, Init::Weight);
  register_parameter(wte_);
  register_parameter(wpe_);
  blocks_.resize(size_t(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Gpt2Block& b = blocks_[size_t(l)];
    const std::string h = p + "h." + std::to_string(l) + ".";
    const std::string name = "transformer.h." + std::to_string(l) + ".";  // canonical slot names
    auto linear = [&](const std::string& m, int64_t out, int64_t in) -> std::unique_ptr<Linear> {
      if (auto q = w.quantized_linear(name + m, h + m, out, in)) return q;
      return make_linear_f32(w.get_transposed(h + m + ".weight", {out, in}, Init::Weight),
                             w.get(h + m + ".bias", {out}, Init::Zeros));
    };
    b.ln_1_w = w.get(h + "ln_1.weight", {d}, Init::Ones);
    b.ln_1_b = w.get(h + "ln_1.bias", {d}, Init::Zeros);
    b.c_attn = linear("attn.c_attn", 3 * d, d);
    b.attn_proj = linear("attn.c_proj", d, d);
    b.ln_2_w = w.get(h + "ln_2.weight", {d}, Init::Ones);
    b.ln_2_b = w.get(h + "ln_2.bias", {d}, Init::Zeros);
    b.c_fc = linear("mlp.c_fc", ffn, d);
    b.mlp_proj = linear("mlp.c_proj", d, ffn);
    for (const Tensor* t : {&b.ln_1_w, &b.ln_1_b, &b.ln_2_w, &b.ln_2_b}) register_parameter(*t);
    register_linear(name + "attn.c_attn", &b.c_attn);
    register_linear(name + "attn.c_proj", &b.attn_proj);
    register_linear(name + "mlp.c_fc", &b.c_fc);
    register_linear(name + "mlp.c_proj", &b.mlp_proj);
  }
  ln_f_w_ = w.get(p + "ln_f.weight", {d}, Init::Ones);
  ln_f_b_ = w.get(p + "ln_f.bias", {d}, Init::Zeros);
  register_parameter(ln_f_w_);
  register_parameter(ln_f_b_);
  lm_head_ = w.quantized_linear("lm_head", "lm_head", c.vocab_size, d);
  if (!lm_head_)
    lm_head_ = c.tie_word_embeddings
                   ? make_linear_f32(wte_)
                   : make_linear_f32(w.get("lm_head.weight", {c.vocab_size, d}, Init::Weight));
  register_linear("lm_head", &lm_head_, /*is_lm_head=*/true);
  set_disk_weight_bytes(w.disk_bytes());
}

void Gpt2Model::forward_chunk(std::span<const int32_t> tokens, KVCache& cache, float* logits,
                              bool last_only) {
  const ModelConfig& c = config();
  const ExecContext& ctx = context();
  const int threads = resolve_threads(ctx.threads);
  const int64_t n = int64_t(tokens.size()), pos0 = cache.size();
  const int64_t d = c.hidden_size, ffn = c.intermediate_size, rows = chunk_rows(c.max_positions);
  const float eps = float(c.norm_eps);
  const cpu::AttentionDims dims{c.num_heads, c.num_kv_heads, c.head_dim};
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  float* x = x_.get(size_t(rows * d));          // residual stream [n, d]
  float* h = h_.get(size_t(rows * d));          // normed input / block output [n, d]
  float* qkv = qkv_.get(size_t(rows * 3 * d));  // [n, 3d]
  float* att = att_.get(size_t(rows * d));      // attention output [n, d]
  float* ff = ff_.get(size_t(rows * ffn));      // MLP hidden [n, ffn]
  float* attn_scratch =
      attn_.get(size_t(cpu::attention_scratch_floats(dims, rows, c.max_positions, threads)));

  // Token embedding + position embedding.
  for (int64_t i = 0; i < n; ++i) {
    const float* te = wte_.data<float>() + int64_t(tokens[size_t(i)]) * d;
    const float* pe = wpe_.data<float>() + (pos0 + i) * d;
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = te[j] + pe[j];
  }

  for (int64_t l = 0; l < c.num_layers; ++l) {
    const Gpt2Block& b = blocks_[size_t(l)];
    // Attention: x += c_proj(attention(c_attn(ln_1(x)))).
    cpu::layer_norm(x, n, d, b.ln_1_w.data<float>(), b.ln_1_b.data<float>(), eps, h, threads);
    b.c_attn->forward(h, n, qkv, ctx);
    store_kv(cache, l, pos0, n, qkv + d, qkv + 2 * d, 3 * d);
    cpu::causal_attention(qkv, 3 * d, n, pos0, cache.keys(l), cache.values(l), cache.capacity(), dims, scale,
                          att, d, attn_scratch, threads);
    b.attn_proj->forward(att, n, h, ctx);
    add_inplace(x, h, n * d, threads);
    // MLP: x += c_proj(gelu(c_fc(ln_2(x)))).
    cpu::layer_norm(x, n, d, b.ln_2_w.data<float>(), b.ln_2_b.data<float>(), eps, h, threads);
    b.c_fc->forward(h, n, ff, ctx);
    if (exact_gelu_)
      cpu::gelu_erf_inplace(ff, n * ffn, threads);
    else
      cpu::gelu_new_inplace(ff, n * ffn, threads);
    b.mlp_proj->forward(ff, n, h, ctx);
    add_inplace(x, h, n * d, threads);
  }

  // Final LayerNorm and lm_head, for every row or only the last one.
  if (!logits) return;
  const int64_t first = last_only ? n - 1 : 0;
  cpu::layer_norm(x + first * d, n - first, d, ln_f_w_.data<float>(), ln_f_b_.data<float>(), eps, h, threads);
  lm_head_->forward(h, n - first, logits, ctx);
}

}  // namespace

std::unique_ptr<Model> make_gpt2(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                                 const std::filesystem::path& source_dir) {
  return std::make_unique<Gpt2Model>(c, w, ctx, source_dir);
}

}  // namespace kq::models
