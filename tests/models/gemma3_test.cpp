// model_type "gemma3_text" (Gemma3ForCausalLM): a tiny random Gemma 3 (tests/models/gemma3_tiny.hpp: sliding
// and global layers, a window shorter than the sequence, local and global RoPE bases, linear RoPE scaling on
// the global layer, query_pre_attn_scalar != head_dim, tied embeddings) gives on the CPU the logits of a
// double-precision forward written here from transformers' modeling_gemma3.py, in one prefill and token by
// token with the KV cache; references that drop any one Gemma difference are far from it (the comparison sees
// each); a missing Gemma norm is named. No shared data. (On the GPU: ModelCuda.Gemma3MatchesCpu.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "models/double_reference.hpp"
#include "models/gemma3_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
namespace {

const ExecContext kCpu{Device::CPU, 2};
using testing::ref::causal_attention;
using testing::ref::gelu_tanh;
using testing::ref::matvec;
using testing::ref::rms_norm;
using testing::ref::rope;
using testing::ref::silu;
using testing::ref::Vec;

/// What the reference computes; each flag off drops one of Gemma's differences from Llama (to show that the
/// comparison with kq sees it).
struct Gemma {
  bool norm_offset = true;  // RMSNorm · (1 + w), else · w
  bool post_norms = true;   // attention / MLP outputs normed before their residual adds
  bool local_rope = true;   // sliding layers with rope_local_theta and no scaling, else every layer global
  bool window = true;       // sliding layers attend within sliding_window
  bool pre_attn_scalar = true;  // scale query_pre_attn_scalar^−1/2, else head_dim^−1/2
  bool embed_scale = true;      // embeddings · sqrt(hidden_size)
  bool geglu = true;            // GELU(gate) · up, else silu(gate) · up
  double embed_factor = 0;      // the embedding scale; 0: sqrt(hidden_size)
};

/// Logits [n, vocab] of the Gemma 3 of sizes `s` and tensors `t` for `tokens` in double precision, as
/// modeling_gemma3.py computes them: x = embed · sqrt(d); per layer h = norm_in(x); q, k, v; q_norm / k_norm
/// per head; RoPE (sliding layers: rope_local_theta, global: rope_theta / linear factor); causal GQA
/// attention scaled by query_pre_attn_scalar^−1/2, sliding layers over q − window < j <= q; x +=
/// post_attention_norm(o_proj(att)); x += post_feedforward_norm(down(gelu_tanh(gate(h')) · up(h'))), h' =
/// pre_feedforward_norm(x); then the final norm and the tied lm_head. `g` drops differences for the negative
/// checks.
Vec reference_logits(const std::map<std::string, Tensor>& t, const testing::TinyGemma3& s,
                     const std::vector<int32_t>& tokens, const Gemma& g = {}) {
  const size_t n = tokens.size(), hd = size_t(s.head_dim), d = size_t(s.hidden);
  const bool off = g.norm_offset;
  std::vector<Vec> x(n, Vec(d));
  const Tensor& emb = t.at("model.embed_tokens.weight");
  const double embed_scale = !g.embed_scale       ? 1.0
                             : g.embed_factor > 0 ? g.embed_factor
                                                  : std::sqrt(double(d));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) x[i][j] = emb.data<float>()[size_t(tokens[i]) * d + j] * embed_scale;
  const double scale = 1.0 / std::sqrt(g.pre_attn_scalar ? s.query_pre_attn_scalar : double(s.head_dim));
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const bool local = g.local_rope && s.sliding(l);
    const double theta = local ? s.rope_local_theta : s.rope_theta;
    const double factor = local ? 1.0 : s.rope_linear_factor;
    const int64_t window = g.window && s.sliding(l) ? s.sliding_window : 0;
    std::vector<Vec> q(n), k(n), v(n);
    for (size_t i = 0; i < n; ++i) {
      Vec h = x[i];
      rms_norm(h, 0, d, t.at(p + "input_layernorm.weight"), s.eps, off);
      q[i] = matvec(t.at(p + "self_attn.q_proj.weight"), h);
      k[i] = matvec(t.at(p + "self_attn.k_proj.weight"), h);
      v[i] = matvec(t.at(p + "self_attn.v_proj.weight"), h);
      for (int64_t hh = 0; hh < s.heads; ++hh) {
        rms_norm(q[i], size_t(hh) * hd, hd, t.at(p + "self_attn.q_norm.weight"), s.eps, off);
        rope(q[i], size_t(hh) * hd, s.head_dim, int64_t(i), theta, factor);
      }
      for (int64_t kh = 0; kh < s.kv_heads; ++kh) {
        rms_norm(k[i], size_t(kh) * hd, hd, t.at(p + "self_attn.k_norm.weight"), s.eps, off);
        rope(k[i], size_t(kh) * hd, s.head_dim, int64_t(i), theta, factor);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t first = window > 0 && int64_t(i) >= window ? i - size_t(window) + 1 : 0;
      const Vec att = causal_attention(q, k, v, i, size_t(s.heads), size_t(s.kv_heads), hd, scale, first);
      Vec o = matvec(t.at(p + "self_attn.o_proj.weight"), att);
      if (g.post_norms) rms_norm(o, 0, d, t.at(p + "post_attention_layernorm.weight"), s.eps, off);
      for (size_t j = 0; j < d; ++j) x[i][j] += o[j];
      Vec h = x[i];
      rms_norm(
          h, 0, d,
          t.at(g.post_norms ? p + "pre_feedforward_layernorm.weight" : p + "post_attention_layernorm.weight"),
          s.eps, off);
      Vec gate = matvec(t.at(p + "mlp.gate_proj.weight"), h);
      const Vec up = matvec(t.at(p + "mlp.up_proj.weight"), h);
      for (size_t f = 0; f < gate.size(); ++f) gate[f] = (g.geglu ? gelu_tanh(gate[f]) : silu(gate[f])) * up[f];
      Vec down = matvec(t.at(p + "mlp.down_proj.weight"), gate);
      if (g.post_norms) rms_norm(down, 0, d, t.at(p + "post_feedforward_layernorm.weight"), s.eps, off);
      for (size_t j = 0; j < d; ++j) x[i][j] += down[j];
    }
  }
  Vec out;
  for (size_t i = 0; i < n; ++i) {
    rms_norm(x[i], 0, d, t.at("model.norm.weight"), s.eps, off);
    const Vec row = matvec(emb, x[i]);  // tied lm_head: the unscaled embedding table
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

using testing::rel_l2;
using testing::tokens_of;
using testing::load_quietly;

TEST(Gemma3Model, TinyRandomMatchesADoubleReference) {
  const testing::TinyGemma3 s;
  const auto tensors = testing::tiny_gemma3_tensors(s);
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "g3", testing::tiny_gemma3_config(s), tensors);
  auto m = load_quietly(dir);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.arch, Arch::Gemma3);
  EXPECT_EQ(arch_name(c.arch), "gemma3_text");
  EXPECT_TRUE(c.qk_norm && c.norm_offset && c.post_norms && c.scale_embeddings && c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(c.sliding_window, 5);

  const auto tokens = tokens_of(24, s.vocab);  // longer than the window
  const std::vector<float> got = kq::testing::prefill_logits(*m, tokens);
  const Vec want = reference_logits(tensors, s, tokens);
  ASSERT_EQ(got.size(), want.size());
  const double err = rel_l2(got, want);
  std::printf("tiny gemma3: CPU F32 vs double reference logits, relative L2 %.3g\n", err);
  EXPECT_LT(err, 2e-6);

  // Each Gemma difference matters: a reference without it is far from kq's logits.
  const std::pair<const char*, Gemma> wrong[] = {
      {"norm weights as gains (no 1 + w)", {.norm_offset = false}},
      {"no post-attention / post-feedforward norms", {.post_norms = false}},
      {"one RoPE table for every layer", {.local_rope = false}},
      {"no sliding window", {.window = false}},
      {"attention scale head_dim^-1/2", {.pre_attn_scalar = false}},
      {"unscaled embeddings", {.embed_scale = false}},
      {"SwiGLU instead of GeGLU", {.geglu = false}},
  };
  for (const auto& [what, g] : wrong) {
    const double off = rel_l2(got, reference_logits(tensors, s, tokens, g));
    std::printf("  reference with %s: relative L2 %.3g\n", what, off);
    EXPECT_GT(off, 1e-3) << what;
  }

  // Decode: 8 tokens of prefill, then one at a time through the KV cache: each row is the full pass's.
  KVCache cache = m->make_cache(int64_t(tokens.size()));
  const size_t V = size_t(s.vocab), prefill = 8;
  std::vector<float> step(prefill * V);
  m->forward(std::span(tokens).first(prefill), cache, step.data(), /*all_logits=*/true);
  EXPECT_LT(rel_l2(step, std::vector<float>(got.begin(), got.begin() + std::ptrdiff_t(prefill * V))), 1e-6);
  for (size_t i = prefill; i < tokens.size(); ++i) {
    std::vector<float> row(V);
    m->forward(std::span(tokens).subspan(i, 1), cache, row.data(), /*all_logits=*/true);
    const std::vector<float> full(got.begin() + std::ptrdiff_t(i * V),
                                  got.begin() + std::ptrdiff_t((i + 1) * V));
    EXPECT_LT(rel_l2(row, full), 1e-6) << "decode step " << i;
  }

  // Batched decode of two sequences at different positions (one row each) gives each sequence's own row.
  KVCache a = m->make_cache(int64_t(tokens.size())), b = m->make_cache(int64_t(tokens.size()));
  m->forward(std::span(tokens).first(12), a, nullptr, false);
  m->forward(std::span(tokens).first(6), b, nullptr, false);
  const int32_t next[] = {tokens[12], tokens[6]};
  KVCache* caches[] = {&a, &b};
  std::vector<float> rows(2 * V);
  m->decode_batch(next, caches, rows.data());
  EXPECT_LT(
      rel_l2(std::vector<float>(rows.begin(), rows.begin() + std::ptrdiff_t(V)),
             std::vector<float>(got.begin() + std::ptrdiff_t(12 * V), got.begin() + std::ptrdiff_t(13 * V))),
      1e-6);
  EXPECT_LT(
      rel_l2(std::vector<float>(rows.begin() + std::ptrdiff_t(V), rows.end()),
             std::vector<float>(got.begin() + std::ptrdiff_t(6 * V), got.begin() + std::ptrdiff_t(7 * V))),
      1e-6);
}

// A BF16 checkpoint: the embedding scale sqrt(hidden_size) is rounded to BF16 (transformers casts it to the
// weights' dtype): hidden_size 200, sqrt 14.142 -> 14.125, which the logits show.
TEST(Gemma3Model, EmbeddingScaleIsRoundedToTheCheckpointsDtype) {
  testing::TinyGemma3 s;
  s.hidden = 200;
  std::map<std::string, Tensor> bf16, rounded;  // the folder's BF16 tensors; their values in F32
  for (const auto& [name, t] : testing::tiny_gemma3_tensors(s)) {
    Tensor b = Tensor::empty(DType::BF16, t.shape());
    convert_from_f32(DType::BF16, t.data<float>(), b.mutable_data<uint16_t>(), size_t(t.numel()));
    rounded[name] = b.to_f32();
    bf16[name] = std::move(b);
  }
  nlohmann::json cfg = testing::tiny_gemma3_config(s);
  cfg["torch_dtype"] = "bfloat16";
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "g3", cfg, bf16);
  const auto tokens = tokens_of(12, s.vocab);
  const std::vector<float> got = kq::testing::prefill_logits(*load_quietly(dir), tokens);
  const double err = rel_l2(got, reference_logits(rounded, s, tokens, {.embed_factor = 14.125}));
  const double exact = rel_l2(got, reference_logits(rounded, s, tokens));
  std::printf("tiny gemma3 BF16: vs reference with scale 14.125 %.3g, with sqrt(200) %.3g\n", err, exact);
  EXPECT_LT(err, 2e-6);
  EXPECT_GT(exact, 1e-5);
}

