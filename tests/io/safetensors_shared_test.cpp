// Opening the shared test models: single file (gpt2-tiny), sharded with an
// index (gpt2-small) and BF16 (llama-small). References: shapes implied by
// config.json, parameter counts from the models README and the index's
// "metadata", and the raw file bytes read independently.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/config.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;

fs::path model(const char* name) { return testing::shared_dir() / "models" / name; }

int64_t total_params(const TensorStore& st) {
  int64_t n = 0;
  for (const auto& name : st.names()) n += st.get(name).numel();
  return n;
}

/// Every tensor's bytes equal the bytes at its offsets in the file, located
/// with a separate minimal header parse (std::ifstream, no mmap).
void expect_bytes_match_file(const TensorStore& st, const fs::path& file) {
  const std::string bytes = testing::read_bytes(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const auto h = nlohmann::json::parse(bytes.substr(8, n));
  for (const auto& [name, v] : h.items()) {
    if (name == "__metadata__") continue;
    const uint64_t b = v["data_offsets"][0], e = v["data_offsets"][1];
    const Tensor t = st.get(name);
    ASSERT_EQ(t.nbytes(), e - b) << name;
    EXPECT_EQ(std::memcmp(t.raw(), bytes.data() + 8 + n + b, e - b), 0) << name;
    EXPECT_EQ(st.file_of(name), file.string()) << name;
  }
}

/// GPT-2 parameter count from its config: embeddings, per-layer attention
/// (c_attn [d,3d], c_proj [d,d]), MLP ([d,f], [f,d]), two LayerNorms, final LayerNorm.
int64_t gpt2_params(const ModelConfig& c) {
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  const int64_t layer = d * 3 * d + 3 * d + d * d + d + d * f + f + f * d + d + 4 * d;
  return c.vocab_size * d + c.max_positions * d + c.num_layers * layer + 2 * d;
}

TEST(SharedModels, Gpt2TinySingleFile) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const TensorStore st = TensorStore::open_dir(model("gpt2-tiny"));
  const ModelConfig c = load_model_config(model("gpt2-tiny"));
  EXPECT_EQ(st.names().size(), size_t(4 + 12 * c.num_layers));  // wte wpe ln_f.{w,b} + 12 per block
  const Tensor wte = st.get("transformer.wte.weight");
  EXPECT_EQ(wte.dtype(), DType::F32);
  EXPECT_EQ(wte.shape(), (Shape{c.vocab_size, c.hidden_size}));
  EXPECT_TRUE(wte.is_mapped());
  EXPECT_EQ(st.get("transformer.wpe.weight").shape(), (Shape{c.max_positions, c.hidden_size}));
  EXPECT_EQ(st.get("transformer.h.0.attn.c_attn.weight").shape(), (Shape{c.hidden_size, 3 * c.hidden_size}));
  EXPECT_EQ(st.get("transformer.h.1.mlp.c_fc.weight").shape(), (Shape{c.hidden_size, c.intermediate_size}));
  EXPECT_FALSE(st.contains("lm_head.weight"));  // tied to wte
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(total_params(st), gpt2_params(c));
  EXPECT_NEAR(double(total_params(st)) / 1e6, 1.48, 0.005);  // README: 1.48 M
  expect_bytes_match_file(st, model("gpt2-tiny") / "model.safetensors");
  testing::expect_throw_with<FormatError>([&] { st.get("transformer.h.9.ln_1.weight"); },
                                          {"transformer.h.9.ln_1.weight", "gpt2-tiny"});
}

TEST(SharedModels, Gpt2SmallSharded) {
  KQ_REQUIRE_SHARED("models/gpt2-small");
  const fs::path dir = model("gpt2-small");
  const TensorStore st = TensorStore::open_dir(dir);
  const ModelConfig c = load_model_config(dir);
  std::ifstream idx(dir / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(idx);
  EXPECT_EQ(st.names().size(), index["weight_map"].size());
  int64_t bytes = 0;
  for (const auto& n : st.names()) bytes += int64_t(st.get(n).nbytes());
  EXPECT_EQ(bytes, index["metadata"]["total_size"].get<int64_t>());
  EXPECT_EQ(total_params(st), index["metadata"]["total_parameters"].get<int64_t>());
  EXPECT_EQ(total_params(st), gpt2_params(c));
  for (const auto& [name, shard] : index["weight_map"].items())
    EXPECT_EQ(st.file_of(name), (dir / shard.get<std::string>()).string()) << name;
  EXPECT_EQ(st.get("transformer.wte.weight").shape(), (Shape{c.vocab_size, c.hidden_size}));
  EXPECT_EQ(st.get("transformer.h.5.attn.c_proj.weight").shape(), (Shape{c.hidden_size, c.hidden_size}));
  for (int i = 1; i <= 4; ++i) {
    const fs::path shard = dir / fmt::format("model-{:05d}-of-00004.safetensors", i);
    expect_bytes_match_file(st, shard);
  }
}

TEST(SharedModels, LlamaSmallBf16) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const fs::path dir = model("llama-small");
  const TensorStore st = TensorStore::open_dir(dir);
  const ModelConfig c = load_model_config(dir);
  for (const auto& n : st.names()) EXPECT_EQ(st.get(n).dtype(), DType::BF16) << n;
  const int64_t d = c.hidden_size, hd = c.head_dim;
  EXPECT_EQ(st.get("model.embed_tokens.weight").shape(), (Shape{c.vocab_size, d}));
  EXPECT_EQ(st.get("model.layers.0.self_attn.q_proj.weight").shape(), (Shape{c.num_heads * hd, d}));
  EXPECT_EQ(st.get("model.layers.3.self_attn.k_proj.weight").shape(), (Shape{c.num_kv_heads * hd, d}));
  EXPECT_EQ(st.get("model.layers.0.mlp.gate_proj.weight").shape(), (Shape{c.intermediate_size, d}));
  EXPECT_EQ(st.get("model.layers.0.mlp.down_proj.weight").shape(), (Shape{d, c.intermediate_size}));
  EXPECT_EQ(st.get("model.norm.weight").shape(), (Shape{d}));
  EXPECT_FALSE(st.contains("lm_head.weight"));  // tie_word_embeddings
  const int64_t layer = d * c.num_heads * hd + 2 * d * c.num_kv_heads * hd + c.num_heads * hd * d +
                        3 * d * c.intermediate_size + 2 * d;
  EXPECT_EQ(total_params(st), c.vocab_size * d + c.num_layers * layer + d);
  EXPECT_NEAR(double(total_params(st)) / 1e6, 5.00, 0.005);  // README: 5.00 M
  expect_bytes_match_file(st, dir / "model.safetensors");
  // RMSNorm weights of a trained model are finite and mostly near 1.
  const Tensor norm = st.get("model.norm.weight").to_f32();
  double mean = 0;
  for (int64_t i = 0; i < norm.numel(); ++i) mean += norm.data<float>()[i];
  mean /= double(norm.numel());
  EXPECT_GT(mean, 0.1);
  EXPECT_LT(mean, 10.0);
}

}  // namespace
}  // namespace kq
