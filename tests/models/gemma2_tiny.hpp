#pragma once
// A tiny random Gemma 2 (model_type "gemma2", Gemma2ForCausalLM tensor names) or Gemma 1 (model_type "gemma",
// GemmaForCausalLM: no post norms) written to a folder as F32 safetensors, for tests of those paths that need
// no shared data: its tensors are kept so that a test can recompute the forward itself or write them again.
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "kq/tensor.hpp"
#include "models/qwen3_tiny.hpp"  // TinyTensorDraw, write_model_folder

namespace kq::testing {

/// Sizes of a tiny Gemma 2 (gemma1: a Gemma 1). The defaults: 4 layers, the even ones (0, 2) attending within
/// a window of 5 positions (Gemma 2 only), 4 query heads of head_dim 48 over 2 kv heads (num_heads · head_dim
/// = 192 != hidden_size = 128), query_pre_attn_scalar 40 (not head_dim; Gemma 2 only), tied embeddings, and
/// soft-caps small enough for tanh to bend the tiny model's scores (|s| up to ~2) and logits (up to ~15):
/// attn 1.5, final 6 (Gemma 2 only; gemma-2's 50 and 30 would leave them nearly linear here).
struct TinyGemma2 {
  bool gemma1 = false;
  int64_t layers = 4, hidden = 128, heads = 4, kv_heads = 2, head_dim = 48, ffn = 96, vocab = 120;
  int64_t sliding_window = 5;
  double rope_theta = 1e4, query_pre_attn_scalar = 40, eps = 1e-6;
  double attn_softcap = 1.5, final_softcap = 6.0;
  int64_t max_positions = 128;
  uint64_t seed = 5;

  /// Whether layer `l` attends within the window: Gemma2DecoderLayer.is_sliding (even layers); none for Gemma 1.
  bool sliding(int64_t l) const { return !gemma1 && l % 2 == 0; }
};

/// The tensors of a random Gemma2ForCausalLM (gemma1: GemmaForCausalLM) of sizes `s`: embeddings in [-1, 1),
/// each projection [N, K] in ±1/sqrt(K), every RMSNorm weight (input / post-attention / pre- and
/// post-feedforward / final) in [-0.5, 0.5), which Gemma applies as 1 + w. No lm_head (tied). Gemma 1 has no
/// pre- / post-feedforward norms (its post_attention_layernorm is the MLP's input norm).
inline std::map<std::string, Tensor> tiny_gemma2_tensors(const TinyGemma2& s) {
  TinyTensorDraw draw(s.seed);
  const auto linear = [&](const std::string& name, int64_t n, int64_t k) { draw.linear(name, n, k); };
  const auto norm = [&](const std::string& name, int64_t n) { draw.uniform(name, {n}, -0.5, 0.5); };
  draw.uniform("model.embed_tokens.weight", {s.vocab, s.hidden}, -1, 1);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    norm(p + "input_layernorm.weight", s.hidden);
    linear(p + "self_attn.q_proj.weight", s.heads * s.head_dim, s.hidden);
    linear(p + "self_attn.k_proj.weight", s.kv_heads * s.head_dim, s.hidden);
    linear(p + "self_attn.v_proj.weight", s.kv_heads * s.head_dim, s.hidden);
    linear(p + "self_attn.o_proj.weight", s.hidden, s.heads * s.head_dim);
    norm(p + "post_attention_layernorm.weight", s.hidden);
    if (!s.gemma1) norm(p + "pre_feedforward_layernorm.weight", s.hidden);
    linear(p + "mlp.gate_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.up_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.down_proj.weight", s.hidden, s.ffn);
    if (!s.gemma1) norm(p + "post_feedforward_layernorm.weight", s.hidden);
  }
  norm("model.norm.weight", s.hidden);
  return std::move(draw.t);
}

/// The config.json of a Gemma 2 of sizes `s`, with the keys gemma-2-2b's config.json writes (no layer_types:
/// the even-layer rule); of a Gemma 1 (gemma1) with gemma-2b's keys, its legacy hidden_act "gelu" included.
inline nlohmann::json tiny_gemma2_config(const TinyGemma2& s) {
  nlohmann::json j = {{"attention_bias", false},
                      {"attention_dropout", 0.0},
                      {"bos_token_id", 2},
                      {"eos_token_id", 1},
                      {"head_dim", s.head_dim},
                      {"hidden_size", s.hidden},
                      {"initializer_range", 0.02},
                      {"intermediate_size", s.ffn},
                      {"max_position_embeddings", s.max_positions},
                      {"num_attention_heads", s.heads},
                      {"num_hidden_layers", s.layers},
                      {"num_key_value_heads", s.kv_heads},
                      {"pad_token_id", 0},
                      {"rms_norm_eps", s.eps},
                      {"rope_theta", s.rope_theta},
                      {"torch_dtype", "float32"},
                      {"use_cache", true},
                      {"vocab_size", s.vocab}};
  if (s.gemma1) {
    j["architectures"] = {"GemmaForCausalLM"};
    j["model_type"] = "gemma";
    j["hidden_act"] = "gelu";  // legacy: GemmaMLP takes gelu_pytorch_tanh
    j["rope_scaling"] = nullptr;
    return j;
  }
  j["architectures"] = {"Gemma2ForCausalLM"};
  j["model_type"] = "gemma2";
  j["attn_logit_softcapping"] = s.attn_softcap;
  j["final_logit_softcapping"] = s.final_softcap;
  j["cache_implementation"] = "hybrid";
  j["hidden_act"] = "gelu_pytorch_tanh";
  j["hidden_activation"] = "gelu_pytorch_tanh";
  j["query_pre_attn_scalar"] = s.query_pre_attn_scalar;
  j["sliding_window"] = s.sliding_window;
  return j;
}

}  // namespace kq::testing
