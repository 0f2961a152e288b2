// config.json parsing: the shared models (values from the models README),
// hub-style GPT-2 and transformers-4 Llama configs, and rejections.
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/io_test_util.hpp"
#include "kq/config.hpp"

namespace kq {
namespace {
using nlohmann::json;
using testing::expect_throw_with;

// The original GPT-2 (124M) config.json from the Hugging Face hub.
const char* kHubGpt2 = R"({
  "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
  "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
  "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
  "summary_first_dropout": 0.1, "summary_proj_to_labels": true, "summary_type": "cls_index",
  "summary_use_proj": true, "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257})";

// A transformers-4 Llama config (Llama-3-8B shape): top-level rope_theta, no head_dim.
const char* kLlama4 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 500000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0",
  "use_cache": true, "vocab_size": 128256})";

ModelConfig parse(const json& j) { return parse_model_config(j, "test/config.json"); }

/// Expects parse() to throw FormatError naming the source and every needle.
void expect_bad(const json& j, std::initializer_list<std::string> needles) {
  expect_throw_with<FormatError>([&] { parse(j); }, {"test/config.json"});
  expect_throw_with<FormatError>([&] { parse(j); }, needles);
}

TEST(Config, SharedGpt2Tiny) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const ModelConfig c = load_model_config(testing::shared_dir() / "models/gpt2-tiny");
  EXPECT_EQ(c.arch, Arch::GPT2);
  EXPECT_EQ(arch_name(c.arch), "gpt2");
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.intermediate_size, 512);  // n_inner null -> 4·n_embd
  EXPECT_EQ(c.max_positions, 256);
  EXPECT_EQ(c.vocab_size, 8192);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.activation, "gelu_new");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "float32");
}

TEST(Config, SharedGpt2Small) {
  KQ_REQUIRE_SHARED("models/gpt2-small");
  const ModelConfig c = load_model_config(testing::shared_dir() / "models/gpt2-small");
  EXPECT_EQ(c.num_layers, 6);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.intermediate_size, 1024);
  EXPECT_EQ(c.max_positions, 512);
}

TEST(Config, SharedLlamaSmall) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const ModelConfig c = load_model_config(testing::shared_dir() / "models/llama-small");
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(arch_name(c.arch), "llama");
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.intermediate_size, 688);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.max_positions, 512);
  EXPECT_EQ(c.vocab_size, 8192);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);  // from rope_parameters
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.activation, "silu");
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(Config, HubGpt2) {
  const ModelConfig c = parse(json::parse(kHubGpt2));
  EXPECT_EQ(c.num_layers, 12);
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.max_positions, 1024);
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_TRUE(c.tie_word_embeddings);  // absent -> true
  EXPECT_TRUE(c.attention_bias);
  EXPECT_EQ(c.torch_dtype, "");
  json j = json::parse(kHubGpt2);
  j.erase("n_positions");  // very old configs: n_ctx only
  j["n_ctx"] = 2048;
  j["n_inner"] = 1000;
  j["activation_function"] = "gelu_pytorch_tanh";
  const ModelConfig c2 = parse(j);
  EXPECT_EQ(c2.max_positions, 2048);
  EXPECT_EQ(c2.intermediate_size, 1000);
  EXPECT_EQ(c2.activation, "gelu_pytorch_tanh");
}

TEST(Config, Gpt2Rejections) {
  json j = json::parse(kHubGpt2);
  j["activation_function"] = "relu";
  expect_bad(j, {"relu", "activation_function"});
  j = json::parse(kHubGpt2);
  j["n_head"] = 7;  // 768 % 7 != 0
  expect_bad(j, {"n_head", "768"});
  j = json::parse(kHubGpt2);
  j.erase("n_layer");
  expect_bad(j, {"n_layer"});
  j = json::parse(kHubGpt2);
  j.erase("n_positions");
  j.erase("n_ctx");
  expect_bad(j, {"n_ctx"});
  j = json::parse(kHubGpt2);
  j["layer_norm_epsilon"] = -1;
  expect_bad(j, {"layer_norm_epsilon"});
}

TEST(Config, Transformers4Llama) {
  const ModelConfig c = parse(json::parse(kLlama4));
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.head_dim, 128);  // derived: 4096 / 32
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.max_positions, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  json j = json::parse(kLlama4);
  j.erase("num_key_value_heads");
  j.erase("rope_theta");
  j.erase("tie_word_embeddings");
  j["rope_scaling"] = {{"rope_type", "default"}};
  const ModelConfig c2 = parse(j);
  EXPECT_EQ(c2.num_kv_heads, 32);  // default: MHA
  EXPECT_DOUBLE_EQ(c2.rope_theta, 10000.0);
  EXPECT_FALSE(c2.tie_word_embeddings);
  j["head_dim"] = 96;  // explicit head_dim need not be hidden / heads
  EXPECT_EQ(parse(j).head_dim, 96);
}

TEST(Config, LlamaRejections) {
  json j = json::parse(kLlama4);
  j["rope_scaling"] = {{"type", "mrope"}, {"factor", 2.0}};
  expect_bad(j, {"mrope", "rope_scaling.type", "not supported"});
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_bad(j, {"llama3", "'rope_scaling.low_freq_factor'", "missing"});
  j = json::parse(kLlama4);
  j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "yarn"}};
  expect_bad(j, {"yarn", "rope_parameters"});
  j = json::parse(kLlama4);
  j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "default"}};  // top-level says 5e5
  expect_bad(j, {"rope_theta"});
  j = json::parse(kLlama4);
  j["num_key_value_heads"] = 5;
  expect_bad(j, {"num_key_value_heads", "5"});
  j = json::parse(kLlama4);
  j["num_attention_heads"] = 24;  // 4096 % 24 != 0, kv 8 divides 24
  expect_bad(j, {"hidden_size", "24"});
  j = json::parse(kLlama4);
  j["hidden_act"] = "gelu";
  expect_bad(j, {"gelu", "hidden_act"});
  j = json::parse(kLlama4);
  j["hidden_size"] = -4096;
  expect_bad(j, {"hidden_size"});
  j["hidden_size"] = 4096.0;
  expect_bad(j, {"hidden_size"});
  j["hidden_size"] = "4096";
  expect_bad(j, {"hidden_size"});
  j["hidden_size"] = 1LL << 40;
  expect_bad(j, {"hidden_size"});
  j = json::parse(kLlama4);
  j["attention_bias"] = "no";
  expect_bad(j, {"attention_bias"});
}

// Llama-3.2-1B's config.json (transformers 4.45): rope_scaling llama3 at the top level.
const char* kLlama32 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})";

TEST(Config, RopeScalingLlama3AndLinearAreRead) {
  const ModelConfig c = parse(json::parse(kLlama32));
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Llama3);
  EXPECT_EQ(rope_type_name(c.rope_scaling.type), "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 8192);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.max_positions, 131072);
  // transformers 5: the same in rope_parameters (with rope_theta), no top-level keys.
  json j = json::parse(kLlama32);
  json rp = j["rope_scaling"];
  rp["rope_theta"] = 500000.0;
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = rp;
  ModelConfig c5 = parse(j);
  EXPECT_EQ(c5.rope_scaling, c.rope_scaling);
  EXPECT_EQ(c5.rope_theta, 500000.0);
  j["rope_scaling"] = json::parse(kLlama32)["rope_scaling"];  // both, the same
  EXPECT_EQ(parse(j).rope_scaling, c.rope_scaling);
  // "linear", under transformers 4's "type" or "rope_type".
  j = json::parse(kLlama4);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
  c5 = parse(j);
  EXPECT_EQ(c5.rope_scaling.type, RopeScaling::Type::Linear);
  EXPECT_EQ(rope_type_name(c5.rope_scaling.type), "linear");
  EXPECT_EQ(c5.rope_scaling.factor, 2.0);
  j["rope_scaling"] = {{"rope_type", "linear"}, {"type", "linear"}, {"factor", 0.5}};
  EXPECT_EQ(parse(j).rope_scaling.factor, 0.5);
  // default / absent / null: no scaling.
  for (const json& none : {json(nullptr), json{{"rope_type", "default"}}, json::object()}) {
    j["rope_scaling"] = none;
    EXPECT_EQ(parse(j).rope_scaling, RopeScaling{});
  }
  EXPECT_EQ(rope_type_name(RopeScaling::Type(7)), "unknown(7)");
}

