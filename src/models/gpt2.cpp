// GPT-2 (Radford et al. 2019): learned position embeddings, pre-LayerNorm
// blocks, fused QKV projection, GELU MLP, lm_head tied to the token embedding.
// Weights follow transformers' GPT2LMHeadModel; its Conv1D weights are stored
// [in, out] and transposed to [out, in] here.
#include <cmath>

#include "kernels/linear.hpp"
#include "kq/error.hpp"
#include "models/backend.hpp"
#include "models/common.hpp"

namespace kq::models {
namespace {

struct Gpt2Block {
  Param ln_1_w, ln_1_b;               // F32 [d]
  std::unique_ptr<Linear> c_attn;     // [3d, d] -> q | k | v
  std::unique_ptr<Linear> attn_proj;  // [d, d]
  Param ln_2_w, ln_2_b;               // F32 [d]
  std::unique_ptr<Linear> c_fc;       // [ffn, d]
  std::unique_ptr<Linear> mlp_proj;   // [d, ffn]
};

class Gpt2Model final : public Model {
 public:
  Gpt2Model(const ModelConfig& c, WeightSource& w, const ExecContext& ctx, const std::filesystem::path& dir,
            const LinearTransform& transform);

 protected:
  void forward_step(Backend& be, int64_t n, bool logits, bool last_only) override;

