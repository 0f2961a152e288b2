// Model::load checks config.json's sizes against the tensors in the
// safetensors headers before it allocates anything per layer: a hand-edited
// n_layer of 30000000 allocated 9 GB before "missing tensor
// 'transformer.h.2.ln_1.weight'", 200000000 (or a Llama num_hidden_layers of
// 2000000000) failed as "out of memory" naming nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

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
  EXPECT_TRUE(kq::testing::has(msg, "head_dim (hidden_size / num_attention_heads when absent) = 200000000")) << msg;
  EXPECT_TRUE(kq::testing::has(msg, "'model.layers.0.self_attn.q_proj.weight'")) << msg;
}