TEST(Config, RopeScalingKeysAreValidated) {
  const json base = json::parse(kLlama32);
  for (const char* key : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    SCOPED_TRACE(key);
    const std::string name = fmt::format("'rope_scaling.{}'", key);
    json j = base;
    j["rope_scaling"].erase(key);
    expect_bad(j, {"RoPE scaling type 'llama3' requires key " + name, "missing"});
    j["rope_scaling"][key] = nullptr;
    expect_bad(j, {"requires key " + name, "null"});
    const std::string bare = fmt::format("key 'rope_scaling.{}'", key);
    for (const json& bad : {json(0), json(-1.5), json("8"), json(true), json(std::nan("")), json(INFINITY)}) {
      j["rope_scaling"][key] = bad;
      expect_bad(j, {bare});
    }
  }
  json j = base;
  // transformers 5's per-layer-type form was read as a flat object with no type: default RoPE (tester round 17).
  j.erase("rope_scaling");
  j["rope_parameters"] = json::parse(R"({"full_attention": {"rope_type": "linear", "factor": 2.0}})");
  expect_bad(j, {"'rope_parameters.full_attention' is an object: RoPE parameters per layer type are not supported"});
  j = base;
  j["rope_scaling"]["original_max_position_embeddings"] = 8192.5;  // an integer, as transformers checks
  expect_bad(j, {"key 'rope_scaling.original_max_position_embeddings': expected a positive integer"});
  j = base;
  j["rope_scaling"]["high_freq_factor"] = 1.0;
  expect_bad(j, {"rope_scaling.high_freq_factor 1 equals rope_scaling.low_freq_factor"});
  {
    // Swapped (low above high: tester round 23 ran them silently): run as transformers does, with one warning
    // naming both keys; the given order gives none.
    testing::CapturedWarnings warnings;
    EXPECT_NO_THROW(parse(base));
    EXPECT_TRUE(warnings.list.empty());
    j = base;
    j["rope_scaling"]["low_freq_factor"] = 4.0;
    j["rope_scaling"]["high_freq_factor"] = 1.0;
    EXPECT_EQ(parse(j).rope_scaling.low_freq_factor, 4.0);
    ASSERT_EQ(warnings.list.size(), 1u);
    for (const char* needle : {"test/config.json", "rope_scaling.low_freq_factor 4 is above "
                               "rope_scaling.high_freq_factor 1", "swapped"})
      EXPECT_TRUE(testing::has(warnings.list[0], needle)) << warnings.list[0];
  }
  // Values beyond float32's range, in which the tables are computed (tester round 18: factor 1e39 ran with no
  // rotation left, 1e-39 and a rope_theta of 1e-300 gave non-finite logits blamed on the weights).
  for (const double v : {1e39, 1e-39, 1e-300}) {
    j = base;
    j["rope_scaling"]["factor"] = v;
    expect_bad(j, {"key 'rope_scaling.factor'", "outside float32's range"});
    j = base;
    j["rope_theta"] = v;
    expect_bad(j, {"key 'rope_theta'", "outside float32's range"});
  }
  j = base;
  j["rope_scaling"]["factor"] = 3e38;  // finite as a float32
  EXPECT_EQ(parse(j).rope_scaling.factor, 3e38);
  j["rope_scaling"]["factor"] = 3.4028235e38;  // numpy's FLT_MAX: above it as a double, FLT_MAX as a float32
  EXPECT_EQ(parse(j).rope_scaling.factor, 3.4028235e38);
  j["rope_scaling"]["factor"] = 3.5e38;
  expect_bad(j, {"outside float32's range (1.1754944e-38 to 3.4028235e+38)"});
  // Within float32's range, but the angles of the last position overflow it (tester round 18b: NaN logits).
  j = base;
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 1.2e-38}};
  expect_bad(j, {"RoPE angles overflow float32", "position 131071 (max_position_embeddings 131072)",
                 "scaling factor 1.2e-38"});
  j = base;
  j["rope_theta"] = 1.2e-38;
  expect_bad(j, {"RoPE angles overflow float32", "rope_theta 1.2e-38"});
  j["rope_theta"] = 1e-3;  // small, but the angles stay finite
  EXPECT_EQ(parse(j).rope_theta, 1e-3);
  j = base;  // equal as float32, though not as doubles: the same division by zero
  j["rope_scaling"]["high_freq_factor"] = 1.00000001;
  expect_bad(j, {"rope_scaling.high_freq_factor", "equals rope_scaling.low_freq_factor"});
  j = base;
  j["rope_scaling"] = {{"type", "linear"}};
  expect_bad(j, {"RoPE scaling type 'linear' requires key 'rope_scaling.factor', which is missing"});
  j["rope_scaling"]["factor"] = -2;
  expect_bad(j, {"key 'rope_scaling.factor': expected a finite positive number"});
  // transformers 5's place: the key is named there.
  j = json::parse(kLlama4);
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", "2"}};
  expect_bad(j, {"key 'rope_parameters.factor': expected a number"});
  // rope_type and type that differ.
  j["rope_parameters"] = {{"rope_type", "linear"}, {"type", "llama3"}, {"factor", 2}};
  expect_bad(j, {"rope_parameters.rope_type 'linear' and rope_parameters.type 'llama3' differ"});
  // rope_scaling (transformers 4 reads only it; 5 replaces rope_parameters by it) and rope_parameters both
  // naming a scaling must agree: a contradiction is refused (tester 22), as one of rope_theta is.
  j = base;
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2}};
  expect_bad(j, {"rope_scaling {", "conflicts with rope_parameters {", "\"linear\"", "keep the one"});
  j["rope_parameters"] = {{"rope_type", "yarn"}};  // and each is read in full
  expect_bad(j, {"requires key 'rope_parameters.factor'"});
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 8}};
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 500000.0}};
  expect_bad(j, {"rope_scaling {\"factor\":8,\"type\":\"linear\"} conflicts with rope_parameters {"});
  // rope_parameters' "default" (transformers 5 writes it for every unscaled model, e.g. llama-small's) is no
  // scaling: a rope_scaling added to such a config is read, as transformers reads it.
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  EXPECT_EQ(parse(j).rope_scaling.factor, 8.0);
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 500000.0}};  // equal: read
  EXPECT_EQ(parse(j).rope_scaling.factor, 8.0);
  j["rope_parameters"] = {{"rope_theta", 500000.0}};  // no type there: rope_scaling's is read
  EXPECT_EQ(parse(j).rope_scaling.factor, 8.0);
  j["rope_scaling"] = nullptr;  // none there: rope_parameters' is read
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 3}};
  EXPECT_EQ(parse(j).rope_scaling.factor, 3.0);
  // The other types stay refused with the supported ones named; longrope (and its old name su) is Phi3's.
  for (const char* other : {"mrope", "ntk", "YARN"}) {
    j = base;
    j["rope_scaling"]["rope_type"] = other;
    expect_bad(j, {fmt::format("RoPE scaling type '{}' (rope_scaling.rope_type) is not supported", other),
                   "supported: default, linear, llama3, yarn, dynamic)"});
  }
  for (const char* phi3_only : {"longrope", "su"}) {
    j = base;
    j["rope_scaling"]["rope_type"] = phi3_only;
    expect_bad(j, {fmt::format("RoPE scaling type '{}' (rope_scaling.rope_type) is supported for model_type phi3 "
                               "only (supported here: default, linear, llama3, yarn, dynamic)",
                               phi3_only)});
  }
}

// Mistral-7B-v0.1's config.json: a sliding window of 4096 over 32768 positions.
const char* kMistral01 = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
  "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000})";

