// bitsandbytes 4-bit NF4 and FP4 checkpoints (transformers' BitsAndBytesConfig load_in_4bit, saved with the
// packed QuantState): a tiny Llama written by tests/common/bnb_pack.hpp from known codes and absmax values (plain
// and nested) loads with every linear layer dequantizing to exactly NF4 value · absmax (FP4: bitsandbytes' FP4
// value · absmax, kq's fp4-bnb format) and gives the logits of the same model with those weights stored as F32;
// unsupported configs (a 4-bit type other than nf4 / fp4, 16-bit LLM.int8() weights), layers of the other 4-bit
// type and damaged states are refused naming config.json and the key, or the layer and tensor. 8-bit
// (LLM.int8()) checkpoints load into kq's INT8 (int8-wo, or int8 W8A8 with llm_int8_threshold 0) with
// bitsandbytes' dequantized weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/bnb_pack.hpp"
#include "common/cuda_model.hpp"
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
/// A load_in_4bit quantization_config of quant type `type` ("nf4", "fp4"; empty: no bnb_4bit_quant_type key,
/// transformers' default fp4).
json bnb_config(const std::string& type = "nf4") {
  json q = {{"quant_method", "bitsandbytes"},     {"load_in_4bit", true},
            {"load_in_8bit", false},              {"bnb_4bit_use_double_quant", true},
            {"bnb_4bit_compute_dtype", "bfloat16"}, {"bnb_4bit_quant_storage", "uint8"},
            {"llm_int8_skip_modules", nullptr}};
  if (!type.empty()) q["bnb_4bit_quant_type"] = type;
  return q;
}

