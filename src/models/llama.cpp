// Llama (Touvron et al. 2023): RMSNorm pre-norm blocks, rotary position
// embeddings (rotate_half convention), grouped-query attention, SwiGLU MLP.
// Weights follow transformers' LlamaForCausalLM (also MistralForCausalLM,
// Qwen2ForCausalLM and Qwen3ForCausalLM: the same tensor names; Qwen2's
// q/k/v_proj have biases; Qwen3 adds self_attn.q_norm / k_norm, an RMSNorm
// over each query / key head before RoPE; Phi3ForCausalLM stores q/k/v_proj as
// one self_attn.qkv_proj and gate/up_proj as one mlp.gate_up_proj, split here
// into the same linear layers, and may rotate only part of each head).
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "models/backend.hpp"
#include "models/common.hpp"

namespace kq::models {
namespace {

struct LlamaBlock {
  Param input_norm;                   // F32 [d]
  std::unique_ptr<Linear> q_proj;     // [heads·hd, d]
  std::unique_ptr<Linear> k_proj;     // [kv_heads·hd, d]
  std::unique_ptr<Linear> v_proj;     // [kv_heads·hd, d]
  Param q_norm, k_norm;               // F32 [hd] (qk_norm: Qwen3), else empty
  std::unique_ptr<Linear> o_proj;     // [d, heads·hd]
  Param post_attention_norm;          // F32 [d]
  std::unique_ptr<Linear> gate_proj;  // [ffn, d]
  std::unique_ptr<Linear> up_proj;    // [ffn, d]
  std::unique_ptr<Linear> down_proj;  // [d, ffn]
};

class LlamaModel final : public Model {
 public:
  LlamaModel(const ModelConfig& c, WeightSource& w, const ExecContext& ctx, const std::filesystem::path& dir,
             const LinearTransform& transform);

 protected:
  void forward_step(Backend& be, int64_t n, bool logits, bool last_only) override;
  void reserve_positions(int64_t capacity) override;

