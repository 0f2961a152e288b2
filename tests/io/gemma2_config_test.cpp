// config.json of model_type "gemma2" (Gemma2Config) and "gemma" (GemmaConfig): the keys of gemma-2-2b,
// gemma-2-27b and gemma-2b, the defaults of absent keys, layer_types over the even-layer rule, soft-capping
// (null: none; a bad value refused naming the key), the activation keys, and the refusals.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/io_test_util.hpp"
#include "kq/config.hpp"

namespace kq {
namespace {
using nlohmann::json;
using testing::expect_throw_with;

// The keys and values of gemma-2-2b's config.json (transformers 4.42).
const char* kGemma2_2b = R"({
  "architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": 1,
  "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
  "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "initializer_range": 0.02,
  "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2",
  "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
  "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
  "torch_dtype": "float32", "transformers_version": "4.42.4", "use_cache": true, "vocab_size": 256000})";

// The keys and values of gemma-2b's config.json (Gemma 1; its legacy hidden_act says "gelu").
const char* kGemma_2b = R"({
  "architectures": ["GemmaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 2,
  "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 16384, "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
  "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 10000.0, "torch_dtype": "bfloat16", "transformers_version": "4.38.0.dev0",
  "use_cache": true, "vocab_size": 256000})";

ModelConfig parse(const json& j) { return parse_model_config(j, "test/config.json"); }

/// Expects parse() to throw FormatError naming the source and every needle.
void expect_bad(const json& j, std::initializer_list<std::string> needles) {
  expect_throw_with<FormatError>([&] { parse(j); }, {"test/config.json"});
  expect_throw_with<FormatError>([&] { parse(j); }, needles);
}

/// Gemma2's rule: the even layers (0, 2, ...) are the sliding ones.
std::vector<bool> even_flags(int64_t layers) {
  std::vector<bool> v;
  for (int64_t l = 0; l < layers; ++l) v.push_back(l % 2 == 0);
  return v;
}

TEST(Gemma2Config, Gemma2_2b) {
  const ModelConfig c = parse(json::parse(kGemma2_2b));
  EXPECT_EQ(c.arch, Arch::Gemma2);
  EXPECT_EQ(arch_name(c.arch), "gemma2");
  EXPECT_EQ(c.hidden_size, 2304);
  EXPECT_EQ(c.num_layers, 26);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_positions, 8192);
  EXPECT_EQ(c.rope_theta, 1e4);
  EXPECT_EQ(c.rope_local_theta, 0.0);  // one RoPE table
  EXPECT_EQ(c.query_pre_attn_scalar, 256);
  EXPECT_EQ(c.attn_logit_softcapping, 50.0);
  EXPECT_EQ(c.final_logit_softcapping, 30.0);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.sliding_layers, even_flags(26));
  EXPECT_EQ(layer_window(c, 0), 4096);
  EXPECT_EQ(layer_window(c, 1), 0);
  EXPECT_FALSE(layer_rope_local(c, 0));
  EXPECT_EQ(c.activation, "gelu_pytorch_tanh");
  EXPECT_TRUE(c.norm_offset && c.post_norms && c.scale_embeddings && c.tie_word_embeddings);
  EXPECT_FALSE(c.qk_norm || c.attention_bias || c.mlp_bias || c.qkv_bias);
}

// gemma-2-27b: head_dim 128 and query_pre_attn_scalar 144 = hidden_size / num_attention_heads, not head_dim.
TEST(Gemma2Config, Gemma2_27bScalesByQueryPreAttnScalar) {
  json j = json::parse(kGemma2_2b);
  j["hidden_size"] = 4608;
  j["intermediate_size"] = 36864;
  j["num_hidden_layers"] = 46;
  j["num_attention_heads"] = 32;
  j["num_key_value_heads"] = 16;
  j["head_dim"] = 128;
  j["query_pre_attn_scalar"] = 144;
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.query_pre_attn_scalar, 144);
  EXPECT_EQ(c.sliding_layers, even_flags(46));
}

// Absent keys take Gemma2Config's defaults (softcaps 50 / 30, window 4096, 4 kv heads, head_dim 256).
TEST(Gemma2Config, DefaultsAreGemma2Configs) {
  const ModelConfig c = parse({{"model_type", "gemma2"},
                               {"hidden_size", 640},
                               {"intermediate_size", 2048},
                               {"num_hidden_layers", 5},
                               {"num_attention_heads", 8},
                               {"vocab_size", 1000}});
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_positions, 8192);
  EXPECT_EQ(c.rope_theta, 1e4);
  EXPECT_EQ(c.query_pre_attn_scalar, 256);
  EXPECT_EQ(c.attn_logit_softcapping, 50.0);
  EXPECT_EQ(c.final_logit_softcapping, 30.0);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.sliding_layers, even_flags(5));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.activation, "gelu_pytorch_tanh");
}

