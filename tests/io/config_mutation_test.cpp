// config.json robustness: every one-place mutation of valid configs of each
// architecture (each value replaced by every JSON type and out-of-range
// numbers, each member removed; tests/common/json_mutations.hpp) is either
// accepted with sane sizes or refused with kq::FormatError, never another
// exception (a raw nlohmann type_error, std::out_of_range, ...).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <string>

#include <nlohmann/json.hpp>

#include "common/json_mutations.hpp"
#include "kq/config.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {
using nlohmann::json;

// One valid config per architecture, with the optional keys each one reads
// present, so that their mutations are exercised too.
const char* const kConfigs[] = {
    R"({"model_type": "gpt2", "activation_function": "gelu_new", "n_ctx": 1024, "n_embd": 64, "n_head": 4,
        "n_layer": 2, "n_positions": 1024, "n_inner": null, "layer_norm_epsilon": 1e-05, "vocab_size": 1000,
        "tie_word_embeddings": true, "torch_dtype": "float32"})",
    R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": false,
        "attention_bias": false, "mlp_bias": false, "vocab_size": 1000, "torch_dtype": "bfloat16",
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}})",
    R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": 1000, "dtype": "float16",
        "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}})",
    R"({"model_type": "mistral", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "sliding_window": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu",
        "vocab_size": 1000})",
    R"({"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "use_sliding_window": true, "sliding_window": 2048, "max_window_layers": 1,
        "layer_types": ["full_attention", "sliding_attention"], "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": true, "vocab_size": 1000})",
    R"({"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 40960,
        "use_sliding_window": false, "sliding_window": null, "max_window_layers": 2, "attention_bias": false,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": true,
        "vocab_size": 1000})",
    R"({"model_type": "phi3", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096, "partial_rotary_factor": 0.75, "sliding_window": 262144,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": true,
        "vocab_size": 1000, "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.1, 1.2, 1.5, 2.0, 3.0],
        "long_factor": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]}})",
    R"({"model_type": "phi3", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": 1000, "rope_parameters": {"rope_type": "longrope",
        "rope_theta": 10000.0, "partial_rotary_factor": 1.0, "original_max_position_embeddings": 64,
        "factor": 2.0, "attention_factor": 1.1, "short_factor": [1, 1, 1, 1, 1, 1, 1, 1],
        "long_factor": [2, 2, 2, 2, 2, 2, 2, 2]}})",
};

bool sane_size(int64_t v) { return v >= 1 && v <= std::numeric_limits<int32_t>::max(); }

// What an accepted config must satisfy for the model code to be safe to build.
std::string insane(const ModelConfig& c) {
  if (!sane_size(c.vocab_size) || !sane_size(c.hidden_size) || !sane_size(c.intermediate_size) ||
      !sane_size(c.num_layers) || !sane_size(c.num_heads) || !sane_size(c.num_kv_heads) || !sane_size(c.head_dim) ||
      !sane_size(c.max_positions))
    return "a size out of [1, 2^31-1]";
  if (c.num_heads % c.num_kv_heads != 0) return "heads not a multiple of kv heads";
  if (!std::isfinite(c.norm_eps) || c.norm_eps < 0) return "norm_eps not finite and >= 0";
  if (c.arch != Arch::GPT2 && (!std::isfinite(c.rope_theta) || c.rope_theta <= 0)) return "rope_theta";
  if (c.sliding_window < 0) return "negative sliding_window";
  if (!c.sliding_layers.empty() && int64_t(c.sliding_layers.size()) != c.num_layers) return "sliding_layers count";
  const auto f32_positive = [](double v) { return std::isfinite(float(v)) && float(v) > 0; };
  if (c.arch != Arch::GPT2 && !f32_positive(c.rope_theta)) return "rope_theta as float32";
  const RopeScaling& r = c.rope_scaling;
  if (!f32_positive(r.factor) || !f32_positive(r.low_freq_factor) || !f32_positive(r.high_freq_factor))
    return "rope scaling values as float32";
  if (!std::isfinite(r.factor) || r.factor <= 0 || !std::isfinite(r.low_freq_factor) || r.low_freq_factor <= 0 ||
      !std::isfinite(r.high_freq_factor) || r.high_freq_factor <= 0 || r.original_max_positions < 1)
    return "rope scaling values";
  if (c.rotary_dim != 0 && (c.rotary_dim < 2 || c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim))
    return "rotary_dim";
  if (r.type == RopeScaling::Type::LongRope) {
    const size_t pairs = size_t(rotary_dim_of(c) / 2);
    if (r.short_factor.size() != pairs || r.long_factor.size() != pairs) return "longrope factor counts";
    for (const double v : r.short_factor)
      if (!f32_positive(v) || !std::isfinite(v) || v <= 0) return "longrope short factors";
    for (const double v : r.long_factor)
      if (!f32_positive(v) || !std::isfinite(v) || v <= 0) return "longrope long factors";
    if (!f32_positive(r.attention_factor) || !std::isfinite(r.attention_factor)) return "longrope attention factor";
  }
  return "";
}

TEST(ConfigMutation, EveryMutationIsAcceptedSanelyOrRefusedWithFormatError) {
  size_t accepted = 0, refused = 0;
  for (const char* text : kConfigs) {
    const json base = json::parse(text);
    ASSERT_NO_THROW(parse_model_config(base, "config.json")) << base.dump();
    for (const testing::JsonMutation& m : testing::json_mutations(base)) {
      SCOPED_TRACE(base.value("model_type", std::string()) + ": " + m.what);
      try {
        const ModelConfig c = parse_model_config(m.doc, "config.json");
        EXPECT_EQ(insane(c), "") << m.doc.dump();
        ++accepted;
      } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
        ++refused;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "not a kq::FormatError: " << e.what();
      }
    }
  }
  // Both outcomes occur (the mutations reach the parser's checks and its defaults).
  EXPECT_GT(accepted, 100u);
  EXPECT_GT(refused, 100u);
}

}  // namespace
}  // namespace kq