TEST(Config, MistralIsLlamaWithItsDefaultsAndAWindow) {
  ModelConfig c = parse(json::parse(kMistral01));
  EXPECT_EQ(c.arch, Arch::Mistral);
  EXPECT_EQ(arch_name(c.arch), "mistral");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.activation, "silu");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_TRUE(c.sliding_layers.empty());  // every layer
  EXPECT_EQ(layer_window(c, 0), 4096);
  EXPECT_EQ(layer_window(c, 31), 4096);
  EXPECT_EQ(c.max_positions, 32768);  // the whole context: kq runs the windowed attention
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");

  // Mistral-7B-v0.2 / v0.3: sliding_window null, rope_theta 1e6: no window, the whole context.
  json j = json::parse(kMistral01);
  j["sliding_window"] = nullptr;
  j["rope_theta"] = 1e6;
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.max_positions, 32768);
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  EXPECT_EQ(c.rope_theta, 1e6);
  j["sliding_window"] = 100000;  // longer than the context: nothing capped
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 100000);
  EXPECT_EQ(c.max_positions, 32768);

  // MistralConfig's defaults (transformers): kv heads 8, 4096·32 positions, window 4096, eps 1e-6, untied.
  j = json{{"model_type", "mistral"}, {"hidden_size", 256}, {"intermediate_size", 512}, {"num_hidden_layers", 2},
           {"num_attention_heads", 16}, {"vocab_size", 1000}};
  c = parse(j);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.max_positions, 4096 * 32);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(parse(j).max_positions, 4096 * 32);
  j["num_key_value_heads"] = nullptr;  // null: as many as the query heads (MistralConfig)
  EXPECT_EQ(parse(j).num_kv_heads, 16);
  j["head_dim"] = nullptr;  // null: hidden / heads
  EXPECT_EQ(parse(j).head_dim, 16);
  j["head_dim"] = 32;
  EXPECT_EQ(parse(j).head_dim, 32);
  // MistralConfig has no attention_bias / mlp_bias: Mistral's projections have none.
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  EXPECT_FALSE(parse(j).attention_bias);
  EXPECT_FALSE(parse(j).mlp_bias);
  // RoPE scaling is read as for llama.
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4}};
  EXPECT_EQ(parse(j).rope_scaling.type, RopeScaling::Type::Linear);
  // A llama config is not given a window, whatever it holds.
  j["model_type"] = "llama";
  j["sliding_window"] = 16;
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.max_positions, 2048);
}

TEST(Config, MistralRejections) {
  json j = json::parse(kMistral01);
  for (const json& bad : {json(0), json(-4096), json(4096.5), json("4096"), json(true)}) {
    j["sliding_window"] = bad;
    expect_bad(j, {"key 'sliding_window': expected a positive integer"});
  }
  j = json::parse(kMistral01);
  j["num_attention_heads"] = 12;  // kv heads 8 do not divide 12
  expect_bad(j, {"num_attention_heads 12 is not a multiple of num_key_value_heads 8"});
  j.erase("num_key_value_heads");  // MistralConfig's default 8: the same
  expect_bad(j, {"num_attention_heads 12 is not a multiple of num_key_value_heads 8"});
  j = json::parse(kMistral01);
  j["hidden_act"] = "gelu";
  expect_bad(j, {"hidden_act 'gelu' is not supported for mistral"});
  j = json::parse(kMistral01);
  j["rope_scaling"] = {{"rope_type", "yarn"}};
  expect_bad(j, {"RoPE scaling type 'yarn' requires key 'rope_scaling.factor', which is missing"});
}

// Qwen2.5-0.5B's config.json: GQA 14/2, tied embeddings, no sliding window (use_sliding_window false).
const char* kQwen25 = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2",
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

TEST(Config, Qwen2IsLlamaWithQkvBiasesAndItsDefaults) {
  ModelConfig c = parse(json::parse(kQwen25));
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_EQ(arch_name(c.arch), "qwen2");
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.num_heads, 14);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.activation, "silu");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.qkv_bias);  // q/k/v_proj have biases, o_proj and the MLP none
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window false: no window whatever sliding_window says
  EXPECT_EQ(c.max_positions, 32768);
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");

  // Qwen2Config has no attention_bias / mlp_bias: the keys change nothing.
  json j = json::parse(kQwen25);
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  c = parse(j);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  j["attention_bias"] = false;
  EXPECT_TRUE(parse(j).qkv_bias);

  // Qwen2Config's defaults (transformers): kv heads 32 (null: = heads), 32768 positions, eps 1e-6, untied,
  // theta 10000, no window.
  j = json{{"model_type", "qwen2"}, {"hidden_size", 256}, {"intermediate_size", 512}, {"num_hidden_layers", 2},
           {"num_attention_heads", 64}, {"vocab_size", 1000}};
  c = parse(j);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.max_positions, 32768);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.qkv_bias);
  j["num_key_value_heads"] = nullptr;
  EXPECT_EQ(parse(j).num_kv_heads, 64);
  j["num_key_value_heads"] = 4;
  EXPECT_EQ(parse(j).num_kv_heads, 4);
  // RoPE scaling is read as for llama.
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4}};
  EXPECT_EQ(parse(j).rope_scaling.type, RopeScaling::Type::Linear);

  // Llama and Mistral have no qkv_bias: Llama's attention_bias covers all four projections.
  j = json::parse(kLlama4);
  EXPECT_FALSE(parse(j).qkv_bias);
  j["attention_bias"] = true;
  EXPECT_FALSE(parse(j).qkv_bias);
  EXPECT_TRUE(parse(j).attention_bias);
  EXPECT_FALSE(parse(json::parse(kMistral01)).qkv_bias);
}

/// The layers of `c` with the window (layer_window > 0).
std::vector<int64_t> windowed_layers(const ModelConfig& c) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < c.num_layers; ++l)
    if (layer_window(c, l) > 0) out.push_back(l);
  return out;
}

// Qwen2's sliding window: only with use_sliding_window, on the layers >= max_window_layers (or those layer_types
// names "sliding_attention"), the others full attention; the context stays max_position_embeddings.
TEST(Config, Qwen2SlidingWindowOnTheLayersThatUseIt) {
  json j = json::parse(kQwen25);
  j["use_sliding_window"] = true;
  j["sliding_window"] = 4096;
  ModelConfig c = parse(j);  // max_window_layers 24 of 24 layers: no layer has the window
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.sliding_layers.empty());
  EXPECT_EQ(c.max_positions, 32768);
  j["max_window_layers"] = 21;  // layers 21, 22, 23
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.sliding_layers.size(), 24u);
  EXPECT_EQ(windowed_layers(c), (std::vector<int64_t>{21, 22, 23}));
  EXPECT_EQ(layer_window(c, 20), 0);
  EXPECT_EQ(layer_window(c, 21), 4096);
  EXPECT_EQ(c.max_positions, 32768);  // not capped: kq runs the window
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  j["max_window_layers"] = 0;  // every layer
  c = parse(j);
  EXPECT_EQ(windowed_layers(c).size(), 24u);
  EXPECT_EQ(c.max_positions, 32768);
  j.erase("max_window_layers");  // Qwen2Config's default 28 >= 24 layers: none
  EXPECT_EQ(parse(j).sliding_window, 0);
  j["num_hidden_layers"] = 32;  // layers 28 to 31
  EXPECT_EQ(parse(j).sliding_window, 4096);
  EXPECT_EQ(windowed_layers(parse(j)), (std::vector<int64_t>{28, 29, 30, 31}));
  j.erase("sliding_window");  // Qwen2Config's default 4096
  EXPECT_EQ(parse(j).sliding_window, 4096);
  j["sliding_window"] = nullptr;  // none
  EXPECT_EQ(parse(j).sliding_window, 0);
  EXPECT_TRUE(windowed_layers(parse(j)).empty());
  EXPECT_EQ(parse(j).max_positions, 32768);
  j["sliding_window"] = 100000;  // longer than the context: kept, it changes nothing
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 100000);
  EXPECT_EQ(c.max_positions, 32768);
  j["sliding_window"] = 4096;
  j["use_sliding_window"] = false;
  EXPECT_EQ(parse(j).sliding_window, 0);
  j.erase("use_sliding_window");  // default false
  EXPECT_EQ(parse(j).sliding_window, 0);
  EXPECT_TRUE(parse(j).sliding_layers.empty());

  // layer_types (transformers >= 4.53) says which layers have it, instead of max_window_layers.
  j = json::parse(kQwen25);
  j["use_sliding_window"] = true;
  j["sliding_window"] = 4096;
  j["max_window_layers"] = 0;
  j["layer_types"] = std::vector<std::string>(24, "full_attention");
  EXPECT_EQ(parse(j).sliding_window, 0);
  j["layer_types"][5] = "sliding_attention";
  j["layer_types"][17] = "sliding_attention";
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(windowed_layers(c), (std::vector<int64_t>{5, 17}));
  EXPECT_EQ(c.max_positions, 32768);
  j["use_sliding_window"] = false;  // Qwen2Config: no window at all without use_sliding_window
  EXPECT_EQ(parse(j).sliding_window, 0);
  j["use_sliding_window"] = true;
  j["layer_types"] = nullptr;  // null: from max_window_layers
  EXPECT_EQ(parse(j).sliding_window, 4096);
  EXPECT_EQ(windowed_layers(parse(j)).size(), 24u);
}

