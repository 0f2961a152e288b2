// Quantizing a Phi-3 model (the tiny random one of tests/models/phi3_tiny.hpp, fused qkv_proj / gate_up_proj,
// written to a temporary folder): quantize_model quantizes the split q/k/v and gate/up layers, save_quantized_model
// writes them under those names (no fused tensor is left in the folder; a layer kept in high precision is saved as
// its rows of the fused weight, bit for bit), and the reloaded folder gives the in-memory quantized model's logits
// bit for bit, without a warning. No shared data.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "models/phi3_tiny.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;

const ExecContext kCpu{Device::CPU, 2};

TEST(Phi3Quantize, SavedFolderHasTheSplitLayersAndReloadsToTheSameLogits) {
  const testing::TinyPhi3 s;
  const auto source = testing::tiny_phi3_tensors(s);
  testing::TempDir tmp;
  const fs::path src = testing::write_model_folder(tmp.path / "phi3", testing::tiny_phi3_config(s), source);
  std::vector<int32_t> tokens(20);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 37 + 11) % size_t(s.vocab));
  const std::vector<float> unquantized = kq::testing::prefill_logits(*Model::load(src, kCpu), tokens);

  // Every layer, then with k_proj and up_proj kept in high precision (saved as rows of the fused weights).
  for (const bool keep : {false, true})
    for (const char* mode : {"int8", "nf4"}) {
      SCOPED_TRACE(std::string(mode) + (keep ? " keeping k_proj and up_proj" : ""));
      QuantizeOptions o;
      o.spec = parse_quant_mode(mode);
      if (keep) o.keep_patterns = {"self_attn\\.k_proj|mlp\\.up_proj"};
      auto m = Model::load(src, kCpu);
      const QuantizeReport report = quantize_model(*m, o);
      int quantized = 0;
      for (const LayerQuantization& l : report.layers) quantized += l.quantized;
      EXPECT_EQ(quantized, (keep ? 5 : 7) * s.layers);  // q, k, v, o, gate, up, down (lm_head kept)
      const std::vector<float> want = kq::testing::prefill_logits(*m, tokens);
      EXPECT_NE(want, unquantized);

      const fs::path out = tmp.path / (std::string(mode) + (keep ? "-keep" : ""));
      {
        testing::CapturedWarnings warnings;  // the folder has no tokenizer files: said once, not checked here
        save_quantized_model(*m, o, out);
      }
      {
        const TensorStore store = TensorStore::open_dir(out);
        for (const std::string& n : store.names()) {
          EXPECT_FALSE(n.ends_with("qkv_proj.weight") || n.ends_with("gate_up_proj.weight")) << n;
          EXPECT_FALSE(n.ends_with("k_proj.weight") && !keep) << n;
        }
        if (keep) {
          // k_proj's rows of qkv_proj (after q's 64) and up_proj's of gate_up_proj (after gate's 96), as on disk.
          for (int64_t l = 0; l < s.layers; ++l)
            for (const auto& [part, fused, row0, rows] :
                 {std::tuple{"self_attn.k_proj", "self_attn.qkv_proj", int64_t(64), int64_t(32)},
                  std::tuple{"mlp.up_proj", "mlp.gate_up_proj", int64_t(96), int64_t(96)}}) {
              const std::string p = fmt::format("model.layers.{}.", l);
              ASSERT_TRUE(store.contains(p + part + ".weight")) << p + part;
              const Tensor saved = store.get(p + part + ".weight");
              const Tensor orig = source.at(p + fused + ".weight").slice_rows(row0, row0 + rows);
              ASSERT_EQ(saved.shape(), orig.shape()) << p + part;
              ASSERT_EQ(saved.dtype(), DType::F32);
              EXPECT_EQ(std::memcmp(saved.raw(), orig.raw(), orig.nbytes()), 0) << p + part;
            }
        }
        const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(out / "config.json"));
        EXPECT_EQ(cfg.at("model_type"), "phi3");
        EXPECT_TRUE(cfg.at("quantization_config").at("modules").contains("model.layers.0.self_attn.q_proj"));
      }
      std::unique_ptr<Model> reloaded;
      {
        testing::CapturedWarnings warnings;
        reloaded = Model::load(out, kCpu);
        EXPECT_TRUE(warnings.list.empty()) << warnings.list.front();
      }
      EXPECT_EQ(reloaded->config().arch, Arch::Phi3);
      EXPECT_EQ(reloaded->config().rotary_dim, 12);
      EXPECT_EQ(reloaded->config().rope_scaling, m->config().rope_scaling);
      EXPECT_EQ(kq::testing::prefill_logits(*reloaded, tokens), want);
    }
}

}  // namespace
}  // namespace kq
