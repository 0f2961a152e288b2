// Llama (Touvron et al. 2023): RMSNorm pre-norm blocks, rotary position
// embeddings (rotate_half convention), grouped-query attention, SwiGLU MLP.
// Weights follow transformers' LlamaForCausalLM (also MistralForCausalLM,
// Qwen2ForCausalLM and Qwen3ForCausalLM: the same tensor names; Qwen2's
// q/k/v_proj have biases; Qwen3 adds self_attn.q_norm / k_norm, an RMSNorm
// over each query / key head before RoPE; Phi3ForCausalLM stores q/k/v_proj as
// one self_attn.qkv_proj and gate/up_proj as one mlp.gate_up_proj, split here
// into the same linear layers, and may rotate only part of each head; Gemma3ForCausalLM (Gemma 3 text, after
// transformers' modeling_gemma3.py) has Qwen3's q_norm / k_norm, RMSNorm gains w applied as 1 + w, a norm on
// each sub-layer's output before its residual add and a pre-MLP norm of its own, a GeGLU MLP, embeddings
// times sqrt(hidden_size), and a RoPE table of its own for the sliding-window layers; GemmaForCausalLM (Gemma 1,
// modeling_gemma.py) has only the 1 + w gains, the GeGLU MLP and the scaled embeddings; Gemma2ForCausalLM
// (modeling_gemma2.py) Gemma 3's post norms and query_pre_attn_scalar without q_norm / k_norm, one RoPE table,
// a window on every other layer, and tanh soft-capping of the attention scores and of the logits).
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
  // post_norms (Gemma2, Gemma3) only, else empty: F32 [d] RMSNorm gains of the attention output
  // (post_attention_layernorm) and of the MLP output (post_feedforward_layernorm), applied before their
  // residual adds.
  Param attn_out_norm, mlp_out_norm;
  std::unique_ptr<Linear> q_proj;     // [heads·hd, d]
  std::unique_ptr<Linear> k_proj;     // [kv_heads·hd, d]
  std::unique_ptr<Linear> v_proj;     // [kv_heads·hd, d]
  Param q_norm, k_norm;               // F32 [hd] (qk_norm: Qwen3), else empty
  std::unique_ptr<Linear> o_proj;     // [d, heads·hd]
  Param mlp_norm;                     // F32 [d]: the MLP's input norm (Llama's post_attention_layernorm)
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
  Param embed_;  // F32 [vocab, d] (a quantized model: its BF16/F16 disk dtype, read so: WeightSource::held)
  std::vector<LlamaBlock> blocks_;
  Param norm_;                       // F32 [d]
  std::unique_ptr<Linear> lm_head_;  // [vocab, d]; shares embed_'s host tensor when tied (on the CPU)
  // Phi-3's longrope (RopeScaling::Type::LongRope) has two factor lists. transformers (modeling_rope_utils.py,
  // dynamic_rope_update's longrope_frequency_update before every forward of the rotary embedding) computes the
  // inverse frequencies of a forward pass from its sequence length max(position_ids) + 1: short_factor up to
  // original_max_position_embeddings, long_factor past it, for every position of that pass; cos/sin are times
  // the one attention factor in both cases. Keys already in the KV cache are not touched: they keep the rotation
  // of the pass that stored them (a prompt within the original context, then decoding past it: the prompt's
  // keys short, the new ones long). kq does the same with two tables:
  //  - rope_: the short factors' angles at positions < original_max_positions, the long factors' from there on.
  //    What every pass that ends within the original context (all its positions short) and every pass that
  //    starts at or past it (all long) reads; a decode step at position p ends at p + 1, so decode_batch always
  //    reads it.
  //  - rope_long_ (longrope only): the long factors at every position, for a forward() pass that starts before
  //    original_max_positions and ends past it (Model::long_rope_pass: a long prompt, an evaluation window; not
  //    graphable, so a captured decode graph always reads rope_).
  // transformers' generate() adds one more rule (Phi3ForCausalLM.prepare_inputs_for_generation): when the
  // sequence first grows past original_max_position_embeddings it drops the cache and recomputes the whole
  // sequence, all long. That needs the tokens, which the caller has: kq generate does it (see there).
  Rope rope_;  // cos/sin [positions, hd/2]: positions grow on demand (reserve_positions)
  Rope rope_long_;  // longrope's long factors at every position, grown with rope_; empty (0 positions) otherwise
  /// Gemma3's sliding-window layers' table (rope_local_theta, default frequencies; layer_rope_local), grown
  /// with rope_; empty (0 positions) when the config has no rope_local_theta.
  Rope rope_local_;
  float embed_scale_ = 1.0f;  // scale_embeddings: sqrt(hidden_size) rounded to the embedding's disk dtype

  /// An RMSNorm gain F32 [n] read as `name`: as stored, or 1 + w (in F32) for a config with norm_offset,
  /// whose random weights are then zeros (gains of 1, as transformers initializes Gemma's).
  Tensor norm_gain(WeightSource& w, const std::string& name, int64_t n) const;
  /// The RoPE tables of `positions` positions: rope_ (theta, scaling), with longrope rope_long_, and with
  /// rope_local_theta rope_local_ (the others left empty).
  void make_ropes(int64_t positions, Rope& global, Rope& global_long, Rope& local) const;
  /// Whether the config's RoPE is Phi-3's longrope (rope_long_ is built then).
  bool longrope() const { return config().rope_scaling.type == RopeScaling::Type::LongRope; }
};

