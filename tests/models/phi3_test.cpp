// model_type "phi3" (Phi3ForCausalLM: Phi-3, Phi-3.5, Phi-4-mini): a tiny random Phi-3 (tests/models/phi3_tiny.hpp;
// fused qkv_proj / gate_up_proj, partial_rotary_factor 0.75, longrope short factors and attention factor) gives on
// the CPU the logits of a double-precision forward written here from transformers' modeling_phi3.py and
// modeling_rope_utils.py (_compute_longrope_parameters), in one prefill and token by token with the KV cache; the
// same weights under split names, or as a Llama without the Phi-3 RoPE, give the same logits; the context is
// capped at original_max_position_embeddings; fused weights of the wrong shape are refused naming the tensor and
// the file. No shared data: every model is written to a
// temporary folder.
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
#include "models/double_reference.hpp"
#include "models/phi3_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
using nlohmann::json;

namespace {

const ExecContext kCpu{Device::CPU, 2};
using testing::ref::causal_attention;
using testing::ref::rms_norm;
using testing::ref::silu;
using testing::ref::Vec;

/// W[row0, row0 + rows)·x for the weight `name` of `t` (a part of a fused weight), or W·x.
Vec matvec_rows(const std::map<std::string, Tensor>& t, const std::string& name, int64_t row0, int64_t rows,
                const Vec& x) {
  return testing::ref::matvec_rows(t.at(name), row0, rows, x);
}
Vec matvec(const std::map<std::string, Tensor>& t, const std::string& name, const Vec& x) {
  return testing::ref::matvec(t.at(name), x);
}

/// The RoPE of the reference: the first rotary_dim dimensions of each head rotated (rotate_half within them),
/// inv_freq_i = 1 / (ext_i · θ^(2i/rotary_dim)) (ext: longrope's short factors, or ones), cos and sin times
/// `attention` (longrope's attention factor, or 1).
struct RefRope {
  int64_t rotary_dim = 0;
  Vec ext;
  double attention = 1.0;
};

RefRope rope_of(const testing::TinyPhi3& s) {
  RefRope r{s.rotary_dim(), Vec(size_t(s.rotary_dim() / 2), 1.0), 1.0};
  if (s.longrope) {
    r.ext = s.short_factor();
    r.attention = s.attention_factor();
  }
  return r;
}

/// RoPE of the head at v[off, off + head_dim) at position `pos` (apply_rotary_pos_emb of modeling_phi3.py: q_rot =
/// q[..., :rotary_dim] rotated, q_pass = the rest unchanged).
void rope(Vec& v, size_t off, int64_t pos, double theta, const RefRope& r) {
  Vec angles(size_t(r.rotary_dim / 2));
  for (size_t i = 0; i < angles.size(); ++i)
    angles[i] = double(pos) * (1.0 / (r.ext[i] * std::pow(theta, 2.0 * double(i) / double(r.rotary_dim))));
  testing::ref::rotate_half(v, off, angles, r.attention);
}

/// Logits [n, vocab] of the Phi-3 of sizes `s` and (fused) tensors `t` for `tokens` in double precision, as
/// modeling_phi3.py computes them: per layer h = RMSNorm(x); qkv = qkv_proj(h) split into q (heads·hd rows), k and v
/// (kv_heads·hd each); RoPE `r` on q and k; causal GQA attention; x += o_proj; gate, up = gate_up_proj(h') split in
/// halves with h' = RMSNorm(x); x += down(silu(gate) · up); then the final norm and lm_head.
Vec reference_logits(const std::map<std::string, Tensor>& t, const testing::TinyPhi3& s, const RefRope& r,
                     const std::vector<int32_t>& tokens) {
  const size_t n = tokens.size(), hd = size_t(s.head_dim()), d = size_t(s.hidden);
  const int64_t q_rows = s.heads * s.head_dim(), kv_rows = s.kv_heads * s.head_dim();
  std::vector<Vec> x(n, Vec(d));
  const Tensor& emb = t.at("model.embed_tokens.weight");
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) x[i][j] = emb.data<float>()[size_t(tokens[i]) * d + j];
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    std::vector<Vec> q(n), k(n), v(n);
    for (size_t i = 0; i < n; ++i) {
      Vec h = x[i];
      rms_norm(h, t.at(p + "input_layernorm.weight"), s.eps);
      q[i] = matvec_rows(t, p + "self_attn.qkv_proj.weight", 0, q_rows, h);
      k[i] = matvec_rows(t, p + "self_attn.qkv_proj.weight", q_rows, kv_rows, h);
      v[i] = matvec_rows(t, p + "self_attn.qkv_proj.weight", q_rows + kv_rows, kv_rows, h);
      for (size_t hh = 0; hh < size_t(s.heads); ++hh) rope(q[i], hh * hd, int64_t(i), s.rope_theta, r);
      for (size_t g = 0; g < size_t(s.kv_heads); ++g) rope(k[i], g * hd, int64_t(i), s.rope_theta, r);
    }
    for (size_t i = 0; i < n; ++i) {
      const Vec att =
          causal_attention(q, k, v, i, size_t(s.heads), size_t(s.kv_heads), hd, 1.0 / std::sqrt(double(hd)));
      const Vec o = matvec(t, p + "self_attn.o_proj.weight", att);
      for (size_t j = 0; j < d; ++j) x[i][j] += o[j];
      Vec h = x[i];
      rms_norm(h, t.at(p + "post_attention_layernorm.weight"), s.eps);
      Vec gate = matvec_rows(t, p + "mlp.gate_up_proj.weight", 0, s.ffn, h);
      const Vec up = matvec_rows(t, p + "mlp.gate_up_proj.weight", s.ffn, s.ffn, h);
      for (size_t f = 0; f < gate.size(); ++f) gate[f] = silu(gate[f]) * up[f];
      const Vec down = matvec(t, p + "mlp.down_proj.weight", gate);
      for (size_t j = 0; j < d; ++j) x[i][j] += down[j];
    }
  }
  Vec out;
  for (size_t i = 0; i < n; ++i) {
    rms_norm(x[i], t.at("model.norm.weight"), s.eps);
    const Vec row = matvec(t, "lm_head.weight", x[i]);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

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

// longrope's short factors serve original_max_position_embeddings positions (transformers switches to the long
// factors beyond): the context is capped there and said why.
TEST(Phi3Model, LongRopeCapsTheContextAtTheOriginalPositions) {
  const testing::TinyPhi3 s;
  testing::TempDir tmp;
  auto m = load_quietly(testing::write_model_folder(tmp.path / "m", testing::tiny_phi3_config(s),
                                                    testing::tiny_phi3_tensors(s)));
  EXPECT_EQ(m->config().max_positions, 64);
  EXPECT_EQ(m->config().size_keys.max_positions, "original_max_position_embeddings");
  const std::string note = context_limit_note(m->config());
  EXPECT_TRUE(testing::has(note, "original_max_position_embeddings 64")) << note;
  EXPECT_TRUE(testing::has(note, "capped at 64 positions")) << note;
  EXPECT_EQ(m->make_cache(0).capacity(), 64);
  EXPECT_THROW(m->make_cache(65), InvalidArgument);
  const auto logits = kq::testing::prefill_logits(*m, tokens_of(64, s.vocab));  // the whole context
  for (const float v : logits) ASSERT_TRUE(std::isfinite(v));
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