TEST(Config, Qwen2Rejections) {
  json j = json::parse(kQwen25);
  j["use_sliding_window"] = "yes";
  expect_bad(j, {"key 'use_sliding_window': expected true/false"});
  j["use_sliding_window"] = true;
  for (const json& bad : {json(0), json(-4096), json(4096.5), json("4096")}) {
    j["sliding_window"] = bad;
    expect_bad(j, {"key 'sliding_window': expected a positive integer"});
  }
  j["sliding_window"] = 4096;
  for (const json& bad : {json(-1), json(2.5), json("28"), json(true)}) {
    j["max_window_layers"] = bad;
    expect_bad(j, {"key 'max_window_layers': expected an integer from 0 to 2147483647"});
  }
  j["max_window_layers"] = 24;
  j["layer_types"] = std::vector<std::string>(23, "full_attention");
  expect_bad(j, {"key 'layer_types': expected an array of num_hidden_layers = 24 strings"});
  j["layer_types"] = "full_attention";
  expect_bad(j, {"key 'layer_types': expected an array of num_hidden_layers = 24 strings"});
  j["layer_types"] = std::vector<std::string>(24, "full_attention");
  j["layer_types"][3] = "chunked_attention";
  expect_bad(j, {"layer_types[3] is \"chunked_attention\" (supported: \"full_attention\", \"sliding_attention\")"});
  j = json::parse(kQwen25);
  j["hidden_act"] = "gelu";
  expect_bad(j, {"hidden_act 'gelu' is not supported for qwen2"});
  j = json::parse(kQwen25);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 32768.5}};
  expect_bad(j, {"key 'rope_scaling.original_max_position_embeddings': expected a positive integer"});
  j = json::parse(kQwen25);
  j.erase("hidden_size");
  expect_bad(j, {"model_type 'qwen2' requires key 'hidden_size', which is missing"});
  j = json::parse(kQwen25);
  j["num_key_value_heads"] = 4;  // does not divide 14
  expect_bad(j, {"num_attention_heads 14 is not a multiple of num_key_value_heads 4"});
}

// Qwen3-0.6B's config.json: head_dim 128 given, 16 × 128 = 2048 query columns over hidden_size 1024, GQA 16/8,
// tied embeddings, no sliding window.
const char* kQwen3 = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02,
  "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
  "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

TEST(Config, Qwen3IsLlamaWithQkNormAndItsDefaults) {
  ModelConfig c = parse(json::parse(kQwen3));
  EXPECT_EQ(c.arch, Arch::Qwen3);
  EXPECT_EQ(arch_name(c.arch), "qwen3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.intermediate_size, 3072);
  EXPECT_EQ(c.num_layers, 28);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // not hidden_size / heads = 64
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.max_positions, 40960);
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Default);
  EXPECT_EQ(c.activation, "silu");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.torch_dtype, "bfloat16");

  // attention_bias is Llama's (q/k/v/o_proj); Qwen3Config has no mlp_bias (ignored, as for Qwen2).
  json j = json::parse(kQwen3);
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  c = parse(j);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_TRUE(c.qk_norm);

  // Qwen3Config's defaults: head_dim 128 (absent or null), kv heads 32 (null: the query heads), 32768 positions,
  // eps 1e-6, theta 10000, untied, no attention_bias, no window.
  j = json{{"model_type", "qwen3"}, {"hidden_size", 256}, {"intermediate_size", 512}, {"num_hidden_layers", 2},
           {"num_attention_heads", 32}, {"vocab_size", 1000}};
  c = parse(j);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.max_positions, 32768);
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  EXPECT_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.qk_norm);
  j["head_dim"] = nullptr;
  EXPECT_EQ(parse(j).head_dim, 128);
  j["head_dim"] = 64;
  EXPECT_EQ(parse(j).head_dim, 64);
  j["num_attention_heads"] = 16;
  j["num_key_value_heads"] = nullptr;
  EXPECT_EQ(parse(j).num_kv_heads, 16);
  j["num_key_value_heads"] = 4;
  EXPECT_EQ(parse(j).num_kv_heads, 4);
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};  // transformers 5
  EXPECT_EQ(parse(j).rope_theta, 1e6);

  // The other architectures have no q_norm / k_norm.
  EXPECT_FALSE(parse(json::parse(kQwen25)).qk_norm);
  EXPECT_FALSE(parse(json::parse(kLlama4)).qk_norm);
  EXPECT_FALSE(parse(json::parse(kMistral01)).qk_norm);
}

// A yarn factor whose extended context exceeds kq's size cap (2^31 − 1) is refused naming the factor; it was
// clamped silently, and a whole text then became one window (tester round 21).
TEST(Config, YarnContextBeyondTheSizeCapIsRefused) {
  json j = json::parse(kQwen3);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 1e30}, {"original_max_position_embeddings", 32768}};
  expect_bad(j, {"rope_scaling.factor 1e+30", "more than the 2147483647 kq allows"});
  j["rope_scaling"]["factor"] = 65536.0;  // exactly 2^31: one past the cap
  expect_bad(j, {"rope_scaling.factor 65536", "2.14748e+09 positions"});
  j["rope_scaling"]["factor"] = 65535.0;  // 2147450880 positions: within
  EXPECT_EQ(parse(j).max_positions, int64_t(65535) * 32768);
}

