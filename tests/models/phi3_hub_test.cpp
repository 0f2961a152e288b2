// AutoAWQ / AutoGPTQ checkpoints of Phi-3 (Phi3ForCausalLM), whose fused self_attn.qkv_proj and mlp.gate_up_proj
// are quantized as one layer each (AutoAWQ's and GPTQModel's Phi-3 definitions quantize them so): a tiny random
// Phi-3 (tests/models/phi3_tiny.hpp) written by the test-side packer (tests/common/hub_pack.hpp) with fused layers
// loads with the linear layers (format, dequantized weight) and the logits, bit for bit, of the same checkpoint
// with the fused layers stored split (q/k/v_proj, gate/up_proj: the Llama names the loader already read), and the
// logits of the F32 model of the dequantized weights within float tolerance; a part whose zero points are all 8 is
// symmetric INT4 as it would be stored alone; a fused layer left unquantized is split as a plain weight; GPTQ
// act-order with static groups (a g_idx of runs of 32 out of order) converts, an interleaved g_idx is refused;
// fused tensors of the wrong shape, a missing or bad fused tensor, and a bitsandbytes fused layer are refused
// naming the tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/hub_pack.hpp"
#include "io/safetensors.hpp"
#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "models/phi3_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
namespace {

using nlohmann::json;
using testing::has;
using testing::HubCodes;
using testing::HubFormat;
using TensorMap = std::map<std::string, Tensor>;

const ExecContext kCpu{Device::CPU, 2};

/// quantization_config of `f` as AutoAWQ / AutoGPTQ / GPTQModel write it (`desc_act`: GPTQ act-order).
json quant_config(HubFormat f, int64_t group, bool desc_act) {
  if (f == HubFormat::Awq)
    return {{"quant_method", "awq"}, {"bits", 4}, {"group_size", group}, {"zero_point", true}, {"version", "gemm"}};
  return {{"quant_method", "gptq"},
          {"bits", 4},
          {"group_size", group},
          {"desc_act", desc_act},
          {"sym", false},
          {"checkpoint_format", f == HubFormat::GptqV1 ? "gptq" : "gptq_v2"}};
}

/// One checkpoint variant: layout, group size, act-order g_idx (GPTQ: runs of `group` channels, groups rotated by
/// one, as desc_act with static groups stores them).
struct Variant {
  HubFormat format;
  int64_t group;
  bool act_order;
};

/// The three folders of one tiny Phi-3: the checkpoint with fused qkv_proj / gate_up_proj, the same codes with
/// those layers stored split, and the F32 Phi-3 (fused F32 weights) of the dequantized weights.
struct HubPhi3 {
  std::filesystem::path fused, split, ref;
};

/// Writes the folders of `v` under `root`; `edit` (when given) changes the fused checkpoint's tensors and
/// `edit_config` its config.json. Each linear part gets its own codes (seeds 1, 2, ...): q_proj and up_proj
/// symmetric (zero points 8), the others not, so that a fused layer mixes both.
HubPhi3 write_hub_phi3(const std::filesystem::path& root, const testing::TinyPhi3& s, const Variant& v,
                       const std::function<void(TensorMap&)>& edit = {},
                       const std::function<void(json&)>& edit_config = {}) {
  const TensorMap base = testing::tiny_phi3_tensors(s);
  TensorMap fused, split, ref = base;
  for (const auto& [name, t] : base)
    if (!name.ends_with("_proj.weight")) fused[name] = split[name] = t;
  const int zmin = v.format == HubFormat::GptqV1 ? 1 : 0;  // v1 cannot store zero point 0
  uint64_t seed = 1;
  const auto codes = [&](int64_t N, int64_t K, bool sym) {
    HubCodes c = testing::hub_codes(N, K, v.group, sym, zmin, seed++);
    if (v.act_order) {
      c.g_idx.resize(size_t(K));
      for (int64_t k = 0; k < K; ++k) c.g_idx[size_t(k)] = int32_t((k / v.group + 1) % c.G);
    }
    return c;
  };
  const int64_t hd = s.head_dim();
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    using Part = std::tuple<const char*, int64_t, bool>;
    for (const auto& [layer, parts] :
         {std::pair{std::string("self_attn.qkv_proj"),
                    std::vector<Part>{{"self_attn.q_proj", s.heads * hd, true},
                                      {"self_attn.k_proj", s.kv_heads * hd, false},
                                      {"self_attn.v_proj", s.kv_heads * hd, false}}},
          std::pair{std::string("mlp.gate_up_proj"),
                    std::vector<Part>{{"mlp.gate_proj", s.ffn, false}, {"mlp.up_proj", s.ffn, true}}}}) {
      std::vector<HubCodes> c;
      for (const auto& [name, rows, sym] : parts) {
        c.push_back(codes(rows, s.hidden, sym));
        const TensorMap t = testing::hub_layer_tensors(c.back(), p + name, v.format);
        split.insert(t.begin(), t.end());
      }
      const HubCodes all = testing::hub_codes_concat(c);
      const TensorMap t = testing::hub_layer_tensors(all, p + layer, v.format);
      fused.insert(t.begin(), t.end());
      ref[p + layer + ".weight"] = testing::hub_reference(all);
    }
    for (const auto& [name, N, K] : {std::tuple{"self_attn.o_proj", s.hidden, s.heads * hd},
                                     std::tuple{"mlp.down_proj", s.hidden, s.ffn}}) {
      const HubCodes c = codes(N, K, false);
      const TensorMap t = testing::hub_layer_tensors(c, p + name, v.format);
      fused.insert(t.begin(), t.end());
      split.insert(t.begin(), t.end());
      ref[p + name + ".weight"] = testing::hub_reference(c);
    }
  }
  if (edit) edit(fused);
  json config = testing::tiny_phi3_config(s);
  config["quantization_config"] = quant_config(v.format, v.group, v.act_order);
  HubPhi3 out;
  out.split = testing::write_model_folder(root / "split", config, split);
  if (edit_config) edit_config(config);
  out.fused = testing::write_model_folder(root / "fused", config, fused);
  out.ref = testing::write_model_folder(root / "ref", testing::tiny_phi3_config(s), ref);
  return out;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(Phi3Hub, FusedLayersLoadAsTheSameCheckpointStoredSplit) {
  const testing::TinyPhi3 s;
  const std::vector<int32_t> tokens = testing::tokens_of(12, s.vocab);
  for (const Variant& v : {Variant{HubFormat::Awq, 32, false}, Variant{HubFormat::Awq, -1, false},
                           Variant{HubFormat::GptqV1, 32, false}, Variant{HubFormat::GptqV2, 32, true},
                           Variant{HubFormat::GptqV1, -1, false}}) {
    const std::string what = fmt::format("format {} group {} act_order {}", int(v.format), v.group, v.act_order);
    testing::TempDir tmp;
    const HubPhi3 f = write_hub_phi3(tmp.path, s, v);
    auto fused = testing::load_quietly(f.fused);  // every fused tensor read
    auto split = testing::load_quietly(f.split);
    auto ref = testing::load_quietly(f.ref);
    const auto a = fused->linear_layers(), b = split->linear_layers();
    ASSERT_EQ(a.size(), b.size()) << what;
    int int4 = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].name, b[i].name) << what;
      EXPECT_EQ((*a[i].op)->format(), (*b[i].op)->format()) << what << " " << a[i].name;
      EXPECT_TRUE(same_bytes((*a[i].op)->dequantized_weight(), (*b[i].op)->dequantized_weight()))
          << what << " " << a[i].name;
      int4 += (*a[i].op)->format().starts_with("int4-");
    }
    EXPECT_EQ(int4, 7 * s.layers) << what;
    if (v.group == 32) {
      // q_proj's zero points are all 8: symmetric, as stored alone; k_proj's are not. (Group -1 over K = 64 is one
      // block of 64, the same split.)
      for (const LinearSlot& slot : fused->linear_layers()) {
        if (slot.name == "model.layers.0.self_attn.q_proj") {
          EXPECT_EQ((*slot.op)->format(), "int4-g32") << what;
        } else if (slot.name == "model.layers.0.self_attn.k_proj") {
          EXPECT_EQ((*slot.op)->format(), "int4-g32-asym") << what;
        }
      }
    }
    const std::vector<float> logits = testing::prefill_logits(*fused, tokens);
    EXPECT_EQ(logits, testing::prefill_logits(*split, tokens)) << what;
    // The same weights through the INT4 kernels and the F32 ones: summation order only.
    EXPECT_LT(testing::rel_l2(logits, testing::prefill_logits(*ref, tokens)), 1e-5) << what;
  }
}

