#pragma once
// A tiny random Gemma 3 text model (model_type "gemma3_text", Gemma3ForCausalLM tensor names, F32
// safetensors) written to a folder, for tests of the Gemma path that need no shared data: its tensors are
// kept so that a test can recompute the forward itself or write them again.
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

/// Sizes of a tiny Gemma 3. The defaults: 4 layers of which those with (l + 1) % sliding_pattern != 0 (0, 1,
/// 3) attend within a window of 5 positions with RoPE base rope_local_theta, layer 2 over every position with
/// rope_theta and linear RoPE scaling (factor rope_linear_factor); 4 query heads of head_dim 64 over 2 kv
/// heads (num_heads · head_dim = hidden_size = 256); query_pre_attn_scalar 48 (not head_dim); tied
/// embeddings.
struct TinyGemma3 {
  int64_t layers = 4, hidden = 256, heads = 4, kv_heads = 2, head_dim = 64, ffn = 192, vocab = 120;
  int64_t sliding_window = 5, sliding_pattern = 3;
  double rope_theta = 1e6, rope_local_theta = 1e4, rope_linear_factor = 2.0;
  double query_pre_attn_scalar = 48, eps = 1e-6;
  int64_t max_positions = 128;
  uint64_t seed = 3;

  /// Whether layer `l` is a sliding-window (local) layer: Gemma3TextConfig's sliding_window_pattern rule.
  bool sliding(int64_t l) const { return (l + 1) % sliding_pattern != 0; }
};

/// The tensors of a random Gemma3ForCausalLM of sizes `s`: embeddings in [-1, 1), each projection [N, K] in
/// ±1/sqrt(K), every RMSNorm weight (input / post-attention / pre- and post-feedforward / final, q_norm,
/// k_norm) in [-0.5, 0.5), which Gemma applies as 1 + w. No lm_head (tied).
inline std::map<std::string, Tensor> tiny_gemma3_tensors(const TinyGemma3& s) {
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
    norm(p + "self_attn.q_norm.weight", s.head_dim);
    norm(p + "self_attn.k_norm.weight", s.head_dim);
    linear(p + "self_attn.o_proj.weight", s.hidden, s.heads * s.head_dim);
    norm(p + "post_attention_layernorm.weight", s.hidden);
    norm(p + "pre_feedforward_layernorm.weight", s.hidden);
    linear(p + "mlp.gate_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.up_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.down_proj.weight", s.hidden, s.ffn);
    norm(p + "post_feedforward_layernorm.weight", s.hidden);
  }
  norm("model.norm.weight", s.hidden);
  return std::move(draw.t);
}

/// The config.json of a Gemma 3 of sizes `s`, with the keys gemma-3-1b-it's config.json writes (sliding
/// windows from sliding_window_pattern, no layer_types).
inline nlohmann::json tiny_gemma3_config(const TinyGemma3& s) {
  return {{"architectures", {"Gemma3ForCausalLM"}},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"attn_logit_softcapping", nullptr},
          {"bos_token_id", 2},
          {"cache_implementation", "hybrid"},
          {"eos_token_id", {1, 106}},
          {"final_logit_softcapping", nullptr},
          {"head_dim", s.head_dim},
          {"hidden_activation", "gelu_pytorch_tanh"},
          {"hidden_size", s.hidden},
          {"initializer_range", 0.02},
          {"intermediate_size", s.ffn},
          {"max_position_embeddings", s.max_positions},
          {"model_type", "gemma3_text"},
          {"num_attention_heads", s.heads},
          {"num_hidden_layers", s.layers},
          {"num_key_value_heads", s.kv_heads},
          {"pad_token_id", 0},
          {"query_pre_attn_scalar", s.query_pre_attn_scalar},
          {"rms_norm_eps", s.eps},
          {"rope_local_base_freq", s.rope_local_theta},
          {"rope_scaling", {{"factor", s.rope_linear_factor}, {"rope_type", "linear"}}},
          {"rope_theta", s.rope_theta},
          {"sliding_window", s.sliding_window},
          {"sliding_window_pattern", s.sliding_pattern},
          {"torch_dtype", "float32"},
          {"use_cache", true},
          {"vocab_size", s.vocab}};
}

}  // namespace kq::testing
