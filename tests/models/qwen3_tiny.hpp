#pragma once
// A tiny random Qwen3 (model_type "qwen3", Qwen3ForCausalLM tensor names, F32 safetensors) written to a folder,
// for tests of the q_norm / k_norm path that need no shared data: its tensors are kept so that a test can recompute
// the forward itself, change one and write the folder again, or write the same weights as another model_type.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "kq/dtype.hpp"
#include "kq/tensor.hpp"

namespace kq::testing {

/// Sizes of a tiny Qwen3. The defaults have num_heads · head_dim (128) != hidden_size (64), GQA (4 query heads
/// over 2 kv heads) and untied embeddings.
struct TinyQwen3 {
  int64_t layers = 2, hidden = 64, heads = 4, kv_heads = 2, head_dim = 32, ffn = 96, vocab = 100;
  double rope_theta = 1e6, eps = 1e-6;
  int64_t max_positions = 128;
  uint64_t seed = 1;
};

/// Uniform values in [lo, hi) from a splitmix64 stream.
class TinyRandom {
 public:
  explicit TinyRandom(uint64_t seed) : state_(seed) {}
  double uniform(double lo, double hi) {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return lo + (hi - lo) * double((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
  }

 private:
  uint64_t state_;
};

/// An F32 tensor of `shape` with values in [lo, hi).
inline Tensor tiny_random_tensor(TinyRandom& r, const Shape& shape, double lo, double hi) {
  Tensor t = Tensor::empty(DType::F32, shape);
  float* p = t.mutable_data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(r.uniform(lo, hi));
  return t;
}

/// The named tensors of a tiny random model, drawn in call order from one TinyRandom stream (the order of the
/// calls fixes every value).
struct TinyTensorDraw {
  explicit TinyTensorDraw(uint64_t seed) : r(seed) {}
  /// A projection weight `name` [n, k] with values in ±1/sqrt(k).
  void linear(const std::string& name, int64_t n, int64_t k) {
    const double a = 1.0 / std::sqrt(double(k));
    t[name] = tiny_random_tensor(r, {n, k}, -a, a);
  }
  /// A tensor `name` of `shape` with values in [lo, hi).
  void uniform(const std::string& name, const Shape& shape, double lo, double hi) {
    t[name] = tiny_random_tensor(r, shape, lo, hi);
  }

  TinyRandom r;
  std::map<std::string, Tensor> t;
};

/// The tensors of a random Qwen3ForCausalLM of sizes `s`: embeddings in [-1, 1), each projection [N, K] in
/// ±1/sqrt(K), every norm gain (input / post-attention / final, q_norm, k_norm) in [0.5, 1.5).
inline std::map<std::string, Tensor> tiny_qwen3_tensors(const TinyQwen3& s) {
  TinyTensorDraw draw(s.seed);
  const auto linear = [&](const std::string& name, int64_t n, int64_t k) { draw.linear(name, n, k); };
  const auto gain = [&](const std::string& name, int64_t n) { draw.uniform(name, {n}, 0.5, 1.5); };
  draw.uniform("model.embed_tokens.weight", {s.vocab, s.hidden}, -1, 1);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    gain(p + "input_layernorm.weight", s.hidden);
    linear(p + "self_attn.q_proj.weight", s.heads * s.head_dim, s.hidden);
    linear(p + "self_attn.k_proj.weight", s.kv_heads * s.head_dim, s.hidden);
    linear(p + "self_attn.v_proj.weight", s.kv_heads * s.head_dim, s.hidden);
    gain(p + "self_attn.q_norm.weight", s.head_dim);
    gain(p + "self_attn.k_norm.weight", s.head_dim);
    linear(p + "self_attn.o_proj.weight", s.hidden, s.heads * s.head_dim);
    gain(p + "post_attention_layernorm.weight", s.hidden);
    linear(p + "mlp.gate_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.up_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.down_proj.weight", s.hidden, s.ffn);
  }
  gain("model.norm.weight", s.hidden);
  linear("lm_head.weight", s.vocab, s.hidden);
  return std::move(draw.t);
}

/// The config.json of a Qwen3 of sizes `s` (as Qwen3-0.6B's writes its keys).
inline nlohmann::json tiny_qwen3_config(const TinyQwen3& s) {
  return {{"architectures", {"Qwen3ForCausalLM"}},
          {"model_type", "qwen3"},
          {"attention_bias", false},
          {"head_dim", s.head_dim},
          {"hidden_act", "silu"},
          {"hidden_size", s.hidden},
          {"intermediate_size", s.ffn},
          {"max_position_embeddings", s.max_positions},
          {"max_window_layers", s.layers},
          {"num_attention_heads", s.heads},
          {"num_hidden_layers", s.layers},
          {"num_key_value_heads", s.kv_heads},
          {"rms_norm_eps", s.eps},
          {"rope_scaling", nullptr},
          {"rope_theta", s.rope_theta},
          {"sliding_window", nullptr},
          {"tie_word_embeddings", false},
          {"torch_dtype", "float32"},
          {"use_sliding_window", false},
          {"vocab_size", s.vocab}};
}

/// Writes `config` as dest/config.json and `tensors` as dest/model.safetensors; returns `dest`.
inline std::filesystem::path write_model_folder(const std::filesystem::path& dest, const nlohmann::json& config,
                                                const std::map<std::string, Tensor>& tensors) {
  std::filesystem::create_directories(dest);
  std::ofstream(dest / "config.json") << config.dump(2);
  write_safetensors(dest / "model.safetensors", tensors);
  return dest;
}

/// A tiny Qwen3 of sizes `s` in `dest` (tiny_qwen3_config, tiny_qwen3_tensors), after `edit` (when given) changed
/// its tensors.
inline std::filesystem::path write_tiny_qwen3(const std::filesystem::path& dest, const TinyQwen3& s = {},
                                              const std::function<void(std::map<std::string, Tensor>&)>& edit = {}) {
  std::map<std::string, Tensor> t = tiny_qwen3_tensors(s);
  if (edit) edit(t);
  return write_model_folder(dest, tiny_qwen3_config(s), t);
}

}  // namespace kq::testing
