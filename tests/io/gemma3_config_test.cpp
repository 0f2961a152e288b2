// config.json of model_type "gemma3_text" (Gemma3TextConfig): gemma-3-1b-it's keys, the defaults of absent
// keys, layer_types over sliding_window_pattern, transformers 5's rope_parameters per layer type, and the
// refusals (attention soft-capping, bidirectional attention, other activations and the multimodal gemma3
// folders). Gemma 1 and 2: gemma2_config_test.cpp.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/io_test_util.hpp"
#include "kq/config.hpp"

namespace kq {
namespace {
using nlohmann::json;
using testing::expect_throw_with;

// The keys and values of gemma-3-1b-it's config.json (transformers 4.50).
const char* kGemma3_1b = R"({
  "architectures": ["Gemma3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "attn_logit_softcapping": null, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": [1, 106],
  "final_logit_softcapping": null, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152,
  "initializer_range": 0.02, "intermediate_size": 6912, "max_position_embeddings": 32768,
  "model_type": "gemma3_text", "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
  "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
  "rope_scaling": null, "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6,
  "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "use_cache": true, "vocab_size": 262144})";

ModelConfig parse(const json& j) { return parse_model_config(j, "test/config.json"); }

/// Expects parse() to throw FormatError naming the source and every needle.
void expect_bad(const json& j, std::initializer_list<std::string> needles) {
  expect_throw_with<FormatError>([&] { parse(j); }, {"test/config.json"});
  expect_throw_with<FormatError>([&] { parse(j); }, needles);
}

/// The sliding flags of `layers` layers with every pattern-th global (Gemma3TextConfig's rule).
std::vector<bool> pattern_flags(int64_t layers, int64_t pattern) {
  std::vector<bool> v;
  for (int64_t l = 0; l < layers; ++l) v.push_back((l + 1) % pattern != 0);
  return v;
}

TEST(Gemma3Config, Gemma3_1bIt) {
  const ModelConfig c = parse(json::parse(kGemma3_1b));
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(arch_name(c.arch), "gemma3_text");
  EXPECT_EQ(c.hidden_size, 1152);
  EXPECT_EQ(c.intermediate_size, 6912);
  EXPECT_EQ(c.num_layers, 26);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 256);  // num_heads · head_dim = 1024 != hidden_size
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_EQ(c.max_positions, 32768);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_local_theta, 1e4);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Default);
  EXPECT_EQ(c.query_pre_attn_scalar, 256);
  EXPECT_EQ(c.sliding_window, 512);
  const std::vector<bool> sliding = pattern_flags(26, 6);
  EXPECT_EQ(c.sliding_layers, sliding);
  EXPECT_FALSE(c.sliding_layers[5]);  // layers 5, 11, 17, 23: global
  EXPECT_TRUE(c.sliding_layers[25]);
  EXPECT_EQ(layer_window(c, 5), 0);
  EXPECT_EQ(layer_window(c, 4), 512);
  EXPECT_TRUE(layer_rope_local(c, 4));
  EXPECT_FALSE(layer_rope_local(c, 5));
  EXPECT_EQ(c.activation, "gelu_pytorch_tanh");
  EXPECT_TRUE(c.qk_norm && c.norm_offset && c.post_norms && c.scale_embeddings && c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias || c.mlp_bias || c.qkv_bias);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

// Absent keys take Gemma3TextConfig's defaults (not LlamaConfig's).
TEST(Gemma3Config, DefaultsAreGemma3TextConfigs) {
  const ModelConfig c = parse({{"model_type", "gemma3_text"},
                               {"hidden_size", 640},
                               {"intermediate_size", 2048},
                               {"num_hidden_layers", 8},
                               {"num_attention_heads", 8},
                               {"vocab_size", 1000}});
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.max_positions, 131072);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_local_theta, 1e4);
  EXPECT_EQ(c.query_pre_attn_scalar, 256);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.sliding_layers, pattern_flags(8, 6));
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.activation, "gelu_pytorch_tanh");
  // hidden_act is not Gemma3TextConfig's key: not read.
  json j = json::parse(kGemma3_1b);
  j["hidden_act"] = "silu";
  EXPECT_EQ(parse(j).activation, "gelu_pytorch_tanh");
}

TEST(Gemma3Config, LayerTypesOverThePatternAndANullWindow) {
  json j = json::parse(kGemma3_1b);
  j["num_hidden_layers"] = 3;
  j["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  ModelConfig c = parse(j);
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{false, true, false}));
  j["sliding_window"] = nullptr;  // no window, but the sliding layers keep their RoPE base
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(layer_window(c, 1), 0);
  EXPECT_TRUE(layer_rope_local(c, 1));
  j.erase("layer_types");
  j["sliding_window_pattern"] = 2;
  EXPECT_EQ(parse(j).sliding_layers, (std::vector<bool>{true, false, true}));
  j["layer_types"] = {"full_attention", "chunked_attention", "full_attention"};
  expect_bad(j, {"layer_types[1]", "chunked_attention"});
}

