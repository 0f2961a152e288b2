// Quantizing a Qwen2 model (a copy of the shared llama-small as model_type "qwen2", with q/k/v_proj biases):
// the biases stay as the checkpoint has them through quantize_model (INT8, AWQ), save_quantized_model writes
// them beside the quantized weights, and the reloaded folder gives the in-memory model's logits bit for bit.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "models/llama_variant.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;

const ExecContext kCpu{Device::CPU, 2};

/// Expects the q/k/v ops of `m` to hold `biases` (F32 values of the BF16 tensors) and every other op none.
void expect_qkv_biases(Model& m, const std::map<std::string, Tensor>& biases, const std::string& what) {
  int with_bias = 0;
  for (const LinearSlot& s : m.linear_layers()) {
    const Tensor b = (*s.op)->bias();
    const auto it = biases.find(s.name + ".bias");
    ASSERT_EQ(b.defined(), it != biases.end()) << what << ": " << s.name;
    if (!b.defined()) continue;
    const Tensor want = it->second.to_f32();
    ASSERT_EQ(b.numel(), want.numel()) << what << ": " << s.name;
    for (int64_t i = 0; i < b.numel(); ++i)
      ASSERT_EQ(b.data<float>()[i], want.data<float>()[i]) << what << ": " << s.name << " [" << i << "]";
    ++with_bias;
  }
  EXPECT_EQ(with_bias, int(biases.size())) << what;
}

// INT8: the in-memory quantized Qwen2 model gives the quantized Llama form's logits (attention_bias with a zero
// o_proj bias); saved and loaded again, its logits are the same bit for bit, and the folder holds the biases.
TEST(Qwen2Quantize, Int8FolderKeepsTheBiasesAndReloadsToTheSameLogits) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto biases = testing::llama_small_qkv_biases(11);
  testing::TempDir tmp;
  const fs::path src = testing::llama_small_as_qwen2(tmp.path / "qwen2", biases);
  const fs::path llama = testing::llama_small_with_attention_biases(tmp.path / "llama", biases);
  const auto tokens = testing::spread_ids(64);
  QuantizeOptions o;
  o.spec = parse_quant_mode("int8");

  auto m = Model::load(src, kCpu);
  quantize_model(*m, o);
  expect_qkv_biases(*m, biases, "quantized in memory");
  const std::vector<float> want = kq::testing::prefill_logits(*m, tokens);
  auto ref = Model::load(llama, kCpu);
  quantize_model(*ref, o);
  EXPECT_EQ(kq::testing::prefill_logits(*ref, tokens), want);

  const fs::path out = tmp.path / "q";
  save_quantized_model(*m, o, out);
  {
    const TensorStore store = TensorStore::open_dir(out);
    for (const auto& [name, b] : biases) {
      ASSERT_TRUE(store.contains(name)) << name;
      const Tensor saved = store.get(name).to_f32(), orig = b.to_f32();
      ASSERT_EQ(saved.numel(), orig.numel()) << name;
      for (int64_t i = 0; i < orig.numel(); ++i) ASSERT_EQ(saved.data<float>()[i], orig.data<float>()[i]) << name;
    }
    for (const std::string& n : store.names()) EXPECT_FALSE(n.ends_with(".bias") && !biases.count(n)) << n;
  }
  std::unique_ptr<Model> reloaded;
  {
    testing::CapturedWarnings warnings;
    reloaded = Model::load(out, kCpu);
    EXPECT_TRUE(warnings.list.empty()) << warnings.list.front();
  }
  EXPECT_EQ(reloaded->config().arch, Arch::Qwen2);
  expect_qkv_biases(*reloaded, biases, "reloaded");
  EXPECT_EQ(kq::testing::prefill_logits(*reloaded, tokens), want);

  // The same folder relabelled llama (no biases): the q/k/v biases are unused and warned, as for an unquantized
  // folder (tester round 17: the quantized load applied them, the same file giving two models).
  nlohmann::json cfg = nlohmann::json::parse(testing::read_all(out / "config.json"));
  cfg["model_type"] = "llama";
  testing::write_text(out / "config.json", cfg.dump(2));
  testing::CapturedWarnings warnings;
  auto relabelled = Model::load(out, kCpu);
  ASSERT_EQ(warnings.list.size(), 1u);
  EXPECT_TRUE(testing::has(warnings.list[0], "not used by the llama architecture")) << warnings.list[0];
  expect_qkv_biases(*relabelled, {}, "relabelled llama");
}

// AWQ scales each layer's input channels inside its op: the biases (added after the product) are untouched,
// in memory and in the saved folder.
TEST(Qwen2Quantize, AwqLeavesTheBiasesAsTheyAre) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto biases = testing::llama_small_qkv_biases(5);
  testing::TempDir tmp;
  const fs::path src = testing::llama_small_as_qwen2(tmp.path / "qwen2", biases);
  QuantizeOptions o;
  o.spec = parse_quant_mode("awq-g32");
  o.keep_patterns = {"mlp\\."};  // the attention projections are enough here
  o.calibration.tokens = testing::spread_ids(256);
  o.calibration.window = 128;
  o.calibration.grid = 2;
  auto m = Model::load(src, kCpu);
  const QuantizeReport report = quantize_model(*m, o);
  int awq = 0;
  for (const LayerQuantization& l : report.layers) awq += l.quantized && l.awq_alpha >= 0;
  EXPECT_EQ(awq, 4 * 4);  // q, k, v, o of the 4 layers
  expect_qkv_biases(*m, biases, "AWQ in memory");
  const auto tokens = testing::spread_ids(32);
  const std::vector<float> want = kq::testing::prefill_logits(*m, tokens);
  save_quantized_model(*m, o, tmp.path / "q");
  auto reloaded = Model::load(tmp.path / "q", kCpu);
  expect_qkv_biases(*reloaded, biases, "AWQ reloaded");
  EXPECT_EQ(kq::testing::prefill_logits(*reloaded, tokens), want);
}

}  // namespace
}  // namespace kq