 private:
  Param embed_;  // F32 [vocab, d] (a quantized model: its BF16/F16 disk dtype)
  std::vector<LlamaBlock> blocks_;
  Param norm_;                       // F32 [d]
  std::unique_ptr<Linear> lm_head_;  // [vocab, d]; shares embed_'s host tensor when tied (on the CPU)
  Rope rope_;  // cos/sin [positions, hd/2]: positions grow on demand (reserve_positions)
};

/// Positions the RoPE tables cover before any step: one CPU prefill chunk, so
/// a config's max_position_embeddings (131072 for Llama 3, or a hostile 10^8)
/// costs nothing until a KV cache that long is run.
constexpr int64_t kInitialRopePositions = Model::prefill_chunk();

LlamaModel::LlamaModel(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                       const std::filesystem::path& dir, const LinearTransform& transform)
    : Model(c, ctx, dir, transform),
      rope_(make_rope(c.rope_theta, c.head_dim, std::min(c.max_positions, kInitialRopePositions), c.rope_scaling,
                      c.rotary_dim)) {
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;

  embed_.host = w.get("model.embed_tokens.weight", {c.vocab_size, d}, Init::Weight);
  embed_.disk_dtype = w.disk_dtype("model.embed_tokens.weight");
  register_parameter(embed_, ParamKind::Table);
  register_buffer(rope_.cos);
  register_buffer(rope_.sin);
  blocks_.resize(size_t(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LlamaBlock& b = blocks_[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto linear = [&](const std::string& m, int64_t out, int64_t in, bool bias) -> std::unique_ptr<Linear> {
      if (auto q = w.quantized_linear(p + m, p + m, out, in, bias)) return make_linear(p + m, std::move(q));
      if (auto g = w.generated_linear(p + m, out, in, backend())) return make_linear(p + m, std::move(g));
      return make_linear(p + m, make_linear_f32(w.get(p + m + ".weight", {out, in}, Init::Weight),
                                                bias ? w.get(p + m + ".bias", {out}, Init::Zeros) : Tensor(),
                                                w.disk_dtype(p + m + ".weight")));
    };
    // Phi3's fused weight `fused` ([rows, d]; rows: the parts' sum) split into the linear layers of its parts
    // (fused_parts), each a copy of its rows, in the order the parts are given (biases: never). Phi3 checkpoints
    // store them so; a kq quantized folder (saved with the split names) and random weights (any name is there)
    // use the split names, read by `linear`.
    const auto split_source = [&](const std::string& first_part) {
      return c.arch != Arch::Phi3 || w.quantized() || w.contains(p + first_part + ".weight");
    };
    auto fused_linears = [&](const std::string& fused, std::initializer_list<std::unique_ptr<Linear>*> outs) {
      const std::vector<FusedPart> parts = fused_parts(c, p + fused + ".weight");
      const Tensor all = w.get(p + fused + ".weight", {parts.back().row0 + parts.back().rows, d}, Init::Weight);
      const DType dtype = w.disk_dtype(p + fused + ".weight");
      auto out = outs.begin();
      for (const FusedPart& part : parts) {
        const std::string module = part.name.substr(0, part.name.size() - std::string_view(".weight").size());
        **out++ = make_linear(module, make_linear_f32(all.slice_rows(part.row0, part.row0 + part.rows).clone(),
                                                      Tensor(), dtype));
      }
    };
    b.input_norm.host = w.get(p + "input_layernorm.weight", {d}, Init::Ones);
    // Qwen2: biases on q/k/v_proj only (qkv_bias); Llama's attention_bias: on all four.
    const bool qkv_bias = c.attention_bias || c.qkv_bias;
    if (split_source("self_attn.q_proj")) {
      b.q_proj = linear("self_attn.q_proj", q_dim, d, qkv_bias);
      b.k_proj = linear("self_attn.k_proj", kv_dim, d, qkv_bias);
      b.v_proj = linear("self_attn.v_proj", kv_dim, d, qkv_bias);
    } else {
      fused_linears("self_attn.qkv_proj", {&b.q_proj, &b.k_proj, &b.v_proj});
    }
    if (c.qk_norm) {
      b.q_norm.host = w.get(p + "self_attn.q_norm.weight", {c.head_dim}, Init::Ones);
      b.k_norm.host = w.get(p + "self_attn.k_norm.weight", {c.head_dim}, Init::Ones);
      register_parameter(b.q_norm, ParamKind::Vector);
      register_parameter(b.k_norm, ParamKind::Vector);
    }
    b.o_proj = linear("self_attn.o_proj", d, q_dim, c.attention_bias);
    b.post_attention_norm.host = w.get(p + "post_attention_layernorm.weight", {d}, Init::Ones);
    if (split_source("mlp.gate_proj")) {
      b.gate_proj = linear("mlp.gate_proj", ffn, d, c.mlp_bias);
      b.up_proj = linear("mlp.up_proj", ffn, d, c.mlp_bias);
    } else {
      fused_linears("mlp.gate_up_proj", {&b.gate_proj, &b.up_proj});
    }
    b.down_proj = linear("mlp.down_proj", d, ffn, c.mlp_bias);
    register_parameter(b.input_norm, ParamKind::Vector);
    register_parameter(b.post_attention_norm, ParamKind::Vector);
    register_linear(p + "self_attn.q_proj", &b.q_proj);
    register_linear(p + "self_attn.k_proj", &b.k_proj);
    register_linear(p + "self_attn.v_proj", &b.v_proj);
    register_linear(p + "self_attn.o_proj", &b.o_proj);
    register_linear(p + "mlp.gate_proj", &b.gate_proj);
    register_linear(p + "mlp.up_proj", &b.up_proj);
    register_linear(p + "mlp.down_proj", &b.down_proj);
    register_fusion({&b.q_proj, &b.k_proj, &b.v_proj});
    register_fusion({&b.gate_proj, &b.up_proj});
  }
  norm_.host = w.get("model.norm.weight", {d}, Init::Ones);
  register_parameter(norm_, ParamKind::Vector);
  lm_head_ = w.quantized_linear("lm_head", "lm_head", c.vocab_size, d, /*bias=*/false);
  if (!lm_head_) lm_head_ = w.generated_linear("lm_head", c.vocab_size, d, backend());
  if (!lm_head_)
    lm_head_ = c.tie_word_embeddings
                   ? make_linear_f32(embed_.host)
                   : make_linear_f32(w.get("lm_head.weight", {c.vocab_size, d}, Init::Weight), Tensor(),
                                     w.disk_dtype("lm_head.weight"));
  lm_head_ = make_linear("lm_head", std::move(lm_head_));
  register_linear("lm_head", &lm_head_, /*is_lm_head=*/true);
  set_disk_weight_bytes(w.disk_bytes());
}

// Rebuilds the tables for more positions. Each position's cos/sin depend only
// on the position (cpu::make_rope_table), so the values are the same as those
// of a table built for config().max_positions at load time. The new tables are
// uploaded before they replace the old ones, so a failure changes nothing.
// Growth at least doubles, so a series of longer caches costs O(final size).
void LlamaModel::reserve_positions(int64_t capacity) {
  const ModelConfig& c = config();
  const int64_t have = rope_.table.max_positions;
  if (capacity <= have) return;
  const int64_t want = std::min(c.max_positions, std::max(capacity, 2 * have));
  Rope grown = make_rope(c.rope_theta, c.head_dim, want, c.rope_scaling, c.rotary_dim);
  backend().upload(grown.cos, ParamKind::Vector);
  backend().upload(grown.sin, ParamKind::Vector);
  rope_ = std::move(grown);  // registered Params keep their address
}

void LlamaModel::forward_step(Backend& be, int64_t n, bool logits, bool last_only) {
  const ModelConfig& c = config();
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const float eps = float(c.norm_eps);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  float* x = be.residual(d);            // residual stream [n, d]
  const Act h = be.act(Buf::H, d);      // normed input [n, d]
  const Act o = be.act(Buf::O, d);      // sub-layer output, added to x by the next norm [n, d]
  const Act att = be.act(Buf::Att, q_dim);  // attention output [n, heads·hd]
  constexpr Buf kQkvBufs[] = {Buf::Q, Buf::K, Buf::V};
  constexpr Buf kGateUpBufs[] = {Buf::Gate, Buf::Up};
  Act qkv[3];     // q [n, heads·hd], k and v [n, kv_heads·hd] (columns of one buffer when fused)
  Act gate_up[2]; // gate and up [n, ffn]

  // Token embedding (positions enter through RoPE).
  be.embed(embed_, nullptr, x, d);

  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LlamaBlock& b = blocks_[size_t(l)];
    // Attention: x += o_proj(attention(rope(q_proj(h)), rope(k_proj(h)), v_proj(h))), h = rms_norm(x);
    // the previous block's MLP output o is added to x first. Qwen3 (qk_norm): each head of q_proj(h) and
    // k_proj(h) RMS-normed (q_norm, k_norm) before RoPE.
    be.rms_norm(x, l > 0 ? o : Act{}, b.input_norm, eps, h, n, d);
    const Linear* qkv_ops[] = {b.q_proj.get(), b.k_proj.get(), b.v_proj.get()};
    be.linear_group(qkv_ops, h, n, kQkvBufs, qkv);
    const Act q = qkv[0], k = qkv[1], v = qkv[2];
    if (c.qk_norm) be.qk_norm(q, c.num_heads, k, c.num_kv_heads, c.head_dim, b.q_norm, b.k_norm, eps);
    be.rope_store_kv(l, q, c.num_heads, k, v, c.num_kv_heads, c.head_dim, rope_);
    be.attention(l, q, c.num_heads, scale, att, layer_window(c, l));  // Mistral's, Qwen2's, Phi3's window
    be.linear(*b.o_proj, att, n, o);
    // MLP: x += down_proj(silu(gate_proj(h)) · up_proj(h)), h = rms_norm(x).
    be.rms_norm(x, o, b.post_attention_norm, eps, h, n, d);
    const Linear* gate_up_ops[] = {b.gate_proj.get(), b.up_proj.get()};
    be.linear_group(gate_up_ops, h, n, kGateUpBufs, gate_up);
    be.swiglu(gate_up[0], gate_up[1], ffn);
    be.linear(*b.down_proj, gate_up[0], n, o);
  }

  // Last residual add, final RMSNorm and lm_head, for every row or only the last one.
  if (!logits) return;
  const int64_t first = last_only ? n - 1 : 0;
  be.rms_norm(x + first * d, o.row(first), norm_, eps, h, n - first, d);
  be.lm_head(*lm_head_, h, n - first);
}

}  // namespace

std::unique_ptr<Model> make_llama(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                                  const std::filesystem::path& source_dir, const LinearTransform& transform) {
  return std::make_unique<LlamaModel>(c, w, ctx, source_dir, transform);
}

}  // namespace kq::models
