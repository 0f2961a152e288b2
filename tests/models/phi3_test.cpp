// model_type "phi3" (Phi3ForCausalLM: Phi-3, Phi-3.5, Phi-4-mini): a tiny random Phi-3 (tests/models/phi3_tiny.hpp;
// fused qkv_proj / gate_up_proj, partial_rotary_factor 0.75, longrope short factors and attention factor) gives on
// the CPU the logits of a double-precision forward written here from transformers' modeling_phi3.py and
// modeling_rope_utils.py (_compute_longrope_parameters), in one prefill and token by token with the KV cache; the
// same weights under split names, or as a Llama without the Phi-3 RoPE, give the same logits; fused weights of the
// wrong shape are refused naming the tensor and the file (longrope past original_max_position_embeddings:
// phi3_longrope_test.cpp). No shared data: every model is written to a temporary folder.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "models/phi3_reference.hpp"
#include "models/phi3_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
using nlohmann::json;

namespace {

const ExecContext kCpu{Device::CPU, 2};
using testing::ref::Vec;
using testing::phi3::RefRope;
using testing::phi3::reference_logits;
using testing::phi3::rope_of;

using testing::rel_l2;
using testing::tokens_of;
using testing::load_quietly;

TEST(Phi3Model, TinyRandomMatchesADoubleReference) {
  const testing::TinyPhi3 s;
  const auto tensors = testing::tiny_phi3_tensors(s);
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "phi3", testing::tiny_phi3_config(s), tensors);
  auto m = load_quietly(dir);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.arch, Arch::Phi3);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rotary_dim, 12);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::LongRope);
  EXPECT_EQ(c.rope_scaling.short_factor, s.short_factor());
  EXPECT_DOUBLE_EQ(c.rope_scaling.attention_factor, std::sqrt(1 + std::log(4.0) / std::log(64.0)));
  EXPECT_FALSE(c.attention_bias || c.qkv_bias || c.mlp_bias || c.qk_norm);
  // The fused weights are the linear layers of Llama's names (so quantization and GPU fusion treat them alike).
  std::vector<std::string> names;
  for (const LinearSlot& l : m->linear_layers()) {
    EXPECT_FALSE((*l.op)->bias().defined()) << l.name;
    names.push_back(l.name);
  }
  EXPECT_EQ(names.size(), size_t(7 * s.layers + 1));
  for (const char* part : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"})
    EXPECT_NE(std::find(names.begin(), names.end(), std::string("model.layers.1.") + part), names.end()) << part;

  const auto tokens = tokens_of(24, s.vocab);
  const std::vector<float> got = kq::testing::prefill_logits(*m, tokens);
  const Vec want = reference_logits(tensors, s, rope_of(s), tokens);
  ASSERT_EQ(got.size(), want.size());
  const double err = rel_l2(got, want);
  std::printf("tiny phi3: CPU F32 vs double reference logits, relative L2 %.3g\n", err);
  EXPECT_LT(err, 1e-5);
  // The reference sees what the Phi-3 RoPE changes: rotating the whole head, or without the short factors and
  // the attention factor, the logits differ by far more than the tolerance.
  const RefRope whole{s.head_dim(), Vec(size_t(s.head_dim() / 2), 1.0), 1.0};
  RefRope no_longrope = rope_of(s);
  no_longrope.ext.assign(no_longrope.ext.size(), 1.0);
  no_longrope.attention = 1.0;
  const double whole_err = rel_l2(got, reference_logits(tensors, s, whole, tokens));
  const double plain_err = rel_l2(got, reference_logits(tensors, s, no_longrope, tokens));
  std::printf("tiny phi3 vs the reference rotating whole heads %.3g, without longrope %.3g\n", whole_err, plain_err);
  EXPECT_GT(whole_err, 1e-3);
  EXPECT_GT(plain_err, 1e-3);

  // Decode: 8 tokens of prefill, then one at a time through the KV cache: each row is the full pass's.
  KVCache cache = m->make_cache(int64_t(tokens.size()));
  const size_t V = size_t(s.vocab), prefill = 8;
  std::vector<float> step(prefill * V);
  m->forward(std::span(tokens).first(prefill), cache, step.data(), /*all_logits=*/true);
  EXPECT_LT(rel_l2(step, std::vector<float>(got.begin(), got.begin() + std::ptrdiff_t(prefill * V))), 1e-6);
  for (size_t i = prefill; i < tokens.size(); ++i) {
    std::vector<float> row(V);
    m->forward(std::span(tokens).subspan(i, 1), cache, row.data(), /*all_logits=*/true);
    const std::vector<float> full(got.begin() + std::ptrdiff_t(i * V), got.begin() + std::ptrdiff_t((i + 1) * V));
    EXPECT_LT(rel_l2(row, full), 1e-6) << "decode step " << i;
  }
}

