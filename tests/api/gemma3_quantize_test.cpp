// Quantizing a Gemma 3 text model (the tiny random one of tests/models/gemma3_tiny.hpp, written to a
// temporary folder): a mode of each format (INT8, NF4, FP4, FP8, INT4, AWQ) with per-tensor / weight-only,
// asymmetric, BF16-compute and no-double-quantization variants (all 84 canonical modes of
// valid_quant_mode_names passed this test once, in 124 s on 2 threads). quantize_model quantizes the 7 linear
// layers of each block, the saved folder keeps Gemma's RMSNorm weights as the source stores them (w, which the
// loader applies as 1 + w: a folder holding 1 + w would reload to another model), and the reloaded folder
// gives the in-memory quantized model's logits bit for bit, without a warning. No shared data.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "models/gemma3_tiny.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;

const ExecContext kCpu{Device::CPU, 2};

TEST(Gemma3Quantize, EachFormatSavesTheNormWeightsAsStoredAndReloadsToTheSameLogits) {
  testing::TinyGemma3 s;
  s.ffn = 256;  // every linear's K a multiple of 256: every block size of every mode fits
  const auto source = testing::tiny_gemma3_tensors(s);
  testing::TempDir tmp;
  const fs::path src =
      testing::write_model_folder(tmp.path / "gemma3", testing::tiny_gemma3_config(s), source);
  std::vector<int32_t> tokens(20);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 37 + 11) % size_t(s.vocab));
  const std::vector<float> unquantized = kq::testing::prefill_logits(*Model::load(src, kCpu), tokens);

  const char* const modes[] = {"int8",      "int8-pt-wo",         "nf4",     "fp4-b32-nodq-bf16", "fp8",
                               "int4-g128", "int4-g64-asym-bf16", "awq-g128"};
  for (const std::string mode : modes) {
    SCOPED_TRACE(mode);
    QuantizeOptions o;
    o.spec = parse_quant_mode(mode);
    o.calibration.tokens = tokens;  // AWQ modes calibrate on them; the others ignore them
    auto m = Model::load(src, kCpu);
    const QuantizeReport report = quantize_model(*m, o);
    int quantized = 0;
    for (const LayerQuantization& l : report.layers) quantized += l.quantized;
    EXPECT_EQ(quantized, 7 * s.layers);  // q, k, v, o, gate, up, down (lm_head: the tied embedding, kept)
    const std::vector<float> want = kq::testing::prefill_logits(*m, tokens);
    EXPECT_NE(want, unquantized);

    const fs::path out = tmp.path / mode;
    {
      testing::CapturedWarnings warnings;  // the folder has no tokenizer files: said, not checked here
      save_quantized_model(*m, o, out);
    }
    {
      const TensorStore store = TensorStore::open_dir(out);
      for (const auto& [name, orig] : source) {
        if (orig.shape().size() != 1) continue;  // the RMSNorm weights
        ASSERT_TRUE(store.contains(name)) << name;
        const Tensor saved = store.get(name).to_f32();
        for (int64_t i = 0; i < orig.numel(); ++i)
          ASSERT_EQ(saved.data<float>()[i], orig.data<float>()[i]) << name << " [" << i << "]";
      }
      const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(out / "config.json"));
      EXPECT_EQ(cfg.at("model_type"), "gemma3_text");
    }
    std::unique_ptr<Model> reloaded;
    {
      testing::CapturedWarnings warnings;
      reloaded = Model::load(out, kCpu);
      EXPECT_TRUE(warnings.list.empty()) << warnings.list.front();
    }
    EXPECT_EQ(reloaded->config().arch, Arch::Gemma3);
    EXPECT_EQ(kq::testing::prefill_logits(*reloaded, tokens), want);
  }
}

}  // namespace
}  // namespace kq
