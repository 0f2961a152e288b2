// Model::load checks config.json's sizes against the tensors in the
// safetensors headers before it allocates anything per layer: a hand-edited
// n_layer of 30000000 allocated 9 GB before "missing tensor
// 'transformer.h.2.ln_1.weight'", 200000000 (or a Llama num_hidden_layers of
// 2000000000) failed as "out of memory" naming nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

using namespace kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

/// A copy of model folder `src` in tmp/name with config.json's `key` set to `value`.
fs::path edited_copy(const TempDir& tmp, const fs::path& src, const std::string& name, const std::string& key,
                     int64_t value) {
  const fs::path dir = tmp.path / name;
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(src / f, dir / f);
  nlohmann::json j = nlohmann::json::parse(kq::testing::read_all(dir / "config.json"));
  j[key] = value;
  kq::testing::write_text(dir / "config.json", j.dump(2));
  return dir;
}

/// A copy of model folder `src` in tmp/name with config.json passed through `edit`.
fs::path edited_copy(const TempDir& tmp, const fs::path& src, const std::string& name,
                     const std::function<void(nlohmann::json&)>& edit) {
  const fs::path dir = tmp.path / name;
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(src / f, dir / f);
  nlohmann::json j = nlohmann::json::parse(kq::testing::read_all(dir / "config.json"));
  edit(j);
  kq::testing::write_text(dir / "config.json", j.dump(2));
  return dir;
}

std::string load_error(const fs::path& dir) {
  return kq::testing::error_of<FormatError>([&] { Model::load(dir); });
}

}  // namespace

TEST(ConfigSizes, LayerCountAboveTheFilesLayersIsNamed) {
  TempDir tmp;
  for (const int64_t n : {int64_t(3), int64_t(2000000000)}) {
    const fs::path dir = edited_copy(tmp, kq::testing::demo_model(), "n" + std::to_string(n), "n_layer", n);
    const std::string msg = load_error(dir);
    EXPECT_TRUE(kq::testing::has(msg, (dir / "config.json").string() + ": n_layer = " + std::to_string(n) + " but " +
                                          (dir / "model.safetensors").string() + " has tensors for 2 layers"))
        << msg;
  }
  // Fewer layers than the file has loads (the rest is warned as unused).
  EXPECT_NO_THROW(Model::load(edited_copy(tmp, kq::testing::demo_model(), "one", "n_layer", 1)));
}

TEST(ConfigSizes, EmbeddingShapeAgainstVocabAndHiddenIsNamed) {
  TempDir tmp;
  const fs::path dir = edited_copy(tmp, kq::testing::demo_model(), "wide", "n_embd", 128000);
  const std::string msg = load_error(dir);
  EXPECT_TRUE(kq::testing::has(msg, "config.json: vocab_size = 8192 and n_embd = 128000 but tensor "
                                    "'transformer.wte.weight'"))
      << msg;
  EXPECT_TRUE(kq::testing::has(msg, "has shape [8192, 128]")) << msg;
}

TEST(ConfigSizes, LlamaLayerCountAndHeadDimAreCheckedBeforeAllocating) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const fs::path src = kq::testing::shared_dir() / "models/llama-small";
  const fs::path layers = edited_copy(tmp, src, "layers", "num_hidden_layers", 2000000000);
  std::string msg = load_error(layers);
  EXPECT_TRUE(kq::testing::has(msg, "config.json: num_hidden_layers = 2000000000 but ")) << msg;
  EXPECT_TRUE(kq::testing::has(msg, "has tensors for 4 layers")) << msg;
  // head_dim sizes the RoPE tables, built before any layer is read: 512 x 10^8 floats.
  msg = load_error(edited_copy(tmp, src, "head_dim", "head_dim", 200000000));
  // The key is given: named as it is, without the default of a config without it (tester round 18, finding 11).
  EXPECT_TRUE(kq::testing::has(msg, "num_attention_heads = 8, head_dim = 200000000 and hidden_size = 256")) << msg;
  EXPECT_TRUE(kq::testing::has(msg, "'model.layers.0.self_attn.q_proj.weight'")) << msg;
}

