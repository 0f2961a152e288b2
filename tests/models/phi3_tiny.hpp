#pragma once
// A tiny random Phi-3 (model_type "phi3", Phi3ForCausalLM tensor names: self_attn.qkv_proj and mlp.gate_up_proj
// fused, F32 safetensors) written to a folder, for tests of the fused weights, partial_rotary_factor and longrope
// that need no shared data: its tensors are kept so that a test can recompute the forward itself or write the
// same weights under other names.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kq/tensor.hpp"
#include "models/qwen3_tiny.hpp"  // TinyRandom, TinyTensorDraw, write_model_folder

namespace kq::testing {

/// Sizes of a tiny Phi-3: head_dim = hidden / heads = 16, of which partial_rotary_factor 0.75 rotates the first 12
/// (6 longrope factors per list), GQA (4 query heads over 2 kv heads), untied embeddings, max_position_embeddings
/// 256 over original_max_position_embeddings 64 (longrope factor 4: attention factor sqrt(1 + ln 4 / ln 64)).
struct TinyPhi3 {
  int64_t layers = 2, hidden = 64, heads = 4, kv_heads = 2, ffn = 96, vocab = 100;
  double rope_theta = 10000.0, eps = 1e-5, partial_rotary_factor = 0.75;
  int64_t max_positions = 256, original_max_positions = 64;
  bool longrope = true;
  uint64_t seed = 3;
  int64_t head_dim() const { return hidden / heads; }
  int64_t rotary_dim() const { return static_cast<int64_t>(double(head_dim()) * partial_rotary_factor); }
  /// longrope's short factors (in [1, 3)) and long factors (in [2, 8)), rotary_dim/2 each, fixed by the seed.
  std::vector<double> short_factor() const { return factors(1, 3, 11); }
  std::vector<double> long_factor() const { return factors(2, 8, 12); }
  /// The attention factor transformers computes for these sizes: sqrt(1 + ln(256/64) / ln(64)).
  double attention_factor() const {
    const double f = double(max_positions) / double(original_max_positions);
    return f <= 1 ? 1.0 : std::sqrt(1 + std::log(f) / std::log(double(original_max_positions)));
  }

 private:
  std::vector<double> factors(double lo, double hi, uint64_t salt) const {
    TinyRandom r(seed * 1000 + salt);
    std::vector<double> v(size_t(rotary_dim() / 2));
    for (double& x : v) x = r.uniform(lo, hi);
    return v;
  }
};

/// The tensors of a random Phi3ForCausalLM of sizes `s`: embeddings in [-1, 1), each projection [N, K] in
/// ±1/sqrt(K) (qkv_proj [(heads + 2·kv_heads)·head_dim, hidden], gate_up_proj [2·ffn, hidden]), every norm gain in
/// [0.5, 1.5).
inline std::map<std::string, Tensor> tiny_phi3_tensors(const TinyPhi3& s) {
  TinyTensorDraw draw(s.seed);
  const auto linear = [&](const std::string& name, int64_t n, int64_t k) { draw.linear(name, n, k); };
  const auto gain = [&](const std::string& name, int64_t n) { draw.uniform(name, {n}, 0.5, 1.5); };
  const int64_t hd = s.head_dim();
  draw.uniform("model.embed_tokens.weight", {s.vocab, s.hidden}, -1, 1);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    gain(p + "input_layernorm.weight", s.hidden);
    linear(p + "self_attn.qkv_proj.weight", (s.heads + 2 * s.kv_heads) * hd, s.hidden);
    linear(p + "self_attn.o_proj.weight", s.hidden, s.heads * hd);
    gain(p + "post_attention_layernorm.weight", s.hidden);
    linear(p + "mlp.gate_up_proj.weight", 2 * s.ffn, s.hidden);
    linear(p + "mlp.down_proj.weight", s.hidden, s.ffn);
  }
  gain("model.norm.weight", s.hidden);
  linear("lm_head.weight", s.vocab, s.hidden);
  return std::move(draw.t);
}

/// The config.json of a Phi-3 of sizes `s` (as Phi-4-mini's writes its keys; no rope_scaling unless s.longrope).
inline nlohmann::json tiny_phi3_config(const TinyPhi3& s) {
  nlohmann::json j = {{"architectures", {"Phi3ForCausalLM"}},
                      {"model_type", "phi3"},
                      {"attention_bias", false},
                      {"attention_dropout", 0.0},
                      {"hidden_act", "silu"},
                      {"hidden_size", s.hidden},
                      {"intermediate_size", s.ffn},
                      {"max_position_embeddings", s.max_positions},
                      {"num_attention_heads", s.heads},
                      {"num_hidden_layers", s.layers},
                      {"num_key_value_heads", s.kv_heads},
                      {"original_max_position_embeddings", s.original_max_positions},
                      {"partial_rotary_factor", s.partial_rotary_factor},
                      {"rms_norm_eps", s.eps},
                      {"rope_scaling", nullptr},
                      {"rope_theta", s.rope_theta},
                      {"sliding_window", 262144},
                      {"tie_word_embeddings", false},
                      {"torch_dtype", "float32"},
                      {"vocab_size", s.vocab}};
  if (s.longrope)
    j["rope_scaling"] = {{"long_factor", s.long_factor()}, {"short_factor", s.short_factor()}, {"type", "longrope"}};
  return j;
}

/// The fused tensors of `t` (tiny_phi3_tensors) split into Llama's names (q/k/v_proj, gate/up_proj): rows of the
/// fused weights, copied.
inline std::map<std::string, Tensor> split_phi3_tensors(const std::map<std::string, Tensor>& t, const TinyPhi3& s) {
  std::map<std::string, Tensor> out;
  const int64_t q = s.heads * s.head_dim(), kv = s.kv_heads * s.head_dim();
  for (const auto& [name, tensor] : t) {
    const auto split = [&](const std::string& fused, std::vector<std::pair<std::string, int64_t>> parts) {
      if (!name.ends_with(fused)) return false;
      const std::string prefix = name.substr(0, name.size() - fused.size());
      int64_t row = 0;
      for (const auto& [part, rows] : parts) {
        out[prefix + part] = tensor.slice_rows(row, row + rows).clone();
        row += rows;
      }
      return true;
    };
    if (split("self_attn.qkv_proj.weight",
              {{"self_attn.q_proj.weight", q}, {"self_attn.k_proj.weight", kv}, {"self_attn.v_proj.weight", kv}}))
      continue;
    if (split("mlp.gate_up_proj.weight", {{"mlp.gate_proj.weight", s.ffn}, {"mlp.up_proj.weight", s.ffn}})) continue;
    out[name] = tensor;
  }
  return out;
}

}  // namespace kq::testing