// Null soft-capping is none; a value that is not a finite positive number is refused naming the key.
TEST(Gemma2Config, SoftCappingNullIsNoneBadValuesAreRefused) {
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"}) {
    json j = json::parse(kGemma2_2b);
    j[key] = nullptr;
    const ModelConfig c = parse(j);
    EXPECT_EQ(std::string(key) == "attn_logit_softcapping" ? c.attn_logit_softcapping : c.final_logit_softcapping,
              0.0)
        << key;
    const double inf = std::numeric_limits<double>::infinity();
    for (const json& bad : {json(0.0), json(-30.0), json("30"), json(true), json(inf)}) {
      j[key] = bad;
      expect_bad(j, {key});
    }
    // Finite as a double, not as the float32 the cap is applied in (tester round 23: 1e300 and 3.5e38 ran into
    // NaN logits blamed on the weights); FLT_MAX itself is a cap.
    for (const double bad : {1e300, 3.5e38, 1e-300}) {
      j[key] = bad;
      expect_bad(j, {fmt::format("key '{}'", key), "outside float32's range", "soft-capping"});
    }
    j[key] = 3.4028235e38;
    EXPECT_NO_THROW(parse(j)) << key;
  }
}

// transformers >= 4.53 writes layer_types; it wins over the even-layer rule. A null window: none anywhere.
TEST(Gemma2Config, LayerTypesAndANullWindow) {
  json j = json::parse(kGemma2_2b);
  j["num_hidden_layers"] = 3;
  j["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention"};
  ModelConfig c = parse(j);
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{false, true, true}));
  j["layer_types"] = {"sliding_attention", "full_attention"};
  expect_bad(j, {"layer_types", "3"});
  j.erase("layer_types");
  j["sliding_window"] = nullptr;
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 0);
  for (int64_t l = 0; l < 3; ++l) EXPECT_EQ(layer_window(c, l), 0);
}

TEST(Gemma2Config, ActivationIsHiddenActivation) {
  json j = json::parse(kGemma2_2b);
  j["hidden_act"] = "silu";  // not Gemma2Config's key: not read
  EXPECT_EQ(parse(j).activation, "gelu_pytorch_tanh");
  j["hidden_activation"] = "gelu";
  EXPECT_EQ(parse(j).activation, "gelu");
  j["hidden_activation"] = "silu";
  expect_bad(j, {"hidden_activation 'silu'", "gemma2", "gelu_pytorch_tanh"});
  j = json::parse(kGemma2_2b);
  j["query_pre_attn_scalar"] = 0;
  expect_bad(j, {"query_pre_attn_scalar"});
}

TEST(GemmaConfig, Gemma2b) {
  const ModelConfig c = parse(json::parse(kGemma_2b));
  EXPECT_EQ(c.arch, Arch::Gemma);
  EXPECT_EQ(arch_name(c.arch), "gemma");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_positions, 8192);
  EXPECT_EQ(c.query_pre_attn_scalar, 0.0);  // head_dim^-1/2
  EXPECT_EQ(c.attn_logit_softcapping, 0.0);
  EXPECT_EQ(c.final_logit_softcapping, 0.0);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.sliding_layers.empty());
  EXPECT_EQ(c.rope_local_theta, 0.0);
  // The legacy hidden_act "gelu" is overwritten: GemmaMLP's gelu_pytorch_tanh (transformers 4.39 to 4.47).
  EXPECT_EQ(c.activation, "gelu_pytorch_tanh");
  EXPECT_TRUE(c.norm_offset && c.scale_embeddings && c.tie_word_embeddings);
  EXPECT_FALSE(c.post_norms || c.qk_norm || c.attention_bias || c.mlp_bias);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

// hidden_activation, when given, is the activation (gemma-1.1 configs write "gelu_pytorch_tanh").
TEST(GemmaConfig, HiddenActivationOverwritesHiddenAct) {
  json j = json::parse(kGemma_2b);
  j["hidden_activation"] = "gelu";
  EXPECT_EQ(parse(j).activation, "gelu");
  j["hidden_activation"] = nullptr;
  EXPECT_EQ(parse(j).activation, "gelu_pytorch_tanh");
  j["hidden_activation"] = "relu";
  expect_bad(j, {"hidden_activation 'relu'", "gemma"});
}

// GemmaConfig's defaults: 16 kv heads when absent (8 query heads do not divide by it: refused naming the
// default), head_dim 256.
TEST(GemmaConfig, DefaultsAreGemmaConfigs) {
  json j = {{"model_type", "gemma"},       {"hidden_size", 640}, {"intermediate_size", 2048},
            {"num_hidden_layers", 2},      {"num_attention_heads", 16}, {"vocab_size", 1000}};
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_positions, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  j["num_attention_heads"] = 8;
  expect_bad(j, {"num_key_value_heads 16", "GemmaConfig"});
}

// GemmaForCausalLM has no soft-capping: a key that would be ignored is refused, pointing at gemma2; null is fine.
TEST(GemmaConfig, SoftCappingKeysAreRefused) {
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"}) {
    json j = json::parse(kGemma_2b);
    j[key] = nullptr;
    EXPECT_NO_THROW(parse(j));
    j[key] = 30.0;
    expect_bad(j, {key, "gemma2"});
  }
}

}  // namespace
}  // namespace kq
