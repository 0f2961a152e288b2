// Quantizing a Qwen3 model (the tiny random one of tests/models/qwen3_tiny.hpp, written to a temporary folder):
// quantize_model leaves q_norm / k_norm (F32 gains, not linear layers) as they are, save_quantized_model copies
// them beside the quantized weights, and the reloaded folder gives the in-memory quantized model's logits bit for
// bit, without a warning. No shared data.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/checksum_record.hpp"
#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "models/qwen3_tiny.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;

const ExecContext kCpu{Device::CPU, 2};

TEST(Qwen3Quantize, SavedFolderKeepsQkNormAndReloadsToTheSameLogits) {
  const testing::TinyQwen3 s;
  const auto source = testing::tiny_qwen3_tensors(s);
  testing::TempDir tmp;
  const fs::path src = testing::write_model_folder(tmp.path / "qwen3", testing::tiny_qwen3_config(s), source);
  std::vector<int32_t> tokens(20);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 37 + 11) % size_t(s.vocab));
  const std::vector<float> unquantized = kq::testing::prefill_logits(*Model::load(src, kCpu), tokens);

  for (const char* mode : {"int8", "nf4"}) {
    SCOPED_TRACE(mode);
    QuantizeOptions o;
    o.spec = parse_quant_mode(mode);
    auto m = Model::load(src, kCpu);
    const QuantizeReport report = quantize_model(*m, o);
    int quantized = 0;
    for (const LayerQuantization& l : report.layers) quantized += l.quantized;
    EXPECT_EQ(quantized, 7 * s.layers);  // q, k, v, o, gate, up, down (lm_head kept)
    const std::vector<float> want = kq::testing::prefill_logits(*m, tokens);
    EXPECT_NE(want, unquantized);

    const fs::path out = tmp.path / mode;
    {
      testing::CapturedWarnings warnings;  // the folder has no tokenizer files: said once, not checked here
      save_quantized_model(*m, o, out);
    }
    {
      const TensorStore store = TensorStore::open_dir(out);
      for (int64_t l = 0; l < s.layers; ++l)
        for (const char* norm : {"q_norm", "k_norm"}) {
          const std::string name = fmt::format("model.layers.{}.self_attn.{}.weight", l, norm);
          ASSERT_TRUE(store.contains(name)) << name;
          const Tensor saved = store.get(name).to_f32(), orig = source.at(name);
          ASSERT_EQ(saved.shape(), orig.shape()) << name;
          for (int64_t i = 0; i < orig.numel(); ++i)
            ASSERT_EQ(saved.data<float>()[i], orig.data<float>()[i]) << name << " [" << i << "]";
        }
      const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(out / "config.json"));
      EXPECT_EQ(cfg.at("model_type"), "qwen3");
    }
    std::unique_ptr<Model> reloaded;
    {
      testing::CapturedWarnings warnings;
      reloaded = Model::load(out, kCpu);
      EXPECT_TRUE(warnings.list.empty()) << warnings.list.front();
    }
    EXPECT_EQ(reloaded->config().arch, Arch::Qwen3);
    EXPECT_TRUE(reloaded->config().qk_norm);
    EXPECT_EQ(kq::testing::prefill_logits(*reloaded, tokens), want);

    // Without its k_norm gains, the quantized folder is refused as an unquantized one is.
    {
      const TensorStore store = TensorStore::open_dir(out);
      std::map<std::string, Tensor> tensors;
      for (const std::string& n : store.names())
        if (n != "model.layers.0.self_attn.k_norm.weight") tensors.emplace(n, store.get(n));
      const fs::path broken = tmp.path / (std::string(mode) + "-no-k-norm");
      fs::create_directories(broken);
      fs::copy_file(out / "config.json", broken / "config.json");
      write_safetensors(broken / "model.safetensors", tensors, store.metadata());
      testing::record_checksums_again(broken);  // the missing-tensor check behind the checksums
      const std::string msg = testing::error_of<FormatError>([&] { (void)Model::load(broken, kCpu); });
      EXPECT_TRUE(testing::has(msg, "missing tensor 'model.layers.0.self_attn.k_norm.weight' (expected shape [32])"))
          << msg;
    }
  }
}

}  // namespace
}  // namespace kq