// A fused layer the checkpoint left unquantized (modules_to_not_convert: a plain gate_up_proj.weight among
// quantized layers) is split as the F32 path splits it: the F32 parts of the unquantized model.
TEST(Phi3Hub, AnUnquantizedFusedLayerInACheckpointIsSplitAsAPlainWeight) {
  const testing::TinyPhi3 s;
  testing::TempDir tmp;
  const HubPhi3 f = write_hub_phi3(tmp.path, s, {HubFormat::Awq, 32, false});
  const std::string layer = "model.layers.1.mlp.gate_up_proj";
  TensorMap t;
  {
    const TensorStore fused = TensorStore::open_dir(f.fused), ref = TensorStore::open_dir(f.ref);
    for (const std::string& n : fused.names())
      if (!n.starts_with(layer + ".")) t[n] = fused.get(n).clone();
    t[layer + ".weight"] = ref.get(layer + ".weight").clone();
  }
  std::filesystem::remove(f.fused / "model.safetensors");
  write_safetensors(f.fused / "model.safetensors", t);
  auto hub = testing::load_quietly(f.fused);
  auto ref = testing::load_quietly(f.ref);
  int plain = 0;
  for (const LinearSlot& a : hub->linear_layers())
    for (const LinearSlot& b : ref->linear_layers())
      if (a.name == b.name && a.name.starts_with("model.layers.1.mlp.") && !a.name.ends_with("down_proj")) {
        EXPECT_EQ((*a.op)->format(), "f32") << a.name;
        EXPECT_TRUE(same_bytes((*a.op)->dequantized_weight(), (*b.op)->dequantized_weight())) << a.name;
        ++plain;
      }
  EXPECT_EQ(plain, 2);
  const std::vector<int32_t> tokens = testing::tokens_of(12, s.vocab);
  EXPECT_LT(testing::rel_l2(testing::prefill_logits(*hub, tokens), testing::prefill_logits(*ref, tokens)), 1e-5);
}

