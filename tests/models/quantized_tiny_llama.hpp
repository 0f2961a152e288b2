#pragma once
// The tiny Llama of the pre-quantized checkpoint tests (hub_checkpoint_test.cpp: AutoAWQ / AutoGPTQ;
// bnb_checkpoint_test.cpp: bitsandbytes NF4), written twice: as the checkpoint (each linear's tensors from the
// test-side packer of its format) and as the same model with the dequantized weights stored as F32.
// 2 layers, hidden 64, 2 query heads / 1 KV head of head_dim 32 (the smallest the CUDA attention runs), FFN 128,
// vocabulary 96.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/test_util.hpp"
#include "kq/tensor.hpp"
#include "models/qwen3_tiny.hpp"

namespace kq::testing {

inline constexpr int64_t kQtLayers = 2, kQtHidden = 64, kQtHeads = 2, kQtKvHeads = 1, kQtHeadDim = 32, kQtFfn = 128,
                         kQtVocab = 96;

/// config.json of the tiny Llama (`torch_dtype` as given; attention_bias: q/k/v/o biases).
inline nlohmann::json quantized_tiny_llama_config(bool attention_bias, const char* torch_dtype) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"attention_bias", attention_bias},
          {"head_dim", kQtHeadDim},
          {"hidden_act", "silu"},
          {"hidden_size", kQtHidden},
          {"intermediate_size", kQtFfn},
          {"max_position_embeddings", 64},
          {"num_attention_heads", kQtHeads},
          {"num_hidden_layers", kQtLayers},
          {"num_key_value_heads", kQtKvHeads},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", false},
          {"torch_dtype", torch_dtype},
          {"vocab_size", kQtVocab}};
}

/// The two folders of one tiny Llama.
struct QuantizedPair {
  std::filesystem::path quantized, ref;      ///< the checkpoint; the F32 model with the dequantized weights
  std::map<std::string, Tensor> reference;  ///< module -> F32 [N, K] dequantized weight
};

/// One linear's checkpoint tensors (name -> tensor) and its dequantized F32 [N, K] weight.
using QuantizedLayer = std::pair<std::map<std::string, Tensor>, Tensor>;

/// Writes `root`/`quantized_name` (config.json `quantized_config` with `quantization_config` added) and
/// `root`/ref (`ref_config`): every linear of every layer from `layer(module, N, K, seed)` (seeds 1, 2, ... in
/// order), the other tensors from TinyRandom(`rng_seed`); with `f16_attention_bias` the attention projections get
/// F16 biases (F32 in the reference folder).
inline QuantizedPair write_quantized_pair(
    const std::filesystem::path& root, const std::string& quantized_name, uint64_t rng_seed,
    nlohmann::json quantized_config, const nlohmann::json& quantization_config, const nlohmann::json& ref_config,
    bool f16_attention_bias,
    const std::function<QuantizedLayer(const std::string& module, int64_t N, int64_t K, uint64_t seed)>& layer) {
  TinyRandom r(rng_seed);
  std::map<std::string, Tensor> plain, quantized;
  plain["model.embed_tokens.weight"] = tiny_random_tensor(r, {kQtVocab, kQtHidden}, -1, 1);
  plain["model.norm.weight"] = tiny_random_tensor(r, {kQtHidden}, 0.5, 1.5);
  plain["lm_head.weight"] = tiny_random_tensor(r, {kQtVocab, kQtHidden}, -0.125, 0.125);
  QuantizedPair p;
  uint64_t seed = 1;
  for (int64_t l = 0; l < kQtLayers; ++l) {
    const std::string pre = fmt::format("model.layers.{}.", l);
    plain[pre + "input_layernorm.weight"] = tiny_random_tensor(r, {kQtHidden}, 0.5, 1.5);
    plain[pre + "post_attention_layernorm.weight"] = tiny_random_tensor(r, {kQtHidden}, 0.5, 1.5);
    for (const auto& [m, N, K] : {std::tuple{"self_attn.q_proj", kQtHeads * kQtHeadDim, kQtHidden},
                                  std::tuple{"self_attn.k_proj", kQtKvHeads * kQtHeadDim, kQtHidden},
                                  std::tuple{"self_attn.v_proj", kQtKvHeads * kQtHeadDim, kQtHidden},
                                  std::tuple{"self_attn.o_proj", kQtHidden, kQtHeads * kQtHeadDim},
                                  std::tuple{"mlp.gate_proj", kQtFfn, kQtHidden},
                                  std::tuple{"mlp.up_proj", kQtFfn, kQtHidden},
                                  std::tuple{"mlp.down_proj", kQtHidden, kQtFfn}}) {
      const std::string module = pre + m;
      auto [tensors, reference] = layer(module, N, K, seed++);
      for (auto& [name, t] : tensors) quantized[name] = t;
      p.reference[module] = reference;
      plain[module + ".weight"] = reference;
      if (f16_attention_bias && std::string(m).starts_with("self_attn.")) {
        const Tensor b32 = tiny_random_tensor(r, {N}, -0.5, 0.5);
        Tensor b = Tensor::empty(DType::F16, {N});
        convert_from_f32(DType::F16, b32.data<float>(), b.mutable_data<uint16_t>(), size_t(N));
        quantized[module + ".bias"] = b;
        plain[module + ".bias"] = b.to_f32();
      }
    }
  }
  for (const auto& [name, t] : plain)
    if (!name.ends_with("_proj.weight")) quantized[name] = t;
  quantized_config["quantization_config"] = quantization_config;
  p.quantized = write_model_folder(root / quantized_name, quantized_config, quantized);
  p.ref = write_model_folder(root / "ref", ref_config, plain);
  return p;
}

}  // namespace kq::testing
