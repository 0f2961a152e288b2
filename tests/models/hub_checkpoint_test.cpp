// Pre-quantized Hugging Face Hub checkpoints (AutoAWQ, AutoGPTQ v1, GPTQModel v2): a tiny Llama written by the
// test-side packer (tests/common/hub_pack.hpp) from known codes, zero points and fp16 scales loads with every
// linear layer dequantizing to exactly (q - z) * s, and gives the logits of the same model with those weights
// stored as F32; attention biases (F16) are kept. Unsupported configs and damaged tensors are refused naming
// config.json and the key, or the folder, the layer, the safetensors file and the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/cuda_model.hpp"
#include "common/hub_pack.hpp"
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
using testing::HubFormat;

const ExecContext kCpu{Device::CPU, 2};

/// quantization_config of `f` as AutoAWQ / AutoGPTQ / GPTQModel write it.
json quant_config(HubFormat f, bool sym, int64_t group) {
  if (f == HubFormat::Awq)
    return {{"quant_method", "awq"}, {"bits", 4},         {"group_size", group},
            {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
  return {{"quant_method", "gptq"},
          {"bits", 4},
          {"group_size", group},
          {"desc_act", false},
          {"sym", sym},
          {"true_sequential", true},
          {"checkpoint_format", f == HubFormat::GptqV1 ? "gptq" : "gptq_v2"}};
}

/// The tiny Llama (models/quantized_tiny_llama.hpp) as a checkpoint of `f` ("hub") and with F32 weights ("ref").
testing::QuantizedPair write_pair(const std::filesystem::path& root, HubFormat f, bool sym, int64_t group,
                                  bool bias) {
  return testing::write_quantized_pair(
      root, "hub", 7, testing::quantized_tiny_llama_config(bias, "float16"), quant_config(f, sym, group),
      testing::quantized_tiny_llama_config(bias, "float32"), bias,
      [&](const std::string& module, int64_t N, int64_t K, uint64_t seed) {
        const testing::HubCodes c = testing::hub_codes(N, K, group, sym, f == HubFormat::GptqV1 ? 1 : 0, seed);
        return testing::QuantizedLayer{testing::hub_layer_tensors(c, module, f), testing::hub_reference(c)};
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

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

struct Variant {
  HubFormat format;
  bool sym;
  int64_t group;
  bool bias;
  const char* expected_format;  // of every converted layer
};

TEST(HubCheckpoint, LoadsAwqAndGptqLosslesslyWithTheLogitsOfTheDequantizedModel) {
  const std::vector<int32_t> tokens = {1, 5, 9, 33, 77, 2, 40, 95, 12, 60};
  for (const Variant& v : {Variant{HubFormat::Awq, false, 32, false, "int4-g32-asym"},
                           Variant{HubFormat::Awq, false, 64, true, "int4-g64-asym"},
                           Variant{HubFormat::GptqV1, true, 32, false, "int4-g32"},
                           Variant{HubFormat::GptqV1, false, 64, true, "int4-g64-asym"},
                           Variant{HubFormat::GptqV2, false, -1, false, "int4-g64-asym"},
                           Variant{HubFormat::GptqV2, true, -1, true, "int4-g64"}}) {
    const std::string what = fmt::format("format {} sym {} group {} bias {}", int(v.format), v.sym, v.group, v.bias);
    testing::TempDir tmp;
    const testing::QuantizedPair p = write_pair(tmp.path, v.format, v.sym, v.group, v.bias);
    auto hub = Model::load(p.quantized, kCpu);
    auto ref = Model::load(p.ref, kCpu);
    int converted = 0;
    for (const LinearSlot& s : hub->linear_layers()) {
      if (s.is_lm_head) {
        EXPECT_EQ((*s.op)->format(), "f32") << what;
        continue;
      }
      // group -1 over K = 64 (q/k/v, gate/up) is one block of 64; over K = 128 (down_proj, o_proj's 64) also
      // one group: kq's largest group not above K.
      const std::string want = v.group == -1 && (*s.op)->in_features() == 128
                                   ? std::string(v.sym ? "int4-g128" : "int4-g128-asym")
                                   : v.expected_format;
      EXPECT_EQ((*s.op)->format(), want) << what << " " << s.name;
      EXPECT_TRUE(same_bytes((*s.op)->dequantized_weight(), p.reference.at(s.name))) << what << " " << s.name;
      ++converted;
    }
    EXPECT_EQ(converted, 7 * testing::kQtLayers) << what;
    if (v.bias) {
      const Tensor b = (*hub->linear_layers()[0].op)->bias();
      ASSERT_TRUE(b.defined()) << what;
      EXPECT_TRUE(same_bytes(b, (*ref->linear_layers()[0].op)->bias())) << what;
    }
    const std::vector<float> a = testing::prefill_logits(*hub, tokens);
    const std::vector<float> b = testing::prefill_logits(*ref, tokens);
    // The same weights through the INT4 kernels and the F32 ones: summation order only.
    EXPECT_LT(rel_l2(a, b), 1e-5) << what;
  }
}

// The converted layers are kq INT4 ops, so the GPU runs them through the W4A16 kernels of any kq INT4 folder:
// loaded on CUDA, the checkpoint gives the CPU's logits up to the BF16 activations of the GPU path (the bound of
// ModelCuda.QuantizedCpuModelMovedToDevice for weight-only modes). Skipped without CUDA (KQ_REQUIRE_CUDA: fails).
TEST(HubCheckpoint, CudaRunsTheConvertedLayers) {
  KQ_REQUIRE_CUDA_MODEL();
  const std::vector<int32_t> tokens = {1, 5, 9, 33, 77, 2, 40, 95, 12, 60};
  for (const Variant& v : {Variant{HubFormat::Awq, false, 32, true, "int4-g32-asym"},
                           Variant{HubFormat::GptqV1, true, -1, false, "int4-g64"}}) {
    testing::TempDir tmp;
    const testing::QuantizedPair p = write_pair(tmp.path, v.format, v.sym, v.group, v.bias);
    auto cpu = Model::load(p.quantized, kCpu);
    auto gpu = Model::load(p.quantized, {Device::CUDA, 2});
    const double err = rel_l2(testing::prefill_logits(*gpu, tokens), testing::prefill_logits(*cpu, tokens));
    std::printf("hub checkpoint %s: GPU vs CPU logits, relative L2 %.3g\n", v.expected_format, err);
    EXPECT_LE(err, 3e-2) << v.expected_format;
  }
}

/// A hub folder of `f` whose config.json's quantization_config is edited by `edit`, and the load's message.
std::string load_error(HubFormat f, const std::function<void(json&)>& edit,
                       const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors = {}) {
  testing::TempDir tmp;
  const testing::QuantizedPair p = write_pair(tmp.path, f, false, 32, false);
  json cfg = json::parse(testing::read_all(p.quantized / "config.json"));
  edit(cfg["quantization_config"]);
  testing::write_text(p.quantized / "config.json", cfg.dump(2));
  if (edit_tensors) {
    const TensorStore store = TensorStore::open_dir(p.quantized);
    std::map<std::string, Tensor> t;
    for (const std::string& n : store.names()) t[n] = store.get(n).clone();
    edit_tensors(t);
    std::filesystem::remove(p.quantized / "model.safetensors");
    write_safetensors(p.quantized / "model.safetensors", t);
  }
  return error_of<FormatError>([&] { (void)Model::load(p.quantized, kCpu); });
}

TEST(HubCheckpoint, UnsupportedQuantizationConfigsAreRefusedNamingTheKey) {
  const auto expect = [](const std::string& m, std::initializer_list<const char*> parts) {
    EXPECT_TRUE(has(m, "config.json")) << m;
    for (const char* s : parts) EXPECT_TRUE(has(m, s)) << s << "\n" << m;
  };
  for (const char* version : {"gemv", "GEMV_FAST", "exllama", "marlin", "ipex"})
    expect(load_error(HubFormat::Awq, [&](json& q) { q["version"] = version; }),
           {"quantization_config.version", "is not supported", "\"gemm\""});
  expect(load_error(HubFormat::Awq, [](json& q) { q["bits"] = 8; }), {"quantization_config.bits 8"});
  expect(load_error(HubFormat::GptqV1, [](json& q) { q["bits"] = 3; }), {"quantization_config.bits 3", "GPTQ"});
  expect(load_error(HubFormat::GptqV1, [](json& q) { q.erase("bits"); }), {"quantization_config.bits is missing"});
  expect(load_error(HubFormat::Awq, [](json& q) { q["zero_point"] = false; }), {"quantization_config.zero_point"});
  expect(load_error(HubFormat::Awq, [](json& q) { q["backend"] = "llm-awq"; }), {"quantization_config.backend"});
  expect(load_error(HubFormat::GptqV2, [](json& q) { q["checkpoint_format"] = "marlin"; }),
         {"quantization_config.checkpoint_format 'marlin'", "gptq_v2"});
  expect(load_error(HubFormat::GptqV2, [](json& q) { q["is_marlin_format"] = true; }),
         {"quantization_config.is_marlin_format"});
  expect(load_error(HubFormat::GptqV2, [](json& q) { q["group_size"] = 0; }), {"quantization_config.group_size 0"});
  expect(load_error(HubFormat::GptqV2, [](json& q) { q["group_size"] = "128"; }),
         {"quantization_config.group_size must be an integer"});
  expect(load_error(HubFormat::GptqV2, [](json& q) { q["desc_act"] = "yes"; }), {"quantization_config.desc_act"});
  // An AWQ config over weights without quantized layers (every .qweight renamed away).
  expect(load_error(HubFormat::Awq, [](json&) {},
                    [](auto& t) {
                      std::map<std::string, Tensor> renamed;
                      for (auto& [n, v] : t) renamed[n.ends_with(".qweight") ? n + "_x" : n] = v;
                      t = renamed;
                    }),
         {"quant_method is 'awq' but no tensor", "'<layer>.qweight'"});
}

// A checkpoint whose config.json lost its quantization_config is named as an AWQ / GPTQ one (it read as a kq
// folder's loss before: "looks like a kq-quantized model").
TEST(HubCheckpoint, ACheckpointWithoutItsQuantizationConfigIsNamed) {
  testing::TempDir tmp;
  const testing::QuantizedPair p = write_pair(tmp.path, HubFormat::Awq, false, 32, false);
  json cfg = json::parse(testing::read_all(p.quantized / "config.json"));
  cfg.erase("quantization_config");
  testing::write_text(p.quantized / "config.json", cfg.dump(2));
  const std::string m = error_of<FormatError>([&] { (void)Model::load(p.quantized, kCpu); });
  EXPECT_TRUE(has(m, "AutoAWQ / AutoGPTQ checkpoint") && has(m, ".qzeros'") && has(m, "config.json") &&
              has(m, "no quantization_config"))
      << m;
}

TEST(HubCheckpoint, DamagedTensorsAreNamedWithTheFolderLayerAndFile) {
  // Truncated codes (a row short).
  std::string m = load_error(HubFormat::Awq, [](json&) {}, [](auto& t) {
    Tensor& q = t["model.layers.1.mlp.down_proj.qweight"];
    q = q.slice_rows(0, q.shape()[0] - 1).clone();
  });
  EXPECT_TRUE(has(m, "quantized layer 'model.layers.1.mlp.down_proj'") && has(m, "model.safetensors") &&
              has(m, "'model.layers.1.mlp.down_proj.qweight'") && has(m, "expected I32 [128, 8]"))
      << m;
  m = load_error(HubFormat::GptqV2, [](json&) {}, [](auto& t) { t.erase("model.layers.0.self_attn.k_proj.scales"); });
  EXPECT_TRUE(has(m, "quantized layer 'model.layers.0.self_attn.k_proj'") &&
              has(m, "'model.layers.0.self_attn.k_proj.scales' is missing"))
      << m;
  // A layer that lost its codes (tester 22): named, not read as an unquantized layer missing '.weight'.
  for (const HubFormat f : {HubFormat::Awq, HubFormat::GptqV1}) {
    m = load_error(f, [](json&) {}, [](auto& t) { t.erase("model.layers.1.self_attn.q_proj.qweight"); });
    EXPECT_TRUE(has(m, "layer 'model.layers.1.self_attn.q_proj' is quantized ('model.layers.1.self_attn.q_proj.scales'"
                       " in ") &&
                has(m, f == HubFormat::Awq ? "quant_method awq" : "quant_method gptq") &&
                has(m, "no 'model.layers.1.self_attn.q_proj.qweight'") && !has(m, "q_proj.weight'"))
        << m;
  }
  // Act-order: a permuted g_idx under desc_act.
  m = load_error(HubFormat::GptqV2, [](json& q) { q["desc_act"] = true; }, [](auto& t) {
    int32_t* g = t["model.layers.0.mlp.up_proj.g_idx"].template mutable_data<int32_t>();
    for (int64_t k = 0; k < testing::kQtHidden; ++k) g[k] = int32_t(k % 2);
  });
  EXPECT_TRUE(has(m, "'model.layers.0.mlp.up_proj.g_idx'") && has(m, "desc_act") && has(m, "model.safetensors"))
      << m;
}

}  // namespace
}  // namespace kq