/// The tiny Llama (models/quantized_tiny_llama.hpp) as a bitsandbytes checkpoint ("bnb") and with F32 weights
/// ("ref"): NF4 layers, or FP4 ones with `fp4` (config type `type`: "fp4", or "" for none).
testing::QuantizedPair write_pair(const std::filesystem::path& root, bool nested, int64_t blocksize, bool fp4 = false,
                                  const std::string& type = "fp4") {
  const json cfg = testing::quantized_tiny_llama_config(false, "float32");
  return testing::write_quantized_pair(root, "bnb", 11, cfg, bnb_config(fp4 ? type : "nf4"), cfg, false,
                                       [&](const std::string& module, int64_t N, int64_t K, uint64_t seed) {
                                         const testing::BnbCodes c =
                                             testing::bnb_codes(N, K, blocksize, nested, seed, fp4);
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

// FP4 (transformers' default quant type: also with no bnb_4bit_quant_type in the config): every layer becomes kq
// fp4-bnb holding exactly bitsandbytes' dequantized weights (value · absmax in F32, as its kernel), and the model's
// logits are those of the same weights run as F32 layers. Not bit for bit: the 4-bit kernels apply each block's
// scale to a partial sum (and the prefill path runs oneDNN's sgemm over the decoded panel), summing in another
// order than the F32 layers do: F32 reordering over K <= 128 products per output through two layers, a relative
// L2 of order 1e-7 (measured 6.5e-8 to 7.9e-8 on AVX-512), bounded at 1e-6.
TEST(BnbCheckpoint, Fp4LoadsLosslesslyWithTheLogitsOfTheDequantizedModel) {
  const std::vector<int32_t> tokens = {1, 5, 9, 33, 77, 2, 40, 95, 12, 60};
  for (const auto& [nested, bs, type] : {std::tuple{true, int64_t(64), std::string("fp4")},
                                         std::tuple{false, int64_t(64), std::string("")},
                                         std::tuple{true, int64_t(256), std::string("")},
                                         std::tuple{false, int64_t(32), std::string("fp4")}}) {
    const std::string what = fmt::format("nested {} blocksize {} bnb_4bit_quant_type '{}'", nested, bs, type);
    testing::TempDir tmp;
    const testing::QuantizedPair p = write_pair(tmp.path, nested, bs, /*fp4=*/true, type);
    auto m = Model::load(p.quantized, kCpu);
    auto ref = Model::load(p.ref, kCpu);
    int converted = 0;
    for (const LinearSlot& s : m->linear_layers()) {
      if (s.is_lm_head) continue;
      const Tensor w = (*s.op)->dequantized_weight();
      const Tensor& want = p.reference.at(s.name);
      // fp4-bnb[-bB]-nodq, F32 block scales; B the largest power of two <= 256 dividing the blocksize and K.
      int64_t B = 256;
      while (bs % B != 0 || (*s.op)->in_features() % B != 0) B /= 2;
      EXPECT_EQ((*s.op)->format(), B == 64 ? "fp4-bnb-nodq" : fmt::format("fp4-bnb-b{}-nodq", B)) << what << s.name;
      EXPECT_TRUE(w.shape() == want.shape() && std::memcmp(w.raw(), want.raw(), w.nbytes()) == 0)
          << what << " " << s.name;
      ++converted;
    }
    EXPECT_EQ(converted, 7 * testing::kQtLayers) << what;
    const std::vector<float> got = testing::prefill_logits(*m, tokens), want = testing::prefill_logits(*ref, tokens);
    EXPECT_LT(rel_l2(got, want), 1e-6) << what;
    EXPECT_GT(rel_l2(want, std::vector<float>(want.size(), 0.0f)), 0.99) << what;  // logits are not all zero
  }
}

// On the GPU the FP4 layers run through the W4A16 kernels with bitsandbytes' FP4 table (times 12, exact in BF16,
// scales absmax / 12 in BF16): the CPU model's logits within ModelCuda's weight-only bound (3e-2 relative L2:
// BF16 activations and block scales). Skipped without CUDA (KQ_REQUIRE_CUDA: fails).
TEST(BnbCheckpoint, Fp4RunsOnCuda) {
  KQ_REQUIRE_CUDA_MODEL();
  const std::vector<int32_t> tokens = {1, 5, 9, 33, 77, 2, 40, 95, 12, 60};
  for (const bool nested : {false, true}) {
    testing::TempDir tmp;
    const testing::QuantizedPair p = write_pair(tmp.path, nested, 64, /*fp4=*/true);
    auto cpu = Model::load(p.quantized, kCpu);
    auto gpu = Model::load(p.quantized, {Device::CUDA, 2});
    auto ref = Model::load(p.ref, kCpu);
    const std::vector<float> g = testing::prefill_logits(*gpu, tokens);
    const double err = rel_l2(g, testing::prefill_logits(*cpu, tokens));
    const double err_ref = rel_l2(g, testing::prefill_logits(*ref, tokens));
    std::printf("bitsandbytes FP4, nested %d: GPU vs CPU logits %.3g, vs the F32 model %.3g\n", int(nested), err,
                err_ref);
    EXPECT_LE(err, 3e-2) << nested;
    EXPECT_LE(err_ref, 3e-2) << nested;
  }
}

json bnb8_config(double threshold) {
  return {{"quant_method", "bitsandbytes"},   {"load_in_4bit", false},
          {"load_in_8bit", true},             {"llm_int8_threshold", threshold},
          {"llm_int8_has_fp16_weight", false}, {"llm_int8_skip_modules", nullptr}};
}

/// The tiny Llama as a bitsandbytes 8-bit checkpoint ("bnb8") and with bitsandbytes' dequantized weights as F32
/// ("ref"); the second layer's row 3 is all zeros (absmax 0).
testing::QuantizedPair write_pair8(const std::filesystem::path& root, double threshold) {
  const json cfg = testing::quantized_tiny_llama_config(false, "float32");
  return testing::write_quantized_pair(root, "bnb8", 12, cfg, bnb8_config(threshold), cfg, false,
                                       [&](const std::string& module, int64_t N, int64_t K, uint64_t seed) {
                                         const testing::Bnb8Codes c = testing::bnb8_codes(N, K, seed, seed == 2 ? 3 : -1);
                                         return testing::QuantizedLayer{testing::bnb8_layer_tensors(c, module),
                                                                        testing::bnb8_reference(c)};
                                       });
}

TEST(BnbCheckpoint, Int8LoadsWithTheWeightsBitsandbytesDequantizes) {
  const std::vector<int32_t> tokens = {1, 5, 9, 33, 77, 2, 40, 95, 12, 60};
  for (const double threshold : {6.0, 0.0}) {
    const std::string what = fmt::format("llm_int8_threshold {}", threshold);
    testing::TempDir tmp;
    const testing::QuantizedPair p = write_pair8(tmp.path, threshold);
    auto m = Model::load(p.quantized, kCpu);
    auto ref = Model::load(p.ref, kCpu);
    int converted = 0;
    for (const LinearSlot& s : m->linear_layers()) {
      if (s.is_lm_head) continue;
      // A positive threshold keeps LLM.int8()'s 16-bit outlier columns: kq runs the activations unquantized.
      EXPECT_EQ((*s.op)->format(), threshold > 0 ? "int8-wo" : "int8") << what << " " << s.name;
      const Tensor w = (*s.op)->dequantized_weight();
      const Tensor& want = p.reference.at(s.name);
      ASSERT_TRUE(w.shape() == want.shape()) << s.name;
      // bitsandbytes rounds (code · SCB) · (1/127), kq code · (SCB · (1/127)): two F32 roundings each, so within
      // a relative 2^-22.
      for (int64_t i = 0; i < w.numel(); ++i) {
        const float a = w.data<float>()[i], b = want.data<float>()[i];
        ASSERT_LE(std::fabs(a - b), std::ldexp(std::fabs(b), -22) * 1.01f) << what << " " << s.name << " " << i;
      }
      ++converted;
    }
    EXPECT_EQ(converted, 7 * testing::kQtLayers) << what;
    const double err = rel_l2(testing::prefill_logits(*m, tokens), testing::prefill_logits(*ref, tokens));
    // Weight-only: the dequantized model's logits; W8A8: per-token 8-bit activations on top (measured 0.028 on
    // this random model).
    EXPECT_LT(err, threshold > 0 ? 1e-5 : 6e-2) << what;
    if (threshold == 0.0) {
      EXPECT_GT(err, 1e-6) << "W8A8 should quantize the activations";
    }
  }
}

// On the GPU the converted layers run as any kq int8-wo (BF16 weights) or int8 (W8A8) layer: the CPU's logits up
// to the GPU path's BF16 activations (and, W8A8, activation codes taken from them). Skipped without CUDA (KQ_REQUIRE_CUDA: fails).
TEST(BnbCheckpoint, Int8RunsOnCuda) {
  KQ_REQUIRE_CUDA_MODEL();
  const std::vector<int32_t> tokens = {1, 5, 9, 33, 77, 2, 40, 95, 12, 60};
  for (const double threshold : {6.0, 0.0}) {
    testing::TempDir tmp;
    const testing::QuantizedPair p = write_pair8(tmp.path, threshold);
    auto cpu = Model::load(p.quantized, kCpu);
    auto gpu = Model::load(p.quantized, {Device::CUDA, 2});
    const double err = rel_l2(testing::prefill_logits(*gpu, tokens), testing::prefill_logits(*cpu, tokens));
    std::printf("bitsandbytes 8-bit, threshold %g: GPU vs CPU logits, relative L2 %.3g\n", threshold, err);
    // ModelCuda's bounds: weight-only 3e-2, W8A8 (per-token activation codes from BF16 rows) 8e-2; measured on
    // the H200 0.0096 / 0.033.
    EXPECT_LE(err, threshold > 0 ? 3e-2 : 8e-2) << threshold;
  }
}

/// The load error of the checkpoint folder of `p` after `edit` changed its quantization_config and
/// `edit_tensors` (when given) its tensors.
std::string edited_load_error(const testing::QuantizedPair& p, const std::function<void(json&)>& edit,
                              const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors) {
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

TEST(BnbCheckpoint, Int8ConfigsAndDamagedLayersAreRefused) {
  auto error8 = [](const std::function<void(json&)>& edit,
                   const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors = {}) {
    testing::TempDir tmp;
    return edited_load_error(write_pair8(tmp.path, 6.0), edit, edit_tensors);
  };
  std::string m = error8([](json& q) { q["llm_int8_has_fp16_weight"] = true; });
  EXPECT_TRUE(has(m, "config.json") && has(m, "quantization_config.llm_int8_has_fp16_weight true")) << m;
  m = error8([](json& q) { q["llm_int8_threshold"] = -1.0; });
  EXPECT_TRUE(has(m, "quantization_config.llm_int8_threshold") && has(m, "-1")) << m;
  m = error8([](json& q) { q["llm_int8_threshold"] = "6"; });
  EXPECT_TRUE(has(m, "quantization_config.llm_int8_threshold")) << m;
  m = error8([](json& q) { q["load_in_4bit"] = true; });
  EXPECT_TRUE(has(m, "load_in_8bit and quantization_config.load_in_4bit are both true")) << m;
  // A 4-bit config over 8-bit weights: no quant state in the folder.
  m = error8([](json& q) {
    q["load_in_8bit"] = false;
    q["load_in_4bit"] = true;
    q["bnb_4bit_quant_type"] = "nf4";
  });
  EXPECT_TRUE(has(m, "does not belong to these weights") && has(m, "load_in_4bit")) << m;
  const std::string layer = "model.layers.1.mlp.down_proj";
  // A layer that lost its row absmax (tester 22): named, not its I8 '.weight' blamed for not being F32.
  m = error8([](json&) {}, [&](auto& t) { t.erase(layer + ".SCB"); });
  EXPECT_TRUE(has(m, "layer '" + layer + "' is quantized ('" + layer + ".weight_format' in ") &&
              has(m, "bitsandbytes, load_in_8bit") && has(m, "no '" + layer + ".SCB'") && !has(m, "expected F32"))
      << m;
  m = error8([](json&) {}, [&](auto& t) {
    t.erase(layer + ".SCB");
    t.erase(layer + ".weight_format");
  });
  EXPECT_TRUE(has(m, "('" + layer + ".weight' of dtype I8 in ") && has(m, "no '" + layer + ".SCB'")) << m;
  m = error8([](json&) {}, [&](auto& t) { t[layer + ".weight_format"].template mutable_data<uint8_t>()[0] = 1; });
  EXPECT_TRUE(has(m, "quantized layer '" + layer + "'") && has(m, layer + ".weight_format") && has(m, "col32")) << m;
  m = error8([](json&) {}, [&](auto& t) { t[layer + ".SCB"].template mutable_data<float>()[5] = -0.25f; });
  EXPECT_TRUE(has(m, layer + ".SCB") && has(m, "row 5") && has(m, "negative")) << m;
  m = error8([](json&) {}, [&](auto& t) { t[layer + ".SCB"].template mutable_data<float>()[2] = NAN; });
  EXPECT_TRUE(has(m, layer + ".SCB") && has(m, "row 2") && has(m, "non-finite")) << m;
  m = error8([](json&) {}, [&](auto& t) { t[layer + ".SCB"].template mutable_data<float>()[4] = 0.0f; });
  EXPECT_TRUE(has(m, layer + ".weight") && has(m, "row 4") && has(m, "absmax") && has(m, "is 0")) << m;
  m = error8([](json&) {}, [&](auto& t) { t[layer + ".SCB"] = Tensor::zeros(DType::F32, {3}); });
  EXPECT_TRUE(has(m, layer + ".SCB") && has(m, "F32 [64]") && has(m, "[3]")) << m;
  m = error8([](json&) {}, [&](auto& t) { t[layer + ".weight"] = Tensor::zeros(DType::F32, {64, 128}); });
  EXPECT_TRUE(has(m, layer + ".weight") && has(m, "I8 [64, 128]") && has(m, "F32")) << m;
}

std::string load_error(const std::function<void(json&)>& edit,
                       const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors = {}) {
  testing::TempDir tmp;
  return edited_load_error(write_pair(tmp.path, true, 64), edit, edit_tensors);
}

TEST(BnbCheckpoint, UnsupportedConfigsAndDamagedStatesAreRefused) {
  std::string m = load_error([](json& q) { q["bnb_4bit_quant_type"] = "int4"; });
  EXPECT_TRUE(has(m, "config.json") && has(m, "quantization_config.bnb_4bit_quant_type 'int4' is not supported") &&
              has(m, "\"nf4\" and \"fp4\""))
      << m;
  // An FP4 config over NF4 weights (or no type: transformers' default fp4): no FP4 quant state in the folder.
  for (const bool erase : {false, true}) {
    m = load_error([&](json& q) {
      if (erase)
        q.erase("bnb_4bit_quant_type");
      else
        q["bnb_4bit_quant_type"] = "fp4";
    });
    EXPECT_TRUE(has(m, "does not belong to these weights") && has(m, "bnb_4bit_quant_type fp4") &&
                has(m, ".weight.quant_state.bitsandbytes__fp4"))
        << m;
  }
  m = load_error([](json& q) { q["load_in_8bit"] = true; });
  EXPECT_TRUE(has(m, "quantization_config.load_in_8bit and quantization_config.load_in_4bit are both true")) << m;
  m = load_error([](json& q) { q["load_in_4bit"] = false; });
  EXPECT_TRUE(has(m, "quantization_config.load_in_4bit are both false")) << m;
  // An 8-bit config over NF4 weights: no row absmax in the folder.
  m = load_error([](json& q) {
    q["load_in_4bit"] = false;
    q["load_in_8bit"] = true;
  });
  EXPECT_TRUE(has(m, "does not belong to these weights") && has(m, ".SCB")) << m;
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
  // A layer that lost its quant state (tester 22): named, not its packed '.weight' blamed for its shape.
  m = load_error([](json&) {}, [&](auto& t) { t.erase(state); });
  EXPECT_TRUE(has(m, "layer 'model.layers.0.self_attn.v_proj' is quantized ('model.layers.0.self_attn.v_proj.weight."
                     "absmax' in ") &&
              has(m, "bitsandbytes, load_in_4bit") && has(m, "no '" + state + "'") && !has(m, "has shape"))
      << m;
  // An FP4 layer in an NF4 folder: named with the config's type.
  const std::string up = "model.layers.1.mlp.up_proj.weight.quant_state.bitsandbytes__";
  m = load_error([](json&) {}, [&](auto& t) {
    t[up + "fp4"] = t[up + "nf4"];
    t.erase(up + "nf4");
  });
  EXPECT_TRUE(has(m, "layer 'model.layers.1.mlp.up_proj' is bitsandbytes FP4 ('" + up + "fp4' in ") &&
              has(m, "bnb_4bit_quant_type is 'nf4'"))
      << m;
}

std::string fp4_load_error(const std::function<void(json&)>& edit,
                           const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors = {}) {
  testing::TempDir tmp;
  return edited_load_error(write_pair(tmp.path, true, 64, /*fp4=*/true), edit, edit_tensors);
}

TEST(BnbCheckpoint, Fp4DamagedStatesAndNf4LayersAreRefused) {
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  // An NF4 layer in an FP4 folder.
  std::string m = fp4_load_error([](json&) {}, [&](auto& t) {
    t[up + ".quant_state.bitsandbytes__nf4"] = t[up + ".quant_state.bitsandbytes__fp4"];
    t.erase(up + ".quant_state.bitsandbytes__fp4");
  });
  EXPECT_TRUE(has(m, "layer 'model.layers.1.mlp.up_proj' is bitsandbytes NF4") &&
              has(m, "bnb_4bit_quant_type is 'fp4'"))
      << m;
  // An FP4 state whose JSON says nf4.
  const std::string state = up + ".quant_state.bitsandbytes__fp4";
  m = fp4_load_error([](json&) {}, [&](auto& t) {
    const std::string text(static_cast<const char*>(t[state].raw()), size_t(t[state].numel()));
    json j = json::parse(text);
    j["quant_type"] = "nf4";
    const std::string s = j.dump();
    Tensor x = Tensor::empty(DType::U8, {int64_t(s.size())});
    std::memcpy(x.raw_mut(), s.data(), s.size());
    t[state] = x;
  });
  EXPECT_TRUE(has(m, state) && has(m, "\"quant_type\" is \"nf4\", not \"fp4\"")) << m;
  // NF4's quant_map under the FP4 state.
  m = fp4_load_error([](json&) {}, [&](auto& t) {
    for (int i = 0; i < 16; ++i) t[up + ".quant_map"].template mutable_data<float>()[i] = testing::kBnbNf4[i];
  });
  EXPECT_TRUE(has(m, "quantized layer 'model.layers.1.mlp.up_proj'") && has(m, up + ".quant_map") &&
              has(m, "bitsandbytes FP4"))
      << m;
  // A layer that lost its FP4 quant state.
  m = fp4_load_error([](json&) {}, [&](auto& t) { t.erase(state); });
  EXPECT_TRUE(has(m, "layer 'model.layers.1.mlp.up_proj' is quantized") &&
              has(m, "bnb_4bit_quant_type fp4") && has(m, "no '" + state + "'") && has(m, "its FP4 quant state"))
      << m;
  // An NF4 config over FP4 weights.
  m = fp4_load_error([](json& q) { q["bnb_4bit_quant_type"] = "nf4"; });
  EXPECT_TRUE(has(m, "does not belong to these weights") && has(m, "bitsandbytes__nf4")) << m;
}

}  // namespace
}  // namespace kq