// transformers 5 writes the RoPE parameters per layer type: the same model.
TEST(Gemma3Model, RopeParametersPerLayerTypeGiveTheSameModel) {
  const testing::TinyGemma3 s;
  const auto tensors = testing::tiny_gemma3_tensors(s);
  testing::TempDir tmp;
  nlohmann::json cfg = testing::tiny_gemma3_config(s);
  cfg.erase("rope_scaling");
  cfg.erase("rope_theta");
  cfg.erase("rope_local_base_freq");
  cfg.erase("sliding_window_pattern");
  cfg["layer_types"] = {"sliding_attention", "sliding_attention", "full_attention", "sliding_attention"};
  cfg["rope_parameters"] = {
      {"full_attention",
       {{"rope_type", "linear"}, {"factor", s.rope_linear_factor}, {"rope_theta", s.rope_theta}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", s.rope_local_theta}}}};
  const auto dir = testing::write_model_folder(tmp.path / "g3", cfg, tensors);
  auto m = load_quietly(dir);
  const auto tokens = tokens_of(16, s.vocab);
  EXPECT_LT(rel_l2(kq::testing::prefill_logits(*m, tokens), reference_logits(tensors, s, tokens)), 2e-6);
}

// The exact-erf GELU (hidden_activation "gelu") is computed as such: its logits differ from the tanh form's.
TEST(Gemma3Model, ExactGeluIsNotTheTanhForm) {
  const testing::TinyGemma3 s;
  const auto tensors = testing::tiny_gemma3_tensors(s);
  testing::TempDir tmp;
  nlohmann::json cfg = testing::tiny_gemma3_config(s);
  const auto tanh_dir = testing::write_model_folder(tmp.path / "tanh", cfg, tensors);
  cfg["hidden_activation"] = "gelu";
  const auto erf_dir = testing::write_model_folder(tmp.path / "erf", cfg, tensors);
  const auto tokens = tokens_of(10, s.vocab);
  const auto a = kq::testing::prefill_logits(*load_quietly(tanh_dir), tokens);
  const auto b = kq::testing::prefill_logits(*load_quietly(erf_dir), tokens);
  const double diff = rel_l2(b, a);
  EXPECT_GT(diff, 1e-6);  // the two forms differ by up to ~1e-3 per value
  EXPECT_LT(diff, 1e-2);
}

// Random weights (kq bench's models): Gemma's norm weights are drawn as zeros, so its gains are 1 (as
// transformers initializes them), and the model runs.
TEST(Gemma3Model, RandomModelRuns) {
  const testing::TinyGemma3 s;
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "g3", testing::tiny_gemma3_config(s),
                                               testing::tiny_gemma3_tensors(s));
  const ModelConfig c = load_model_config(dir);
  auto m = Model::random(c, 7, kCpu);
  const auto logits = kq::testing::prefill_logits(*m, tokens_of(9, s.vocab));
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  auto q = Model::random_quantized(c, 7, kCpu, "int8", false);
  for (float v : kq::testing::prefill_logits(*q, tokens_of(9, s.vocab))) ASSERT_TRUE(std::isfinite(v));
}

// A Gemma norm a Llama does not have, missing: named with the folder.
TEST(Gemma3Model, AMissingPreFeedforwardNormIsNamed) {
  const testing::TinyGemma3 s;
  auto tensors = testing::tiny_gemma3_tensors(s);
  tensors.erase("model.layers.1.pre_feedforward_layernorm.weight");
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "g3", testing::tiny_gemma3_config(s), tensors);
  const auto msg = testing::error_of<FormatError>([&] { Model::load(dir, kCpu); });
  EXPECT_NE(msg.find("missing tensor 'model.layers.1.pre_feedforward_layernorm.weight'"), std::string::npos)
      << msg;
}

}  // namespace
}  // namespace kq
