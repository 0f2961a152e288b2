// Tester finding (round 18): a config whose num_hidden_layers is smaller than
// the checkpoint's loaded with a warning that the extra layers' tensors are not
// used, and save_quantized_model then copied them into the quantized folder all
// the same (whose reload warned about them again). Now the folder holds what
// the model uses: Model::unused_source_tensors are left out, the load's warning
// says so, and the saved folder reloads, without a warning, to the in-memory
// quantized model's logits. The shipped demo model (models/gpt2-tiny, 2 layers)
// with n_layer 1, and ../shared's llama-small (4 layers) with 2 (skipped without it).
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;

const ExecContext kCpu{Device::CPU, 2};

/// Copies `model` with config.json's `layers_key` set to `layers`, then checks that the load warns about the
/// `unused` tensors of the layers beyond (names starting with one of `prefixes`, the first one's first), that
/// the quantized folder saved from it (int8, nf4) leaves them out, and that it reloads without a warning to the
/// in-memory quantized model's logits.
void expect_unused_left_out(const fs::path& model, const char* layers_key, int layers, size_t unused,
                            const std::vector<std::string>& prefixes, const std::string& arch) {
  const auto beyond = [&](const std::string& name) {
    for (const std::string& p : prefixes)
      if (name.starts_with(p)) return true;
    return false;
  };
  testing::TempDir tmp;
  const fs::path src = tmp.path / "fewer-layers";
  fs::copy(model, src, fs::copy_options::recursive);
  nlohmann::json cfg = nlohmann::json::parse(testing::read_all(src / "config.json"));
  ASSERT_GT(cfg.at(layers_key).get<int>(), layers);
  cfg[layers_key] = layers;
  testing::write_text(src / "config.json", cfg.dump(2));

  std::vector<int32_t> tokens(24);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 131 + 7) % 8192);
  for (const char* mode : {"int8", "nf4"}) {
    SCOPED_TRACE(mode);
    QuantizeOptions o;
    o.spec = parse_quant_mode(mode);
    std::unique_ptr<Model> m;
    {
      testing::CapturedWarnings warnings;
      m = Model::load(src, kCpu);
      ASSERT_EQ(warnings.list.size(), 1u);
      EXPECT_TRUE(testing::has(warnings.list[0],
                               fmt::format("{} tensors in the weights are not used by the {} architecture with {} "
                                           "layer{} and were ignored (a quantized folder saved from this model "
                                           "leaves them out): '{}",
                                           unused, arch, layers, layers == 1 ? "" : "s", prefixes.front())))
          << warnings.list[0];
    }
    ASSERT_EQ(m->unused_source_tensors().size(), unused);
    for (const std::string& n : m->unused_source_tensors()) EXPECT_TRUE(beyond(n)) << n;
    (void)quantize_model(*m, o);
    const std::vector<float> want = kq::testing::prefill_logits(*m, tokens);

    const fs::path out = tmp.path / mode;
    save_quantized_model(*m, o, out);
    {
      const TensorStore store = TensorStore::open_dir(out);
      for (const std::string& n : store.names()) EXPECT_FALSE(beyond(n)) << n;
      for (const std::string& n : m->unused_source_tensors()) EXPECT_FALSE(store.contains(n)) << n;
    }
    std::unique_ptr<Model> reloaded;
    {
      testing::CapturedWarnings warnings;  // nothing unused is left to warn about
      reloaded = Model::load(out, kCpu);
      EXPECT_TRUE(warnings.list.empty()) << warnings.list.front();
    }
    EXPECT_TRUE(reloaded->unused_source_tensors().empty());
    EXPECT_EQ(reloaded->config().num_layers, layers);
    EXPECT_EQ(kq::testing::prefill_logits(*reloaded, tokens), want);
  }
}

TEST(UnusedTensorsSave, Gpt2QuantizedFolderLeavesOutTheLayersBeyondTheConfigAndReloadsToTheSameLogits) {
  expect_unused_left_out(testing::demo_model(), "n_layer", 1, 12, {"transformer.h.1."}, "gpt2");
}

// The tester's case: llama-small (4 layers) with num_hidden_layers 2, 18 tensors unused.
TEST(UnusedTensorsSave, LlamaQuantizedFolderLeavesOutTheLayersBeyondTheConfigAndReloadsToTheSameLogits) {
  KQ_REQUIRE_SHARED("models/llama-small");
  expect_unused_left_out(testing::shared_dir() / "models" / "llama-small", "num_hidden_layers", 2, 18,
                         {"model.layers.2.", "model.layers.3."}, "llama");
}

}  // namespace
}  // namespace kq
