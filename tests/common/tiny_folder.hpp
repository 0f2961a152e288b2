#pragma once
// Tiny GPT-2 and Llama model folders written in BF16, F16 or F32, tied or not
// (random deterministic values; no tokenizer), for tests of what a load
// converts and holds in which dtype.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/dtype.hpp"
#include "kq/tensor.hpp"

namespace kq::testing {

inline constexpr int64_t kVocab = 96, kHidden = 64, kInter = 128, kLayers = 2, kPositions = 32;

/// What write_folder writes: the architecture (GPT-2 or Llama), the dtype of every tensor, a tied lm_head;
/// Llama only: the vocabulary, the key/value heads (of 4 query heads of 16) and model_type "gemma" instead of
/// "llama" (its (1 + w) norm gains, stored as w around 0, and GeGLU).
struct TinyFolder {
  bool gpt2;
  DType dtype;
  bool tied;
  int64_t vocab = kVocab;
  int64_t kv_heads = 2;
  bool gemma = false;
};

inline std::string dtype_key(DType t) { return t == DType::BF16 ? "bfloat16" : t == DType::F16 ? "float16" : "float32"; }

/// Deterministic values in [-a, a) (plus `center`), rounded to `dtype` as the file stores them.
inline Tensor values(DType dtype, const Shape& shape, uint32_t seed, float a, float center = 0.0f) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<float> f(static_cast<size_t>(n));
  uint32_t x = seed * 2654435761u + 12345u;
  for (float& v : f) {
    x = x * 1664525u + 1013904223u;
    v = center + a * (float(x >> 8) / float(1u << 24) * 2.0f - 1.0f);
  }
  Tensor t = Tensor::empty(dtype, shape);
  if (dtype == DType::F32)
    std::memcpy(t.raw_mut(), f.data(), f.size() * sizeof(float));
  else
    convert_from_f32(dtype, f.data(), t.raw_mut(), f.size());
  return t;
}

/// A tiny model folder (no tokenizer: the API quantizes and saves it, warning about that).
inline std::filesystem::path write_folder(const std::filesystem::path& dir, const TinyFolder& f) {
  std::filesystem::create_directories(dir);
  nlohmann::json cfg;
  std::map<std::string, Tensor> t;
  uint32_t seed = 1;
  const auto w = [&](const std::string& name, const Shape& shape) { t[name] = values(f.dtype, shape, seed++, 0.08f); };
  const bool gemma = !f.gpt2 && f.gemma;
  const auto gain = [&](const std::string& name, int64_t n) {
    t[name] = values(f.dtype, {n}, seed++, 0.1f, gemma ? 0.0f : 1.0f);
  };
  const auto bias = [&](const std::string& name, int64_t n) { t[name] = values(f.dtype, {n}, seed++, 0.02f); };
  if (f.gpt2) {
    cfg = {{"model_type", "gpt2"},    {"architectures", {"GPT2LMHeadModel"}},
           {"n_embd", kHidden},       {"n_head", 4},
           {"n_layer", kLayers},      {"n_positions", kPositions},
           {"n_inner", nullptr},      {"vocab_size", kVocab},
           {"activation_function", "gelu_new"}, {"layer_norm_epsilon", 1e-5},
           {"eos_token_id", 0},       {"tie_word_embeddings", f.tied},
           {"torch_dtype", dtype_key(f.dtype)}};
    w("transformer.wte.weight", {kVocab, kHidden});
    w("transformer.wpe.weight", {kPositions, kHidden});
    for (int64_t l = 0; l < kLayers; ++l) {
      const std::string p = "transformer.h." + std::to_string(l) + ".";
      gain(p + "ln_1.weight", kHidden);
      bias(p + "ln_1.bias", kHidden);
      w(p + "attn.c_attn.weight", {kHidden, 3 * kHidden});  // Conv1D: [in, out]
      bias(p + "attn.c_attn.bias", 3 * kHidden);
      w(p + "attn.c_proj.weight", {kHidden, kHidden});
      bias(p + "attn.c_proj.bias", kHidden);
      gain(p + "ln_2.weight", kHidden);
      bias(p + "ln_2.bias", kHidden);
      w(p + "mlp.c_fc.weight", {kHidden, 4 * kHidden});
      bias(p + "mlp.c_fc.bias", 4 * kHidden);
      w(p + "mlp.c_proj.weight", {4 * kHidden, kHidden});
      bias(p + "mlp.c_proj.bias", kHidden);
    }
    gain("transformer.ln_f.weight", kHidden);
    bias("transformer.ln_f.bias", kHidden);
  } else {
    cfg = {{"model_type", gemma ? "gemma" : "llama"},     {"architectures", {gemma ? "GemmaForCausalLM" : "LlamaForCausalLM"}},
           {"hidden_size", kHidden},         {"intermediate_size", kInter},
           {"num_hidden_layers", kLayers},   {"num_attention_heads", 4},
           {"num_key_value_heads", f.kv_heads}, {"head_dim", 16},
           {"max_position_embeddings", kPositions}, {"vocab_size", f.vocab},
           {"hidden_act", gemma ? "gelu_pytorch_tanh" : "silu"}, {"rms_norm_eps", 1e-5},
           {"rope_theta", 10000.0},          {"eos_token_id", 0},
           {"tie_word_embeddings", f.tied},  {"torch_dtype", dtype_key(f.dtype)}};
    w("model.embed_tokens.weight", {f.vocab, kHidden});
    for (int64_t l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      gain(p + "input_layernorm.weight", kHidden);
      w(p + "self_attn.q_proj.weight", {64, kHidden});
      w(p + "self_attn.k_proj.weight", {16 * f.kv_heads, kHidden});
      w(p + "self_attn.v_proj.weight", {16 * f.kv_heads, kHidden});
      w(p + "self_attn.o_proj.weight", {kHidden, 64});
      gain(p + "post_attention_layernorm.weight", kHidden);
      w(p + "mlp.gate_proj.weight", {kInter, kHidden});
      w(p + "mlp.up_proj.weight", {kInter, kHidden});
      w(p + "mlp.down_proj.weight", {kHidden, kInter});
    }
    gain("model.norm.weight", kHidden);
  }
  if (!f.tied) w("lm_head.weight", {f.gpt2 ? kVocab : f.vocab, kHidden});
  kq::testing::write_text(dir / "config.json", cfg.dump(2));
  write_safetensors(dir / "model.safetensors", t);
  return dir;
}

}  // namespace kq::testing