// Fresh-user finding: a GPT-2 config.json with transformers' alias names
// (GPT2Config.attribute_map) was refused when it had only those, and an alias
// contradicting its key ("num_attention_heads": 8 beside "n_head": 4) loaded
// the same model without a word. Aliases load the same model; a conflict is
// an error naming both keys and values.
TEST(ConfigSizes, Gpt2AliasesLoadTheSameModelAndConflictsAreRefused) {
  TempDir tmp;
  const fs::path aliases = edited_copy(tmp, kq::testing::demo_model(), "aliases", [](nlohmann::json& j) {
    for (const auto& [key, alias] : {std::pair{"n_layer", "num_hidden_layers"}, std::pair{"n_embd", "hidden_size"},
                                     std::pair{"n_head", "num_attention_heads"},
                                     std::pair{"n_positions", "max_position_embeddings"}}) {
      j[alias] = j[key];
      j.erase(key);
    }
  });
  const auto a = Model::load(aliases);
  const auto m = Model::load(kq::testing::demo_model());
  EXPECT_EQ(a->config().num_layers, m->config().num_layers);
  EXPECT_EQ(a->config().hidden_size, m->config().hidden_size);
  EXPECT_EQ(a->config().num_heads, m->config().num_heads);
  EXPECT_EQ(a->config().max_positions, m->config().max_positions);
  const std::string msg = load_error(edited_copy(tmp, kq::testing::demo_model(), "heads", "num_attention_heads", 8));
  EXPECT_TRUE(kq::testing::has(msg, "config.json: n_head 4 conflicts with num_attention_heads 8")) << msg;
}

// A GPT-2 config giving its sizes under transformers' aliases: the size errors name the aliases, the keys the file
// has (they said "n_layer = 3" and "n_embd = 128000" of a file without those keys).
TEST(ConfigSizes, Gpt2SizeErrorsNameTheAliasTheFileUses) {
  TempDir tmp;
  const auto aliased = [&](const std::string& name, const char* alias, int64_t value) {
    return edited_copy(tmp, kq::testing::demo_model(), name, [&](nlohmann::json& j) {
      for (const auto& [key, a] : {std::pair{"n_layer", "num_hidden_layers"}, std::pair{"n_embd", "hidden_size"}}) {
        j[a] = j[key];
        j.erase(key);
      }
      j[alias] = value;
    });
  };
  const fs::path layers = aliased("layers", "num_hidden_layers", 3);
  std::string msg = load_error(layers);
  EXPECT_TRUE(kq::testing::has(msg, (layers / "config.json").string() + ": num_hidden_layers = 3 but " +
                                        (layers / "model.safetensors").string() + " has tensors for 2 layers"))
      << msg;
  msg = load_error(aliased("wide", "hidden_size", 128000));
  EXPECT_TRUE(kq::testing::has(msg, "config.json: vocab_size = 8192 and hidden_size = 128000 but tensor "
                                    "'transformer.wte.weight'"))
      << msg;
  EXPECT_TRUE(kq::testing::has(msg, "expected [vocab_size, hidden_size]")) << msg;
}

// A whole Llama config parses under model_type "gpt2" (its size keys are
// GPT-2's aliases); the load names the Llama layer tensors and the model_type meant.
TEST(ConfigSizes, LlamaCheckpointUnderGpt2ModelTypeIsNamed) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const fs::path dir = edited_copy(tmp, kq::testing::shared_dir() / "models/llama-small", "gpt2",
                                   [](nlohmann::json& j) { j["model_type"] = "gpt2"; });
  const std::string msg = load_error(dir);
  EXPECT_TRUE(kq::testing::has(msg, "num_hidden_layers = 4 but ")) << msg;  // the key the file has
  EXPECT_TRUE(kq::testing::has(msg, "has no layer tensors ('transformer.h.0.*'); it has 'model.layers.")) << msg;
  EXPECT_TRUE(kq::testing::has(msg, "of a Llama checkpoint: is \"model_type\" meant to be \"llama\"?")) << msg;
}