/// The load error of the fused checkpoint of `v` after `edit` / `edit_config`.
std::string fused_load_error(const Variant& v, const std::function<void(TensorMap&)>& edit,
                             const std::function<void(json&)>& edit_config = {}) {
  testing::TempDir tmp;
  const HubPhi3 f = write_hub_phi3(tmp.path, testing::TinyPhi3{}, v, edit, edit_config);
  return testing::error_of<FormatError>([&] { (void)Model::load(f.fused, kCpu); });
}

TEST(Phi3Hub, BadFusedTensorsAreRefusedNamingTheTensor) {
  // Truncated AWQ codes of qkv_proj ([K = 64, (64 + 2 * 32) / 8 = 16], a row short).
  std::string m = fused_load_error({HubFormat::Awq, 32, false}, [](TensorMap& t) {
    Tensor& q = t["model.layers.0.self_attn.qkv_proj.qweight"];
    q = q.slice_rows(0, q.shape()[0] - 1).clone();
  });
  EXPECT_TRUE(has(m, "quantized layer 'model.layers.0.self_attn.qkv_proj'") && has(m, "model.safetensors") &&
              has(m, "'model.layers.0.self_attn.qkv_proj.qweight'") && has(m, "expected I32 [64, 16]"))
      << m;
  // A config whose heads do not give the fused rows: 4 + 2 * 1 heads of 16 = 96 rows, the file has 128.
  m = fused_load_error({HubFormat::GptqV2, 32, false}, {}, [](json& c) { c["num_key_value_heads"] = 1; });
  EXPECT_TRUE(has(m, "'model.layers.0.self_attn.qkv_proj.qweight'") && has(m, "expected I32 [8, 96]") &&
              has(m, "[8, 128]"))
      << m;
  m = fused_load_error({HubFormat::GptqV1, 32, false},
                       [](TensorMap& t) { t.erase("model.layers.1.mlp.gate_up_proj.scales"); });
  EXPECT_TRUE(has(m, "quantized layer 'model.layers.1.mlp.gate_up_proj'") &&
              has(m, "'model.layers.1.mlp.gate_up_proj.scales' is missing"))
      << m;
  // A fused layer that lost its codes is named as such, not taken for split parts missing q_proj (tester 22).
  m = fused_load_error({HubFormat::Awq, 32, false},
                       [](TensorMap& t) { t.erase("model.layers.0.self_attn.qkv_proj.qweight"); });
  EXPECT_TRUE(has(m, "layer 'model.layers.0.self_attn.qkv_proj' is quantized") &&
              has(m, "no 'model.layers.0.self_attn.qkv_proj.qweight'") && has(m, "quant_method awq") &&
              !has(m, "q_proj"))
      << m;
  // A negative scale in up_proj's rows is named at its place in the fused tensor (group 1, column 96 + 3).
  m = fused_load_error({HubFormat::Awq, 32, false}, [](TensorMap& t) {
    Tensor& sc = t["model.layers.0.mlp.gate_up_proj.scales"];
    sc = sc.clone();
    const float neg = -0.5f;
    convert_from_f32(DType::F16, &neg, sc.mutable_data<uint16_t>() + 1 * 192 + 99, 1);
  });
  EXPECT_TRUE(has(m, "'model.layers.0.mlp.gate_up_proj.scales'") && has(m, "negative scale") && has(m, "[1, 99]"))
      << m;
}