/// Positions the RoPE tables cover before any step: one CPU prefill chunk, so
/// a config's max_position_embeddings (131072 for Llama 3, or a hostile 10^8)
/// costs nothing until a KV cache that long is run.
constexpr int64_t kInitialRopePositions = Model::prefill_chunk();

Tensor LlamaModel::norm_gain(WeightSource& w, const std::string& name, int64_t n) const {
  if (!config().norm_offset) return w.get(name, {n}, Init::Ones);
  // Gemma3RMSNorm (GemmaRMSNorm, Gemma2RMSNorm alike): output · (1.0 + weight.float()), in F32: the same sum,
  // done once here. The tensor is a copy (F32 weights are views of the file mapping); the folder keeps w,
  // which save_quantized_model copies as it is.
  const Tensor stored = w.get(name, {n}, Init::Zeros);
  Tensor gain = Tensor::empty(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) gain.mutable_data<float>()[i] = 1.0f + stored.data<float>()[i];
  return gain;
}

void LlamaModel::make_ropes(int64_t positions, Rope& global, Rope& global_long, Rope& local) const {
  const ModelConfig& c = config();
  const int64_t original = c.rope_scaling.original_max_positions;  // longrope's switch (ignored by the others)
  global = make_rope(c.rope_theta, c.head_dim, positions, c.rope_scaling, c.rotary_dim, original);
  if (longrope()) global_long = make_rope(c.rope_theta, c.head_dim, positions, c.rope_scaling, c.rotary_dim, 0);
  // Gemma3's local layers: rope_local_base_freq with the default frequencies (transformers builds their
  // rotary embedding from a copy of the config with rope_scaling {"rope_type": "default"}).
  if (c.rope_local_theta > 0) local = make_rope(c.rope_local_theta, c.head_dim, positions, {}, c.rotary_dim);
}