// YaRN as the Qwen2.5 / Qwen3 model cards tell users to add it for 128K: factor 4 over an original 32768; the
// context becomes 4 · 32768 (as vLLM derives it), the attention factor 0.1·ln 4 + 1. mscale / mscale_all_dim
// (DeepSeek-V3's form) give their ratio; attention_factor given wins; "dynamic" is accepted with its factor.
TEST(Config, YarnAndDynamicScaling) {
  json j = json::parse(kQwen3);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  ModelConfig c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_EQ(rope_type_name(c.rope_scaling.type), "yarn");
  EXPECT_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 32768);
  EXPECT_EQ(c.rope_scaling.beta_fast, 32.0);
  EXPECT_EQ(c.rope_scaling.beta_slow, 1.0);
  EXPECT_TRUE(c.rope_scaling.truncate);
  EXPECT_NEAR(c.rope_scaling.attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-12);
  EXPECT_EQ(c.max_positions, 131072);
  EXPECT_EQ(c.size_keys.max_positions, "rope_scaling.factor × original_max_position_embeddings");
  // Without original_max_position_embeddings: max_position_embeddings (Qwen3's 40960) is the original context.
  j["rope_scaling"].erase("original_max_position_embeddings");
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 40960);
  EXPECT_EQ(c.max_positions, 4 * 40960);
  // A factor that does not extend the context leaves max_position_embeddings.
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 1.0}, {"original_max_position_embeddings", 8192}};
  c = parse(j);
  EXPECT_EQ(c.max_positions, 40960);
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  EXPECT_EQ(c.rope_scaling.attention_factor, 1.0);  // mscale(s <= 1) = 1
  // mscale / mscale_all_dim, betas (0 or null: the defaults, as transformers' `or`), truncate, attention_factor.
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 40}, {"mscale", 1.0}, {"mscale_all_dim", 0.707},
                       {"beta_fast", 0},     {"beta_slow", nullptr}, {"truncate", false}};
  c = parse(j);
  EXPECT_NEAR(c.rope_scaling.attention_factor, (0.1 * std::log(40.0) + 1) / (0.1 * 0.707 * std::log(40.0) + 1),
              1e-12);
  EXPECT_EQ(c.rope_scaling.beta_fast, 32.0);
  EXPECT_EQ(c.rope_scaling.beta_slow, 1.0);
  EXPECT_FALSE(c.rope_scaling.truncate);
  j["rope_scaling"]["mscale_all_dim"] = 0;  // one of them 0: mscale(factor) alone
  EXPECT_NEAR(parse(j).rope_scaling.attention_factor, 0.1 * std::log(40.0) + 1, 1e-12);
  j["rope_scaling"]["attention_factor"] = 0.5;
  j["rope_scaling"]["beta_fast"] = 16;
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.attention_factor, 0.5);
  EXPECT_EQ(c.rope_scaling.beta_fast, 16.0);
  // transformers 5's rope_parameters form.
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e6}, {"factor", 2}};
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
  EXPECT_EQ(c.size_keys.max_positions, "rope_parameters.factor × original_max_position_embeddings");
  // dynamic: kept with its factor (the default frequencies within the context: RopeScaling::Type::Dynamic).
  j.erase("rope_parameters");
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Dynamic);
  EXPECT_EQ(c.rope_scaling.factor, 2.0);
  EXPECT_EQ(c.max_positions, 40960);
  j["rope_scaling"].erase("factor");
  expect_bad(j, {"RoPE scaling type 'dynamic' requires key 'rope_scaling.factor', which is missing"});
}

// Qwen3's sliding window is Qwen2's: only with use_sliding_window, on the layers >= max_window_layers (or those
// layer_types names "sliding_attention"); the context stays max_position_embeddings.
TEST(Config, Qwen3SlidingWindowIsQwen2s) {
  json j = json::parse(kQwen3);
  j["use_sliding_window"] = true;
  j["sliding_window"] = 4096;
  ModelConfig c = parse(j);  // max_window_layers 28 of 28 layers: none
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.max_positions, 40960);
  j["max_window_layers"] = 20;
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(windowed_layers(c), (std::vector<int64_t>{20, 21, 22, 23, 24, 25, 26, 27}));
  EXPECT_EQ(c.max_positions, 40960);
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  j.erase("sliding_window");  // Qwen3Config's default 4096
  EXPECT_EQ(parse(j).sliding_window, 4096);
  j["sliding_window"] = nullptr;  // none
  EXPECT_EQ(parse(j).sliding_window, 0);
  j["sliding_window"] = 1024;
  j["layer_types"] = std::vector<std::string>(28, "full_attention");
  EXPECT_EQ(parse(j).sliding_window, 0);
  j["layer_types"][27] = "sliding_attention";
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 1024);
  EXPECT_EQ(windowed_layers(c), std::vector<int64_t>{27});
  EXPECT_EQ(c.max_positions, 40960);
  j["use_sliding_window"] = false;
  EXPECT_EQ(parse(j).sliding_window, 0);
}

// Every key is checked as for Qwen2 (and attention_bias, which Qwen3Config has, as for Llama).
TEST(Config, Qwen3Rejections) {
  json j = json::parse(kQwen3);
  j["attention_bias"] = "no";
  expect_bad(j, {"key 'attention_bias': expected true/false"});
  j = json::parse(kQwen3);
  for (const json& bad : {json(0), json(-128), json(127), json(64.5), json("128")}) {
    j["head_dim"] = bad;
    expect_bad(j, {"head_dim"});
  }
  j = json::parse(kQwen3);
  j["use_sliding_window"] = "yes";
  expect_bad(j, {"key 'use_sliding_window': expected true/false"});
  j["use_sliding_window"] = true;
  j["sliding_window"] = 0;
  expect_bad(j, {"key 'sliding_window': expected a positive integer"});
  j["sliding_window"] = 4096;
  j["max_window_layers"] = -1;
  expect_bad(j, {"key 'max_window_layers': expected an integer from 0 to 2147483647"});
  j["max_window_layers"] = 0;
  j["layer_types"] = std::vector<std::string>(27, "full_attention");
  expect_bad(j, {"key 'layer_types': expected an array of num_hidden_layers = 28 strings"});
  j = json::parse(kQwen3);
  j["hidden_act"] = "gelu";
  expect_bad(j, {"hidden_act 'gelu' is not supported for qwen3"});
  j = json::parse(kQwen3);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4}, {"truncate", "yes"}};
  expect_bad(j, {"key 'rope_scaling.truncate': expected true or false, got \"yes\""});
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4}, {"beta_fast", -32}};
  expect_bad(j, {"key 'rope_scaling.beta_fast': expected a finite positive number"});
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 0.5}, {"mscale", 1}, {"mscale_all_dim", -20}};
  expect_bad(j, {"key 'rope_scaling.mscale_all_dim': expected a finite positive number"});
  j = json::parse(kQwen3);
  j["partial_rotary_factor"] = 0.5;
  expect_bad(j, {"partial_rotary_factor 0.5 is not supported"});
  j = json::parse(kQwen3);
  j.erase("hidden_size");
  expect_bad(j, {"model_type 'qwen3' requires key 'hidden_size', which is missing"});
  j = json::parse(kQwen3);
  j.erase("num_key_value_heads");  // Qwen3Config's default 32 does not divide 16
  expect_bad(j, {"num_attention_heads 16 is not a multiple of num_key_value_heads 32 (absent: Qwen3Config's "
                 "default)"});
  j = json::parse(kQwen3);
  j["num_key_value_heads"] = 3;
  expect_bad(j, {"num_attention_heads 16 is not a multiple of num_key_value_heads 3"});
}

// The shape of Phi-3.5-mini-instruct's config.json (keys and sizes as published; the 48 short / long factors are
// made-up values here): longrope over 4096 original positions extended to 131072, a 262144 sliding window.
json phi35_mini() {
  json j = json::parse(R"({
    "architectures": ["Phi3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1,
    "embd_pdrop": 0.0, "eos_token_id": 32000, "hidden_act": "silu", "hidden_size": 3072, "initializer_range": 0.02,
    "intermediate_size": 8192, "max_position_embeddings": 131072, "model_type": "phi3", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "original_max_position_embeddings": 4096,
    "pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "sliding_window": 262144, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.3", "use_cache": true, "vocab_size": 32064})");
  std::vector<double> shorts, longs;
  for (int i = 0; i < 48; ++i) {
    shorts.push_back(1.0 + 0.05 * i);
    longs.push_back(1.0 + 2.5 * i);
  }
  j["rope_scaling"] = {{"long_factor", longs}, {"short_factor", shorts}, {"type", "longrope"}};
  return j;
}

// Phi-4-mini-instruct's shape: 24 query heads of 128 over 8 kv heads, partial_rotary_factor 0.75 (96 rotated
// dimensions: 48 factors), tied embeddings.
json phi4_mini() {
  json j = phi35_mini();
  j["hidden_size"] = 3072;
  j["num_attention_heads"] = 24;
  j["num_key_value_heads"] = 8;
  j["partial_rotary_factor"] = 0.75;
  j["tie_word_embeddings"] = true;
  j["vocab_size"] = 200064;
  return j;
}