// rope_scaling is the global layers' (Gemma 3 4B / 12B / 27B: linear, factor 8); the local layers take none.
TEST(Gemma3Config, RopeScalingIsTheGlobalLayers) {
  json j = json::parse(kGemma3_1b);
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_EQ(c.rope_local_theta, 1e4);
}

// transformers 5: rope_parameters {"full_attention": {...}, "sliding_attention": {...}}.
TEST(Gemma3Config, RopeParametersPerLayerType) {
  json j = json::parse(kGemma3_1b);
  j.erase("rope_theta");
  j.erase("rope_local_base_freq");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1e6}}},
                          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
  ModelConfig c = parse(j);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_local_theta, 1e4);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_EQ(c.rope_scaling.factor, 8.0);
  j["rope_parameters"]["sliding_attention"]["rope_theta"] = 2e4;
  EXPECT_EQ(parse(j).rope_local_theta, 2e4);
  j["rope_parameters"]["sliding_attention"]["rope_type"] = "linear";
  expect_bad(j, {"rope_parameters.sliding_attention.rope_type", "default"});
  j["rope_parameters"] = {{"full_attention", {{"rope_theta", 1e6}}}, {"chunked_attention", json::object()}};
  expect_bad(j, {"rope_parameters.chunked_attention"});
  // Other model types keep refusing the per-layer-type form.
  json llama = j;
  llama["model_type"] = "llama";
  expect_bad(llama, {"'rope_parameters.", "per layer type are not supported"});
}

// Gemma3ForCausalLM caps its logits when final_logit_softcapping is not null; attn_logit_softcapping, which
// Gemma3Attention does not apply in every transformers version, is refused naming the key.
TEST(Gemma3Config, FinalSoftCappingIsReadAttentionSoftCappingRefused) {
  json j = json::parse(kGemma3_1b);
  EXPECT_EQ(parse(j).final_logit_softcapping, 0.0);
  EXPECT_EQ(parse(j).attn_logit_softcapping, 0.0);
  j["final_logit_softcapping"] = 30.0;
  EXPECT_EQ(parse(j).final_logit_softcapping, 30.0);
  j["final_logit_softcapping"] = -1.0;
  expect_bad(j, {"final_logit_softcapping", "finite positive"});
  j = json::parse(kGemma3_1b);
  j["attn_logit_softcapping"] = 50.0;
  expect_bad(j, {"attn_logit_softcapping", "50", "gemma3_text"});
}

// rope_scaling (transformers 4) and rope_parameters.full_attention (transformers 5) must agree (tester 22).
TEST(Gemma3Config, RopeScalingConflictingWithRopeParametersIsRefused) {
  json j = json::parse(kGemma3_1b);
  j.erase("rope_theta");
  j.erase("rope_local_base_freq");
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e6}}},
                          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
  expect_bad(j, {"rope_scaling {\"factor\":8.0,\"rope_type\":\"linear\"} conflicts with "
                 "rope_parameters.full_attention {"});
  j["rope_scaling"]["factor"] = 2.0;  // the same scaling: accepted
  EXPECT_EQ(parse(j).rope_scaling.factor, 2.0);
}

TEST(Gemma3Config, OtherRefusals) {
  json j = json::parse(kGemma3_1b);
  j["hidden_activation"] = "silu";
  expect_bad(j, {"hidden_activation 'silu'", "gelu_pytorch_tanh"});
  j = json::parse(kGemma3_1b);
  j["use_bidirectional_attention"] = true;
  expect_bad(j, {"use_bidirectional_attention"});
  j = json::parse(kGemma3_1b);
  j["query_pre_attn_scalar"] = 0;
  expect_bad(j, {"query_pre_attn_scalar"});
  j = json::parse(kGemma3_1b);
  j["rope_local_base_freq"] = -1;
  expect_bad(j, {"rope_local_base_freq"});
}

// The multimodal folders (Gemma3ForConditionalGeneration: gemma-3-4b-it and larger) nest the text config.
TEST(Gemma3Config, TheMultimodalGemma3IsRefusedNamingGemma3Text) {
  json text = json::parse(kGemma3_1b);
  const json j = {{"architectures", {"Gemma3ForConditionalGeneration"}},
                  {"model_type", "gemma3"},
                  {"text_config", text},
                  {"vision_config", {{"model_type", "siglip_vision_model"}}}};
  expect_bad(j, {"model_type 'gemma3'", "Gemma3ForConditionalGeneration", "text_config", "gemma3_text"});
}

// The unknown-model_type message lists the Gemmas.
TEST(Gemma3Config, SupportedListNamesTheGemmas) {
  expect_bad({{"model_type", "t5"}}, {"gemma, gemma2, gemma3_text"});
}

}  // namespace
}  // namespace kq
