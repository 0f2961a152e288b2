// bitsandbytes 4-bit NF4 checkpoints (transformers' BitsAndBytesConfig load_in_4bit, saved with the packed
// QuantState): a tiny Llama written by tests/common/bnb_pack.hpp from known codes and absmax values (plain and
// nested) loads with every linear layer dequantizing to exactly NF4 value · absmax and gives the logits of the
// same model with those weights stored as F32; unsupported configs (8-bit, FP4) and damaged states are refused
// naming config.json and the key, or the layer and tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/bnb_pack.hpp"
#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "models/quantized_tiny_llama.hpp"

namespace kq {
namespace {

using nlohmann::json;
using testing::error_of;
using testing::has;

const ExecContext kCpu{Device::CPU, 2};
json bnb_config() {
  return {{"quant_method", "bitsandbytes"},     {"load_in_4bit", true},
          {"load_in_8bit", false},              {"bnb_4bit_quant_type", "nf4"},
          {"bnb_4bit_use_double_quant", true},  {"bnb_4bit_compute_dtype", "bfloat16"},
          {"bnb_4bit_quant_storage", "uint8"},  {"llm_int8_skip_modules", nullptr}};
}

/// The tiny Llama (models/quantized_tiny_llama.hpp) as a bitsandbytes checkpoint ("bnb") and with F32 weights
/// ("ref").
testing::QuantizedPair write_pair(const std::filesystem::path& root, bool nested, int64_t blocksize) {
  const json cfg = testing::quantized_tiny_llama_config(false, "float32");
  return testing::write_quantized_pair(root, "bnb", 11, cfg, bnb_config(), cfg, false,
                                       [&](const std::string& module, int64_t N, int64_t K, uint64_t seed) {
                                         const testing::BnbCodes c = testing::bnb_codes(N, K, blocksize, nested, seed);
                                         return testing::QuantizedLayer{testing::bnb_layer_tensors(c, module),
                                                                        testing::bnb_reference(c)};
                                       });
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(BnbCheckpoint, Nf4LoadsLosslesslyWithTheLogitsOfTheDequantizedModel) {
  const std::vector<int32_t> tokens = {1, 5, 9, 33, 77, 2, 40, 95, 12, 60};
  for (const auto& [nested, bs] : {std::pair{true, int64_t(64)}, std::pair{false, int64_t(64)},
                                   std::pair{true, int64_t(256)}}) {
    const std::string what = fmt::format("nested {} blocksize {}", nested, bs);
    testing::TempDir tmp;
    const testing::QuantizedPair p = write_pair(tmp.path, nested, bs);
    auto m = Model::load(p.quantized, kCpu);
    auto ref = Model::load(p.ref, kCpu);
    int converted = 0;
    for (const LinearSlot& s : m->linear_layers()) {
      if (s.is_lm_head) continue;
      const Tensor w = (*s.op)->dequantized_weight();
      const Tensor& want = p.reference.at(s.name);
      const std::string format = (*s.op)->format();  // nf4[-bB]-nodq: F32 block scales, no kq double quantization
      EXPECT_TRUE(format.starts_with("nf4") && has(format, "nodq")) << what << " " << format;
      EXPECT_TRUE(w.shape() == want.shape() && std::memcmp(w.raw(), want.raw(), w.nbytes()) == 0)
          << what << " " << s.name;
      ++converted;
    }
    EXPECT_EQ(converted, 7 * testing::kQtLayers) << what;
    EXPECT_LT(rel_l2(testing::prefill_logits(*m, tokens), testing::prefill_logits(*ref, tokens)), 1e-5) << what;
  }
}

std::string load_error(const std::function<void(json&)>& edit,
                       const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors = {}) {
  testing::TempDir tmp;
  const testing::QuantizedPair p = write_pair(tmp.path, true, 64);
  json cfg = json::parse(testing::read_all(p.quantized / "config.json"));
  edit(cfg["quantization_config"]);
  testing::write_text(p.quantized / "config.json", cfg.dump(2));
  if (edit_tensors) {
    std::map<std::string, Tensor> t;
    {
      const TensorStore store = TensorStore::open_dir(p.quantized);
      for (const std::string& n : store.names()) t[n] = store.get(n).clone();
    }
    edit_tensors(t);
    std::filesystem::remove(p.quantized / "model.safetensors");
    write_safetensors(p.quantized / "model.safetensors", t);
  }
  return error_of<FormatError>([&] { (void)Model::load(p.quantized, kCpu); });
}

TEST(BnbCheckpoint, UnsupportedConfigsAndDamagedStatesAreRefused) {
  std::string m = load_error([](json& q) { q["bnb_4bit_quant_type"] = "fp4"; });
  EXPECT_TRUE(has(m, "config.json") && has(m, "quantization_config.bnb_4bit_quant_type 'fp4'")) << m;
  m = load_error([](json& q) { q.erase("bnb_4bit_quant_type"); });
  EXPECT_TRUE(has(m, "'fp4' (absent: transformers' default)")) << m;
  m = load_error([](json& q) { q["load_in_8bit"] = true; });
  EXPECT_TRUE(has(m, "quantization_config.load_in_8bit")) << m;
  m = load_error([](json& q) { q["load_in_4bit"] = false; });
  EXPECT_TRUE(has(m, "quantization_config.load_in_4bit")) << m;
  m = load_error([](json& q) { q["bnb_4bit_quant_storage"] = "bfloat16"; });
  EXPECT_TRUE(has(m, "quantization_config.bnb_4bit_quant_storage 'bfloat16'")) << m;
  // A quant state that is not JSON, and one of another shape.
  const std::string state = "model.layers.0.self_attn.v_proj.weight.quant_state.bitsandbytes__nf4";
  m = load_error([](json&) {}, [&](auto& t) { t[state].template mutable_data<uint8_t>()[0] = 'x'; });
  EXPECT_TRUE(has(m, "quantized layer 'model.layers.0.self_attn.v_proj'") && has(m, state)) << m;
  m = load_error([](json&) {}, [&](auto& t) {
    json j = {{"quant_type", "nf4"}, {"blocksize", 64}, {"shape", {16, 64}}};
    const std::string s = j.dump();
    Tensor x = Tensor::empty(DType::U8, {int64_t(s.size())});
    std::memcpy(x.raw_mut(), s.data(), s.size());
    t[state] = x;
  });
  EXPECT_TRUE(has(m, state) && has(m, "[16, 64]") && has(m, "[32, 64]")) << m;
  // An FP4 layer in an NF4 folder.
  m = load_error([](json&) {}, [&](auto& t) {
    const std::string fp4 = "model.layers.1.mlp.up_proj.weight.quant_state.bitsandbytes__fp4";
    t[fp4] = t["model.layers.1.mlp.up_proj.weight.quant_state.bitsandbytes__nf4"];
    t.erase("model.layers.1.mlp.up_proj.weight.quant_state.bitsandbytes__nf4");
  });
  EXPECT_TRUE(has(m, "model.layers.1.mlp.up_proj") && has(m, "bitsandbytes__fp4") && has(m, "NF4 layers only"))
      << m;
}

}  // namespace
}  // namespace kq