TEST(Config, Phi35MiniIsLlamaWithLongRopeOverItsWholeContext) {
  ModelConfig c = parse(phi35_mini());
  EXPECT_EQ(c.arch, Arch::Phi3);
  EXPECT_EQ(arch_name(c.arch), "phi3");
  EXPECT_EQ(c.head_dim, 96);
  EXPECT_EQ(c.rotary_dim, 96);
  EXPECT_EQ(rotary_dim_of(c), 96);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.norm_eps, 1e-5);
  EXPECT_FALSE(c.attention_bias || c.qkv_bias || c.mlp_bias || c.qk_norm);
  EXPECT_FALSE(c.tie_word_embeddings);
  const RopeScaling& s = c.rope_scaling;
  EXPECT_EQ(s.type, RopeScaling::Type::LongRope);
  EXPECT_EQ(rope_type_name(s.type), "longrope");
  ASSERT_EQ(s.short_factor.size(), 48u);
  ASSERT_EQ(s.long_factor.size(), 48u);
  EXPECT_EQ(s.short_factor[3], 1.0 + 0.05 * 3);
  EXPECT_EQ(s.long_factor[47], 1.0 + 2.5 * 47);
  EXPECT_EQ(s.original_max_positions, 4096);
  EXPECT_EQ(s.factor, 32.0);  // max_position_embeddings / original_max_position_embeddings
  EXPECT_DOUBLE_EQ(s.attention_factor, std::sqrt(1.0 + std::log(32.0) / std::log(4096.0)));  // 1.19...
  // The short factors serve 4096 positions, the long ones the rest of max_position_embeddings: nothing is capped.
  EXPECT_EQ(c.max_positions, 131072);
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  EXPECT_EQ(c.sliding_window, 262144);  // longer than the context: it changes nothing
  // transformers' generate() recomputes the sequence once, for the token after the 4096th.
  EXPECT_TRUE(longrope_recomputes_cache(c, 4096));
  for (const int64_t cached : {0, 1, 4095, 4097, 131071}) EXPECT_FALSE(longrope_recomputes_cache(c, cached)) << cached;

  // "su", the old name Phi3Config reads as longrope; "rope_type" as well as "type".
  json j = phi35_mini();
  j["rope_scaling"]["type"] = "su";
  EXPECT_EQ(parse(j).rope_scaling, s);
  j["rope_scaling"].erase("type");
  j["rope_scaling"]["rope_type"] = "longrope";
  EXPECT_EQ(parse(j).rope_scaling, s);
  // Given keys win: original_max_position_embeddings in rope_scaling, factor, attention_factor.
  j = phi35_mini();
  j["rope_scaling"]["original_max_position_embeddings"] = 8192;
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 8192);
  EXPECT_EQ(c.max_positions, 131072);
  EXPECT_TRUE(longrope_recomputes_cache(c, 8192));
  EXPECT_FALSE(longrope_recomputes_cache(c, 4096));
  EXPECT_DOUBLE_EQ(c.rope_scaling.attention_factor, std::sqrt(1.0 + std::log(16.0) / std::log(8192.0)));
  j["rope_scaling"]["factor"] = 4.0;
  EXPECT_DOUBLE_EQ(parse(j).rope_scaling.attention_factor, std::sqrt(1.0 + std::log(4.0) / std::log(8192.0)));
  j["rope_scaling"]["attention_factor"] = 1.25;
  EXPECT_EQ(parse(j).rope_scaling.attention_factor, 1.25);
  // A context no longer than the original one: attention factor 1, the context max_position_embeddings.
  j = phi35_mini();
  j["max_position_embeddings"] = 4096;
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.attention_factor, 1.0);
  EXPECT_EQ(c.max_positions, 4096);
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  j["max_position_embeddings"] = 2048;
  c = parse(j);
  EXPECT_EQ(c.max_positions, 2048);
  // transformers 5's rope_parameters.
  j = phi35_mini();
  json rp = j["rope_scaling"];
  rp.erase("type");
  rp["rope_type"] = "longrope";
  rp["rope_theta"] = 10000.0;
  rp["original_max_position_embeddings"] = 4096;
  j.erase("rope_scaling");
  j["rope_parameters"] = rp;
  c = parse(j);
  EXPECT_EQ(c.rope_scaling, s);
  EXPECT_EQ(c.max_positions, 131072);
}

TEST(Config, Phi4MiniRotatesThreeQuartersOfEachHead) {
  ModelConfig c = parse(phi4_mini());
  EXPECT_EQ(c.arch, Arch::Phi3);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rotary_dim, 96);  // int(128 · 0.75)
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.short_factor.size(), 48u);
  EXPECT_EQ(c.max_positions, 131072);
  json j = phi4_mini();  // transformers 5 keeps the factor in rope_parameters
  j.erase("partial_rotary_factor");
  j["rope_parameters"] = {{"rope_theta", 10000.0}, {"partial_rotary_factor", 0.75}};
  EXPECT_EQ(parse(j).rotary_dim, 96);
  j["partial_rotary_factor"] = 0.75;  // both, the same
  EXPECT_EQ(parse(j).rotary_dim, 96);
  j["partial_rotary_factor"] = 0.5;
  expect_bad(j, {"partial_rotary_factor 0.5 conflicts with rope_parameters.partial_rotary_factor 0.75"});
  // Without longrope (Phi-3-mini-4k's shape): the whole head_dim, Phi3Config's defaults, a window on every layer.
  j = json{{"model_type", "phi3"}, {"hidden_size", 256}, {"intermediate_size", 512}, {"num_hidden_layers", 2},
           {"num_attention_heads", 8}, {"vocab_size", 1000}, {"rope_scaling", nullptr}};
  c = parse(j);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.rotary_dim, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.max_positions, 4096);
  EXPECT_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Default);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_FALSE(c.tie_word_embeddings);
  j["sliding_window"] = 2047;  // Phi-3-mini-4k-instruct's
  c = parse(j);
  EXPECT_EQ(c.sliding_window, 2047);
  EXPECT_TRUE(c.sliding_layers.empty());
  EXPECT_EQ(layer_window(c, 1), 2047);
  EXPECT_EQ(c.max_positions, 4096);  // the whole context: kq runs the window
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  j["attention_bias"] = true;  // not a Phi3Config key: ignored
  j["mlp_bias"] = true;
  EXPECT_FALSE(parse(j).attention_bias || parse(j).mlp_bias);
}

// Every longrope and partial_rotary_factor key is checked, each error naming it.
TEST(Config, Phi3LongRopeAndPartialRotaryRejections) {
  json j = phi4_mini();
  j["rope_scaling"]["short_factor"].erase(0);
  expect_bad(j, {"key 'rope_scaling.short_factor' has 47 values; longrope needs one per rotated dimension pair: "
                 "rotary_dim / 2 = 48 (head_dim 128 × partial_rotary_factor = rotary_dim 96)"});
  j = phi35_mini();
  j["rope_scaling"]["long_factor"].push_back(1.0);
  expect_bad(j, {"key 'rope_scaling.long_factor' has 49 values", "rotary_dim / 2 = 48 (head_dim 96)"});
  for (const char* key : {"short_factor", "long_factor"}) {
    SCOPED_TRACE(key);
    for (const json& bad : {json(0), json(-1.5), json("1.0"), json(nullptr), json(true), json(1e39)}) {
      j = phi35_mini();
      j["rope_scaling"][key][3] = bad;
      expect_bad(j, {fmt::format("key 'rope_scaling.{}[3]'", key)});
    }
    for (const json& bad : {json(1.0), json::array(), json("x")}) {
      j = phi35_mini();
      j["rope_scaling"][key] = bad;
      expect_bad(j, {fmt::format("key 'rope_scaling.{}': expected a list of numbers", key)});
    }
    j = phi35_mini();
    j["rope_scaling"].erase(key);
    expect_bad(j, {fmt::format("RoPE scaling type 'longrope' requires key 'rope_scaling.{}', which is missing", key)});
  }
  j = phi35_mini();
  j["rope_scaling"]["attention_factor"] = 0;
  expect_bad(j, {"key 'rope_scaling.attention_factor'"});
  // The long factors' angles count too: a tiny long factor overflows float32 at the last of 131072 positions
  // (the short factors alone would not).
  j = phi35_mini();
  j["rope_scaling"]["long_factor"][0] = 1e-36;
  expect_bad(j, {"RoPE angles overflow float32", "position 131071 (max_position_embeddings 131072)"});
  j = phi35_mini();
  j["rope_scaling"]["original_max_position_embeddings"] = 4096.5;
  expect_bad(j, {"key 'rope_scaling.original_max_position_embeddings': expected a positive integer"});
  j = phi35_mini();
  j["original_max_position_embeddings"] = 0;
  expect_bad(j, {"key 'original_max_position_embeddings': expected a positive integer"});
  j["original_max_position_embeddings"] = 1;  // ln(1) = 0: the attention factor's formula divides by it
  expect_bad(j, {"the longrope attention factor", "give rope_scaling.attention_factor"});
  j = phi35_mini();  // Phi3Config reads "yarn" as an old name of longrope, as "su"
  j["rope_scaling"]["type"] = "yarn";
  EXPECT_EQ(parse(j).rope_scaling, parse(phi35_mini()).rope_scaling);
  j["rope_scaling"]["type"] = "mrope";
  expect_bad(j, {"RoPE scaling type 'mrope' (rope_scaling.type) is not supported (supported: default, linear, "
                 "llama3, dynamic, longrope (su, yarn))"});
  // partial_rotary_factor: a fraction in (0, 1] leaving an even, non-zero rotary_dim.
  j = phi4_mini();
  for (const json& bad : {json(1.5), json(0), json(-0.5), json("0.75")}) {
    j["partial_rotary_factor"] = bad;
    expect_bad(j, {"key 'partial_rotary_factor'"});
  }
  j["partial_rotary_factor"] = 0.01;  // int(1.28) = 1
  expect_bad(j, {"partial_rotary_factor 0.01 gives rotary_dim int(head_dim 128 × 0.01) = 1, which RoPE cannot "
                 "rotate (it must be even and at least 2)"});
  j["partial_rotary_factor"] = 0.2;  // int(25.6) = 25
  expect_bad(j, {"= 25, which RoPE cannot rotate"});
  j["partial_rotary_factor"] = 0.5;  // 64 dimensions, but 48 factors
  expect_bad(j, {"key 'rope_scaling.short_factor' has 48 values", "rotary_dim / 2 = 32"});
  j.erase("rope_scaling");
  EXPECT_EQ(parse(j).rotary_dim, 64);
}