// Act-order whose groups are not runs of consecutive input channels (interleaved, as desc_act without static
// groups gives) cannot become kq's groups: refused naming the fused layer's g_idx.
TEST(Phi3Hub, InterleavedActOrderInAFusedLayerIsRefused) {
  const std::string m = fused_load_error({HubFormat::GptqV2, 32, true}, [](TensorMap& t) {
    Tensor& g = t["model.layers.0.self_attn.qkv_proj.g_idx"];
    g = g.clone();
    for (int64_t k = 0; k < g.numel(); ++k) g.mutable_data<int32_t>()[k] = int32_t(k % 2);
  });
  EXPECT_TRUE(has(m, "'model.layers.0.self_attn.qkv_proj.g_idx'") && has(m, "desc_act") &&
              has(m, "not runs of 32"))
      << m;
}

// A bitsandbytes checkpoint of Phi-3 quantizes qkv_proj fused too (its .SCB, .weight int8 codes): kq does not split
// those; refused naming the layer and the tensor, not read as an F32 weight.
TEST(Phi3Hub, BitsandbytesFusedLayerIsRefused) {
  const testing::TinyPhi3 s;
  TensorMap t = testing::tiny_phi3_tensors(s);
  const int64_t rows = (s.heads + 2 * s.kv_heads) * s.head_dim();
  t["model.layers.0.self_attn.qkv_proj.SCB"] = Tensor::zeros(DType::F32, {rows});
  json config = testing::tiny_phi3_config(s);
  config["quantization_config"] = {{"quant_method", "bitsandbytes"}, {"load_in_8bit", true}};
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "bnb", config, t);
  const std::string m = testing::error_of<FormatError>([&] { (void)Model::load(dir, kCpu); });
  EXPECT_TRUE(has(m, "'model.layers.0.self_attn.qkv_proj'") && has(m, "bitsandbytes") &&
              has(m, "'model.layers.0.self_attn.qkv_proj.SCB'"))
      << m;
}

}  // namespace
}  // namespace kq