// The fused weights split at load are exactly the split ones: the same weights written under Llama's names (as a
// converted checkpoint would have them) give bit-identical logits; without partial rotary and longrope, a Phi-3 is
// a Llama (model_type llama over the split weights: bit-identical too).
TEST(Phi3Model, SplitNamesAndTheLlamaPathGiveTheSameLogits) {
  testing::TinyPhi3 s;
  testing::TempDir tmp;
  const auto tokens = tokens_of(20, s.vocab);
  const auto fused = testing::tiny_phi3_tensors(s);
  const auto split = testing::split_phi3_tensors(fused, s);
  const json config = testing::tiny_phi3_config(s);
  const auto want = kq::testing::prefill_logits(*load_quietly(testing::write_model_folder(tmp.path / "f", config,
                                                                                           fused)), tokens);
  EXPECT_EQ(kq::testing::prefill_logits(*load_quietly(testing::write_model_folder(tmp.path / "s", config, split)),
                                        tokens),
            want);

  s.partial_rotary_factor = 1.0;
  s.longrope = false;
  const auto phi3 = kq::testing::prefill_logits(
      *load_quietly(testing::write_model_folder(tmp.path / "p", testing::tiny_phi3_config(s), fused)), tokens);
  EXPECT_LT(rel_l2(phi3, reference_logits(fused, s, rope_of(s), tokens)), 1e-5);
  json llama = testing::tiny_phi3_config(s);
  llama["model_type"] = "llama";
  llama["architectures"] = {"LlamaForCausalLM"};
  for (const char* key : {"partial_rotary_factor", "original_max_position_embeddings", "sliding_window"})
    llama.erase(key);
  EXPECT_EQ(kq::testing::prefill_logits(*load_quietly(testing::write_model_folder(tmp.path / "l", llama, split)),
                                        tokens),
            phi3);
  EXPECT_GT(rel_l2(phi3, want), 1e-3);
}

// A fused weight of the wrong shape would split at the wrong rows: refused naming the tensor, the file and the
// sizes; a missing one is named as the fused tensor.
TEST(Phi3Model, FusedWeightsOfTheWrongShapeAreRefusedNamingTheTensor) {
  const testing::TinyPhi3 s;
  testing::TempDir tmp;
  const json config = testing::tiny_phi3_config(s);
  const auto load_error = [&](const std::string& name, const std::function<void(std::map<std::string, Tensor>&)>& f) {
    auto t = testing::tiny_phi3_tensors(s);
    f(t);
    const auto dir = testing::write_model_folder(tmp.path / name, config, t);
    return std::pair{dir, testing::error_of<FormatError>([&] { (void)Model::load(dir, kCpu); })};
  };
  testing::TinyRandom r(9);
  // Layer 0's qkv_proj as a q_proj [64, 64]: checked with the config's sizes before anything is built.
  auto [dir, msg] = load_error("qkv0", [&](auto& t) {
    t["model.layers.0.self_attn.qkv_proj.weight"] = testing::tiny_random_tensor(r, {64, 64}, -0.1, 0.1);
  });
  EXPECT_TRUE(testing::has(msg, (dir / "config.json").string() + ": num_attention_heads = 4, num_key_value_heads = 2, "
                                "head_dim = 16, intermediate_size = 96 and hidden_size = 64 but tensor "
                                "'model.layers.0.self_attn.qkv_proj.weight' in " +
                                (dir / "model.safetensors").string() +
                                " has shape [64, 64], expected [128, 64]: [(num_attention_heads + 2 × "
                                "num_key_value_heads) × head_dim = q, k and v rows, hidden_size]"))
      << msg;
  std::tie(dir, msg) = load_error("gate_up0", [&](auto& t) {
    t["model.layers.0.mlp.gate_up_proj.weight"] = testing::tiny_random_tensor(r, {96, 64}, -0.1, 0.1);
  });
  EXPECT_TRUE(testing::has(msg, "tensor 'model.layers.0.mlp.gate_up_proj.weight' in " +
                                    (dir / "model.safetensors").string() +
                                    " has shape [96, 64], expected [192, 64]: [2 × intermediate_size = gate and up "
                                    "rows, hidden_size]"))
      << msg;
  // Layer 1's: refused as it is read.
  std::tie(dir, msg) = load_error("gate_up1", [&](auto& t) {
    t["model.layers.1.mlp.gate_up_proj.weight"] = testing::tiny_random_tensor(r, {190, 64}, -0.1, 0.1);
  });
  EXPECT_TRUE(testing::has(msg, dir.string() + ": tensor 'model.layers.1.mlp.gate_up_proj.weight' in " +
                                    (dir / "model.safetensors").string() + " has shape [190, 64], expected [192, 64]"))
      << msg;
  std::tie(dir, msg) = load_error("missing", [&](auto& t) { t.erase("model.layers.1.self_attn.qkv_proj.weight"); });
  EXPECT_TRUE(testing::has(msg, dir.string() + ": missing tensor 'model.layers.1.self_attn.qkv_proj.weight' "
                                               "(expected shape [128, 64])"))
      << msg;
}

}  // namespace
}  // namespace kq