// Fresh-user finding (round 14): partial_rotary_factor (transformers rotates only that fraction of head_dim)
// was ignored; kq rotates the whole head_dim, so any other value is refused, naming the file and the key.
TEST(Config, LlamaPartialRotaryFactorOtherThanOneIsRefused) {
  json j = json::parse(kLlama4);
  j["partial_rotary_factor"] = 0.5;
  expect_bad(j, {"partial_rotary_factor 0.5 is not supported", "head_dim"});
  j["partial_rotary_factor"] = "half";
  expect_bad(j, {"partial_rotary_factor", "expected a number"});
  j["partial_rotary_factor"] = 1.0;  // the whole head_dim, as kq computes
  EXPECT_EQ(parse(j).head_dim, 128);
  j["partial_rotary_factor"] = nullptr;
  EXPECT_EQ(parse(j).head_dim, 128);
  j = json::parse(kLlama4);  // transformers 5 keeps it in rope_parameters
  j["rope_parameters"] = {{"rope_theta", 5e5}, {"rope_type", "default"}, {"partial_rotary_factor", 0.25}};
  expect_bad(j, {"rope_parameters.partial_rotary_factor 0.25 is not supported"});
  j["rope_parameters"]["partial_rotary_factor"] = 1;
  EXPECT_EQ(parse(j).head_dim, 128);
}

TEST(Config, NormEpsilonMustBeSmall) {
  json j = json::parse(kLlama4);
  j["rms_norm_eps"] = 1e300;  // finite as a double, infinite in FP32
  expect_bad(j, {"rms_norm_eps", "not a norm epsilon"});
  j["rms_norm_eps"] = 1.0;
  expect_bad(j, {"rms_norm_eps"});
  j = json::parse(kHubGpt2);
  j["layer_norm_epsilon"] = 2.5;
  expect_bad(j, {"layer_norm_epsilon"});
}

// Fresh-user finding: a gpt2 model_type over a Llama config (or the reverse)
// said only "missing required key 'n_layer'". The error names the file, the
// model_type and the key that model_type needs, and the other architecture's
// keys the file holds.
// Since GPT-2 accepts the Llama names of its sizes (GPT2Config.attribute_map),
// a whole Llama config parses as gpt2, as in transformers (Model::load then
// names the Llama tensors: ConfigSizes.LlamaCheckpointUnderGpt2ModelTypeIsNamed);
// a key missing under both names still lists the Llama-only keys.
TEST(Config, ModelTypeOfTheOtherArchitectureIsNamed) {
  json j = json::parse(kLlama4);
  j["model_type"] = "gpt2";
  j.erase("num_hidden_layers");
  std::string msg = expect_throw_with<FormatError>(
      [&] { parse(j); },
      {"test/config.json", "model_type 'gpt2' requires key 'n_layer' (or 'num_hidden_layers'), which is missing",
       "'intermediate_size'", "'rms_norm_eps'", "'num_key_value_heads'", "'rope_theta'", "keys of a Llama config",
       "meant to be \"llama\""});
  EXPECT_EQ(msg.find("'hidden_size'"), std::string::npos) << msg;  // an alias GPT-2 reads, not a foreign key
  j = json::parse(kHubGpt2);
  j["model_type"] = "llama";
  expect_bad(j, {"model_type 'llama' requires key 'hidden_size', which is missing", "'n_embd'", "'n_layer'",
                 "'n_ctx'", "keys of a GPT-2 config", "'n_embd' is the GPT-2 name of 'hidden_size'",
                 "meant to be \"gpt2\""});
  // A key simply missing: the model_type and key, no guess at another architecture.
  j = json::parse(kLlama4);
  j.erase("num_hidden_layers");
  msg = expect_throw_with<FormatError>(
      [&] { parse(j); }, {"test/config.json", "model_type 'llama' requires key 'num_hidden_layers'"});
  EXPECT_EQ(msg.find("meant to be"), std::string::npos) << msg;
  j = json::parse(kHubGpt2);
  j.erase("n_positions");
  j.erase("n_ctx");
  expect_bad(j, {"model_type 'gpt2' requires key 'n_positions' (or 'max_position_embeddings' or 'n_ctx'), which "
                 "is missing"});
}

// Tester finding: '"vocab_size": null' was "requires key 'vocab_size', which is missing"; the key is there, null
// (transformers keeps None, which no model builds with). Every required key is said to be null the same way.
TEST(Config, RequiredKeyThatIsNullIsSaidToBeNull) {
  json j = json::parse(kHubGpt2);
  j["vocab_size"] = nullptr;
  std::string msg = expect_throw_with<FormatError>(
      [&] { parse(j); }, {"test/config.json: model_type 'gpt2' requires key 'vocab_size', which is null"});
  EXPECT_EQ(msg.find("missing"), std::string::npos) << msg;
  j = json::parse(kHubGpt2);
  j["n_layer"] = nullptr;
  expect_bad(j, {"requires key 'n_layer' (or 'num_hidden_layers'), which is missing or null ('n_layer' is null)"});
  j = json::parse(kHubGpt2);
  j["n_positions"] = nullptr;
  j["n_ctx"] = nullptr;
  expect_bad(j, {"requires key 'n_positions' (or 'max_position_embeddings' or 'n_ctx'), which is missing or null "
                 "('n_positions' and 'n_ctx' are null)"});
  j = json::parse(kLlama4);
  j["hidden_size"] = nullptr;
  expect_bad(j, {"model_type 'llama' requires key 'hidden_size', which is null"});
  j["model_type"] = nullptr;
  expect_bad(
      j, {"test/config.json: \"model_type\" is null (supported: gpt2, llama, mistral, qwen2, qwen3, phi3, "
          "gemma, gemma2, gemma3_text)"});
}