 private:
  Param wte_;  // F32 [vocab, d] (a quantized model: its BF16/F16 disk dtype)
  Param wpe_;  // F32 [max_positions, d] (likewise)
  std::vector<Gpt2Block> blocks_;
  Param ln_f_w_, ln_f_b_;            // F32 [d]
  std::unique_ptr<Linear> lm_head_;  // [vocab, d]; shares wte_'s host tensor when tied (on the CPU)
  bool exact_gelu_ = false;          // "gelu" (erf) instead of the tanh approximation
};

Gpt2Model::Gpt2Model(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                     const std::filesystem::path& dir, const LinearTransform& transform)
    : Model(c, ctx, dir, transform) {
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  // Hub checkpoints name tensors "h.0...", transformers' saves "transformer.h.0...".
  std::string p;
  if (w.contains("transformer.wte.weight"))
    p = "transformer.";
  else if (!w.contains("wte.weight"))
    raise<FormatError>("{}: neither 'transformer.wte.weight' nor 'wte.weight' found: not a GPT-2 checkpoint",
                       dir.string());
  exact_gelu_ = c.activation == "gelu";

  wte_.host = w.held(p + "wte.weight", {c.vocab_size, d}, Init::Weight);
  wte_.disk_dtype = w.disk_dtype(p + "wte.weight");
  wpe_.host = w.held(p + "wpe.weight", {c.max_positions, d}, Init::Weight);
  wpe_.disk_dtype = w.disk_dtype(p + "wpe.weight");
  register_parameter(wte_, ParamKind::Table);
  register_parameter(wpe_, ParamKind::Table);
  blocks_.resize(size_t(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    Gpt2Block& b = blocks_[size_t(l)];
    const std::string h = p + "h." + std::to_string(l) + ".";
    const std::string name = "transformer.h." + std::to_string(l) + ".";  // canonical slot names
    auto linear = [&](const std::string& m, int64_t out, int64_t in) -> std::unique_ptr<Linear> {
      if (auto q = w.quantized_linear(name + m, h + m, out, in, /*bias=*/true))
        return make_linear(name + m, std::move(q));
      if (auto g = w.generated_linear(name + m, out, in, backend())) return make_linear(name + m, std::move(g));
      return make_linear(name + m, w.dense_linear(h + m + ".weight", {out, in}, /*transposed=*/true, h + m + ".bias"));
    };
    b.ln_1_w.host = w.get(h + "ln_1.weight", {d}, Init::Ones);
    b.ln_1_b.host = w.get(h + "ln_1.bias", {d}, Init::Zeros);
    b.c_attn = linear("attn.c_attn", 3 * d, d);
    b.attn_proj = linear("attn.c_proj", d, d);
    b.ln_2_w.host = w.get(h + "ln_2.weight", {d}, Init::Ones);
    b.ln_2_b.host = w.get(h + "ln_2.bias", {d}, Init::Zeros);
    b.c_fc = linear("mlp.c_fc", ffn, d);
    b.mlp_proj = linear("mlp.c_proj", d, ffn);
    for (Param* t : {&b.ln_1_w, &b.ln_1_b, &b.ln_2_w, &b.ln_2_b}) register_parameter(*t, ParamKind::Vector);
    register_linear(name + "attn.c_attn", &b.c_attn);
    register_linear(name + "attn.c_proj", &b.attn_proj);
    register_linear(name + "mlp.c_fc", &b.c_fc);
    register_linear(name + "mlp.c_proj", &b.mlp_proj);
  }
  ln_f_w_.host = w.get(p + "ln_f.weight", {d}, Init::Ones);
  ln_f_b_.host = w.get(p + "ln_f.bias", {d}, Init::Zeros);
  register_parameter(ln_f_w_, ParamKind::Vector);
  register_parameter(ln_f_b_, ParamKind::Vector);
  lm_head_ = w.quantized_linear("lm_head", "lm_head", c.vocab_size, d, /*bias=*/false);
  if (!lm_head_) lm_head_ = w.generated_linear("lm_head", c.vocab_size, d, backend());
  if (!lm_head_)
    lm_head_ = c.tie_word_embeddings
                   ? make_dense_lm_head(wte_.host, DType::F32)
                   : make_dense_lm_head(w.held("lm_head.weight", {c.vocab_size, d}, Init::Weight),
                                        w.disk_dtype("lm_head.weight"));
  lm_head_ = make_linear("lm_head", std::move(lm_head_));
  register_linear("lm_head", &lm_head_, /*is_lm_head=*/true);
  set_disk_weight_bytes(w.disk_bytes());
}

void Gpt2Model::forward_step(Backend& be, int64_t n, bool logits, bool last_only) {
  const ModelConfig& c = config();
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  const float eps = float(c.norm_eps);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  float* x = be.residual(d);               // residual stream [n, d]
  const Act h = be.act(Buf::H, d);         // normed input [n, d]
  const Act o = be.act(Buf::O, d);         // sub-layer output, added to x by the next norm [n, d]
  const Act qkv = be.act(Buf::Q, 3 * d);   // [n, 3d] = q | k | v
  const Act att = be.act(Buf::Att, d);     // attention output [n, d]
  const Act ff = be.act(Buf::Gate, ffn);   // MLP hidden [n, ffn]

  // Token embedding + position embedding.
  be.embed(wte_, &wpe_, x, d);

  for (int64_t l = 0; l < c.num_layers; ++l) {
    const Gpt2Block& b = blocks_[size_t(l)];
    // Attention: x += c_proj(attention(c_attn(ln_1(x)))); the previous block's
    // MLP output o is added to x first.
    be.layer_norm(x, l > 0 ? o : Act{}, b.ln_1_w, b.ln_1_b, eps, h, n, d);
    be.linear(*b.c_attn, h, n, qkv);
    be.store_kv(l, qkv.col(d), qkv.col(2 * d));
    // Window and soft-capping: 0 from config.json (a config built in code may set them).
    be.attention(l, qkv, c.num_heads, scale, att, layer_window(c, l), float(c.attn_logit_softcapping));
    be.linear(*b.attn_proj, att, n, o);
    // MLP: x += c_proj(gelu(c_fc(ln_2(x)))).
    be.layer_norm(x, o, b.ln_2_w, b.ln_2_b, eps, h, n, d);
    be.linear(*b.c_fc, h, n, ff);
    be.gelu(ff, ffn, exact_gelu_);
    be.linear(*b.mlp_proj, ff, n, o);
  }

  // Last residual add, final LayerNorm and lm_head, for every row or only the last one.
  if (!logits) return;
  const int64_t first = last_only ? n - 1 : 0;
  be.layer_norm(x + first * d, o.row(first), ln_f_w_, ln_f_b_, eps, h, n - first, d);
  be.lm_head(*lm_head_, h, n - first);
}

}  // namespace

std::unique_ptr<Model> make_gpt2(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                                 const std::filesystem::path& source_dir, const LinearTransform& transform) {
  return std::make_unique<Gpt2Model>(c, w, ctx, source_dir, transform);
}

}  // namespace kq::models