LlamaModel::LlamaModel(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                       const std::filesystem::path& dir, const LinearTransform& transform)
    : Model(c, ctx, dir, transform) {
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  make_ropes(std::min(c.max_positions, kInitialRopePositions), rope_, rope_long_, rope_local_);

  embed_.host = w.held("model.embed_tokens.weight", {c.vocab_size, d}, Init::Weight);
  embed_.disk_dtype = w.disk_dtype("model.embed_tokens.weight");
  if (c.scale_embeddings) {
    // Gemma3TextScaledWordEmbedding (GemmaModel's and Gemma2Model's `normalizer` alike): embed_scale (float32
    // sqrt(hidden_size)) cast to the weights' dtype, then
    // the product. kq rounds the factor to the table's dtype on disk (the dtype transformers runs a
    // checkpoint in with torch_dtype "auto"; 33.94 -> 34 in BF16 for hidden_size 1152) and keeps the product
    // in F32, not rounded.
    const float exact = float(std::sqrt(double(d)));
    uint16_t half = 0;
    embed_scale_ = exact;
    if (embed_.disk_dtype == DType::BF16 || embed_.disk_dtype == DType::F16) {
      convert_from_f32(embed_.disk_dtype, &exact, &half, 1);
      convert_to_f32(embed_.disk_dtype, &half, &embed_scale_, 1);
    }
  }
  register_parameter(embed_, ParamKind::Table);
  register_buffer(rope_.cos);
  register_buffer(rope_.sin);
  if (longrope()) {
    register_buffer(rope_long_.cos);
    register_buffer(rope_long_.sin);
  }
  if (c.rope_local_theta > 0) {
    register_buffer(rope_local_.cos);
    register_buffer(rope_local_.sin);
  }
  blocks_.resize(size_t(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LlamaBlock& b = blocks_[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto linear = [&](const std::string& m, int64_t out, int64_t in, bool bias) -> std::unique_ptr<Linear> {
      if (auto q = w.quantized_linear(p + m, p + m, out, in, bias)) return make_linear(p + m, std::move(q));
      if (auto g = w.generated_linear(p + m, out, in, backend())) return make_linear(p + m, std::move(g));
      return make_linear(p + m, w.dense_linear(p + m + ".weight", {out, in}, /*transposed=*/false,
                                               bias ? p + m + ".bias" : std::string()));
    };
    // Phi3's fused weight `fused` ([rows, d]; rows: the parts' sum) split into the linear layers of its parts
    // (fused_parts), each a copy of its rows, in the order the parts are given (biases: never). Phi3 checkpoints
    // store them so, also AutoAWQ / AutoGPTQ ones (quantized as one: "<fused>.qweight", ..., split by
    // quantized_fused_linears); a kq quantized folder (saved with the split names) and random weights (any name
    // is there) use the split names, read by `linear`.
    const auto split_source = [&](const std::string& first_part, const std::string& fused) {
      if (c.arch != Arch::Phi3 || w.contains(p + first_part + ".weight")) return true;
      // (a fused layer that lost its .qweight but kept its .scales is fused: quantized_fused_linears names it)
      return w.quantized() && !w.contains(p + fused + ".weight") && !w.contains(p + fused + ".qweight") &&
             !w.contains(p + fused + ".scales");
    };
    auto fused_linears = [&](const std::string& fused, std::initializer_list<std::unique_ptr<Linear>*> outs) {
      const std::vector<FusedPart> parts = fused_parts(c, p + fused + ".weight");
      std::vector<std::unique_ptr<Linear>> ops = w.quantized_fused_linears(p + fused, parts, d);
      if (ops.empty()) {
        const Tensor all = w.get(p + fused + ".weight", {parts.back().row0 + parts.back().rows, d}, Init::Weight);
        const DType dtype = w.disk_dtype(p + fused + ".weight");
        for (const FusedPart& part : parts)
          ops.push_back(make_linear_f32(all.slice_rows(part.row0, part.row0 + part.rows).clone(), Tensor(), dtype));
      }
      auto out = outs.begin();
      for (size_t i = 0; i < parts.size(); ++i) {
        const std::string module = parts[i].name.substr(0, parts[i].name.size() - std::string_view(".weight").size());
        **out++ = make_linear(module, std::move(ops[i]));
      }
    };
    b.input_norm.host = norm_gain(w, p + "input_layernorm.weight", d);
    // Qwen2: biases on q/k/v_proj only (qkv_bias); Llama's attention_bias: on all four.
    const bool qkv_bias = c.attention_bias || c.qkv_bias;
    if (split_source("self_attn.q_proj", "self_attn.qkv_proj")) {
      b.q_proj = linear("self_attn.q_proj", q_dim, d, qkv_bias);
      b.k_proj = linear("self_attn.k_proj", kv_dim, d, qkv_bias);
      b.v_proj = linear("self_attn.v_proj", kv_dim, d, qkv_bias);
    } else {
      fused_linears("self_attn.qkv_proj", {&b.q_proj, &b.k_proj, &b.v_proj});
    }
    if (c.qk_norm) {
      b.q_norm.host = norm_gain(w, p + "self_attn.q_norm.weight", c.head_dim);
      b.k_norm.host = norm_gain(w, p + "self_attn.k_norm.weight", c.head_dim);
      register_parameter(b.q_norm, ParamKind::Vector);
      register_parameter(b.k_norm, ParamKind::Vector);
    }
    b.o_proj = linear("self_attn.o_proj", d, q_dim, c.attention_bias);
    // Gemma2 / Gemma3 (post_norms): post_attention_layernorm norms the attention output, pre_feedforward_layernorm is
    // the MLP's input norm and post_feedforward_layernorm norms its output.
    if (c.post_norms) {
      b.attn_out_norm.host = norm_gain(w, p + "post_attention_layernorm.weight", d);
      b.mlp_norm.host = norm_gain(w, p + "pre_feedforward_layernorm.weight", d);
      b.mlp_out_norm.host = norm_gain(w, p + "post_feedforward_layernorm.weight", d);
      register_parameter(b.attn_out_norm, ParamKind::Vector);
      register_parameter(b.mlp_out_norm, ParamKind::Vector);
    } else {
      b.mlp_norm.host = norm_gain(w, p + "post_attention_layernorm.weight", d);
    }
    if (split_source("mlp.gate_proj", "mlp.gate_up_proj")) {
      b.gate_proj = linear("mlp.gate_proj", ffn, d, c.mlp_bias);
      b.up_proj = linear("mlp.up_proj", ffn, d, c.mlp_bias);
    } else {
      fused_linears("mlp.gate_up_proj", {&b.gate_proj, &b.up_proj});
    }
    b.down_proj = linear("mlp.down_proj", d, ffn, c.mlp_bias);
    register_parameter(b.input_norm, ParamKind::Vector);
    register_parameter(b.mlp_norm, ParamKind::Vector);
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
  norm_.host = norm_gain(w, "model.norm.weight", d);
  register_parameter(norm_, ParamKind::Vector);
  lm_head_ = w.quantized_linear("lm_head", "lm_head", c.vocab_size, d, /*bias=*/false);
  if (!lm_head_) lm_head_ = w.generated_linear("lm_head", c.vocab_size, d, backend());
  if (!lm_head_)
    lm_head_ = c.tie_word_embeddings
                   ? make_dense_lm_head(embed_.host, DType::F32)
                   : make_dense_lm_head(w.held("lm_head.weight", {c.vocab_size, d}, Init::Weight),
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
  Rope grown, grown_long, grown_local;
  make_ropes(want, grown, grown_long, grown_local);
  for (Rope* r : {&grown, &grown_long, &grown_local}) {
    if (r->table.max_positions == 0) continue;  // no long or local table
    backend().upload(r->cos, ParamKind::Vector);
    backend().upload(r->sin, ParamKind::Vector);
  }
  rope_ = std::move(grown);  // registered Params keep their address
  if (longrope()) rope_long_ = std::move(grown_long);
  if (c.rope_local_theta > 0) rope_local_ = std::move(grown_local);
}

void LlamaModel::forward_step(Backend& be, int64_t n, bool logits, bool last_only) {
  const ModelConfig& c = config();
  const int64_t d = c.hidden_size, ffn = c.intermediate_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const float eps = float(c.norm_eps);
  // Gemma2 / Gemma3: query_pre_attn_scalar^−1/2 (transformers' scaling, a Python float), else head_dim^−1/2.
  const float scale = c.query_pre_attn_scalar > 0 ? float(1.0 / std::sqrt(c.query_pre_attn_scalar))
                                                  : 1.0f / std::sqrt(float(c.head_dim));
  const bool swiglu = c.activation == "silu";      // else Gemma's GeGLU
  // Gemma2's attn_logit_softcapping (0: none), applied to the scaled scores inside the attention.
  const float softcap = float(c.attn_logit_softcapping);
  const bool gelu_exact = c.activation == "gelu";  // its erf form
  float* x = be.residual(d);            // residual stream [n, d]
  const Act h = be.act(Buf::H, d);      // normed input [n, d]
  const Act o = be.act(Buf::O, d);      // sub-layer output, added to x by the next norm [n, d]
  const Act att = be.act(Buf::Att, q_dim);  // attention output [n, heads·hd]
  constexpr Buf kQkvBufs[] = {Buf::Q, Buf::K, Buf::V};
  constexpr Buf kGateUpBufs[] = {Buf::Gate, Buf::Up};
  Act qkv[3];     // q [n, heads·hd], k and v [n, kv_heads·hd] (columns of one buffer when fused)
  Act gate_up[2]; // gate and up [n, ffn]

  // Token embedding (positions enter through RoPE); Gemma: times sqrt(hidden_size).
  be.embed(embed_, nullptr, x, d);
  if (c.scale_embeddings) be.scale_residual(x, embed_scale_, d);

  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LlamaBlock& b = blocks_[size_t(l)];
    // Attention: x += o_proj(attention(rope(q_proj(h)), rope(k_proj(h)), v_proj(h))), h = rms_norm(x);
    // the previous block's MLP output o is added to x first. Qwen3 (qk_norm): each head of q_proj(h) and
    // k_proj(h) RMS-normed (q_norm, k_norm) before RoPE. Gemma3 (post_norms): o_proj's output RMS-normed
    // before the add, and its sliding layers rotated with the local table.
    be.rms_norm(x, l > 0 ? o : Act{}, b.input_norm, eps, h, n, d);
    const Linear* qkv_ops[] = {b.q_proj.get(), b.k_proj.get(), b.v_proj.get()};
    be.linear_group(qkv_ops, h, n, kQkvBufs, qkv);
    const Act q = qkv[0], k = qkv[1], v = qkv[2];
    if (c.qk_norm) be.qk_norm(q, c.num_heads, k, c.num_kv_heads, c.head_dim, b.q_norm, b.k_norm, eps);
    const Rope& rope = layer_rope_local(c, l) ? rope_local_ : long_rope_pass() ? rope_long_ : rope_;
    be.rope_store_kv(l, q, c.num_heads, k, v, c.num_kv_heads, c.head_dim, rope);
    // Mistral's, Qwen2's, Phi3's, Gemma2's, Gemma3's window; Gemma2's soft-capping of the scores.
    be.attention(l, q, c.num_heads, scale, att, layer_window(c, l), softcap);
    be.linear(*b.o_proj, att, n, o);
    if (c.post_norms) be.rms_norm_rows(o, b.attn_out_norm, eps, d);
    // MLP: x += down_proj(silu(gate_proj(h)) · up_proj(h)), h = rms_norm(x); Gemma3: GELU(gate_proj(h)) ·
    // up_proj(h) (GeGLU) and the output RMS-normed before the add.
    be.rms_norm(x, o, b.mlp_norm, eps, h, n, d);
    const Linear* gate_up_ops[] = {b.gate_proj.get(), b.up_proj.get()};
    be.linear_group(gate_up_ops, h, n, kGateUpBufs, gate_up);
    if (swiglu)
      be.swiglu(gate_up[0], gate_up[1], ffn);
    else
      be.geglu(gate_up[0], gate_up[1], ffn, gelu_exact);
    be.linear(*b.down_proj, gate_up[0], n, o);
    if (c.post_norms) be.rms_norm_rows(o, b.mlp_out_norm, eps, d);
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