// Fresh-user finding: GPT-2's config read only n_layer / n_embd / n_head /
// n_positions. A config with only transformers' aliases (GPT2Config.
// attribute_map: num_hidden_layers, hidden_size, num_attention_heads,
// max_position_embeddings) was refused as "requires key 'n_layer' ... meant to
// be llama?", and an alias contradicting its key was ignored without a word
// (transformers takes the alias). Aliases are read; a conflict is an error.
TEST(Config, Gpt2AliasesAreReadAndConflictsRefused) {
  const ModelConfig hub = parse(json::parse(kHubGpt2));
  json j = json::parse(kHubGpt2);
  for (const auto& [key, alias] : {std::pair{"n_layer", "num_hidden_layers"}, std::pair{"n_embd", "hidden_size"},
                                   std::pair{"n_head", "num_attention_heads"},
                                   std::pair{"n_positions", "max_position_embeddings"}}) {
    j[alias] = j[key];
    EXPECT_EQ(parse(j).num_heads, 12);  // both names, one value: fine
    j.erase(key);
  }
  j.erase("n_ctx");
  const ModelConfig c = parse(j);  // aliases only
  EXPECT_EQ(c.num_layers, hub.num_layers);
  EXPECT_EQ(c.hidden_size, hub.hidden_size);
  EXPECT_EQ(c.num_heads, hub.num_heads);
  EXPECT_EQ(c.head_dim, hub.head_dim);
  EXPECT_EQ(c.max_positions, hub.max_positions);
  EXPECT_EQ(c.intermediate_size, hub.intermediate_size);
  j["num_attention_heads"] = 7;  // checks read the alias's value, and name it
  expect_bad(j, {"hidden_size 768 is not divisible by num_attention_heads 7"});
  j["num_attention_heads"] = 0;
  expect_bad(j, {"key 'num_attention_heads': expected a positive integer"});
  // The alias before n_ctx, as n_positions is.
  j = json::parse(kHubGpt2);
  j.erase("n_positions");
  j["max_position_embeddings"] = 512;
  EXPECT_EQ(parse(j).max_positions, 512);
  // intermediate_size is no GPT2Config alias: n_inner (else 4·n_embd) is read, as transformers does.
  j["intermediate_size"] = 1000;
  EXPECT_EQ(parse(j).intermediate_size, 3072);
  // A key and its alias with different values: refused, naming both.
  for (const auto& [key, alias, value, other] :
       {std::tuple{"n_head", "num_attention_heads", 12, 8}, std::tuple{"n_layer", "num_hidden_layers", 12, 3},
        std::tuple{"n_embd", "hidden_size", 768, 512},
        std::tuple{"n_positions", "max_position_embeddings", 1024, 2048}}) {
    j = json::parse(kHubGpt2);
    j[alias] = other;
    expect_bad(j, {fmt::format("{} {} conflicts with {} {}", key, value, alias, other)});
  }
}

// A size given under an alias is named by that key, not by the GPT2Config name the file does not have (it said
// "n_embd 768 is not divisible by n_head 7" of a file with hidden_size and num_attention_heads):
// ModelConfig::size_keys hold the keys as the file writes them, for every message about those sizes.
// head_dim and num_key_value_heads: named when the file gives them, empty for a default (the shape messages of
// the weights then say which default was taken).
TEST(Config, SizeKeysNameAGivenHeadDimAndKvHeads) {
  const ModelConfig given = parse(json::parse(kQwen3));  // both keys given
  EXPECT_EQ(given.size_keys.head_dim, "head_dim");
  EXPECT_EQ(given.size_keys.num_kv_heads, "num_key_value_heads");
  json j = json::parse(kQwen3);
  j.erase("head_dim");
  j["num_key_value_heads"] = nullptr;
  const ModelConfig defaults = parse(j);
  EXPECT_EQ(defaults.head_dim, 128);
  EXPECT_EQ(defaults.size_keys.head_dim, "");
  EXPECT_EQ(defaults.size_keys.num_kv_heads, "");
  EXPECT_EQ(parse(json::parse(kHubGpt2)).size_keys.head_dim, "");
}

TEST(Config, SizeKeysAreTheKeysTheFileUses) {
  using Keys = std::tuple<std::string, std::string, std::string, std::string>;
  const auto keys = [](const ModelConfig& c) {
    return Keys{c.size_keys.num_layers, c.size_keys.hidden_size, c.size_keys.num_heads, c.size_keys.max_positions};
  };
  EXPECT_EQ(keys(parse(json::parse(kHubGpt2))), (Keys{"n_layer", "n_embd", "n_head", "n_positions"}));
  json j = json::parse(kHubGpt2);
  j["num_hidden_layers"] = 12;  // both names, one value: the GPT2Config name
  j["hidden_size"] = 768;
  j.erase("n_head");
  j["num_attention_heads"] = 12;
  j.erase("n_positions");  // n_ctx only
  EXPECT_EQ(keys(parse(j)), (Keys{"n_layer", "n_embd", "num_attention_heads", "n_ctx"}));
  j.erase("n_ctx");
  j["max_position_embeddings"] = 1024;
  EXPECT_EQ(keys(parse(j)), (Keys{"n_layer", "n_embd", "num_attention_heads", "max_position_embeddings"}));
  j["num_attention_heads"] = 7;  // one key of each form: each named as written
  expect_bad(j, {"test/config.json: n_embd 768 is not divisible by num_attention_heads 7"});
  j.erase("n_embd");
  j["n_head"] = 7;
  expect_bad(j, {"test/config.json: hidden_size 768 is not divisible by n_head 7"});
  EXPECT_EQ(keys(parse(json::parse(kLlama4))),
            (Keys{"num_hidden_layers", "hidden_size", "num_attention_heads", "max_position_embeddings"}));
  EXPECT_EQ(keys(ModelConfig{}), (Keys{"", "", "", ""}));
}

TEST(Config, UnknownModelTypeListsSupported) {
  json j = json::parse(kLlama4);
  j["model_type"] = "qwen3_moe";
  expect_bad(j, {"unsupported model_type 'qwen3_moe'",
                 "supported: gpt2, llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gemma3_text)"});
  j.erase("model_type");
  expect_bad(j,
             {"no \"model_type\"", "supported: gpt2, llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gemma3_text)"});
  expect_bad(json::array(), {"not a JSON object"});
}

TEST(Config, LoadErrorsNameTheFile) {
  testing::TempDir tmp;
  const auto file = (tmp.path / "config.json").string();
  expect_throw_with<FormatError>([&] { load_model_config(tmp.path); }, {file});
  testing::write_bytes(tmp.path / "config.json", R"({"model_type": "gpt2", "n_layer": )");
  expect_throw_with<FormatError>([&] { load_model_config(tmp.path); }, {file, "invalid JSON"});
  testing::write_bytes(tmp.path / "config.json", R"({"model_type": "gpt2", "model_type": "llama"})");
  expect_throw_with<FormatError>([&] { load_model_config(tmp.path); }, {file, "duplicate", "model_type"});
  testing::write_bytes(tmp.path / "config.json", kHubGpt2);
  EXPECT_EQ(load_model_config(tmp.path).hidden_size, 768);
}

// Tester finding: a UTF-8 byte-order mark before config.json was accepted without a word, while transformers'
// json.load refuses it ("Unexpected UTF-8 BOM"); refused naming the file, as tokenizer.json's is.
TEST(Config, Utf8ByteOrderMarkIsRefusedNamingTheFile) {
  testing::TempDir tmp;
  const auto file = (tmp.path / "config.json").string();
  testing::write_bytes(tmp.path / "config.json", "\xEF\xBB\xBF" + std::string(kHubGpt2));
  expect_throw_with<FormatError>([&] { load_model_config(tmp.path); },
                                 {file + ": starts with a UTF-8 byte-order mark (bytes EF BB BF) before the JSON"});
}

// Fresh-user finding (round 12): "swish", transformers' name for the same function as "silu" (ACT2FN maps both
// to SiLU), was refused.
TEST(Config, LlamaSwishIsSilu) {
  json j = json::parse(kLlama4);
  j["hidden_act"] = "swish";
  EXPECT_EQ(parse(j).activation, "silu");
  j["hidden_act"] = "swiglu";
  expect_bad(j, {"swiglu", "hidden_act", "supported: silu, or swish"});
}

}  // namespace
}  // namespace kq
