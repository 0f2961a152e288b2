// model_type "gemma2" (Gemma2ForCausalLM) and "gemma" (GemmaForCausalLM): a tiny random Gemma 2
// (tests/models/gemma2_tiny.hpp: sliding even layers with a window shorter than the sequence, GQA,
// query_pre_attn_scalar != head_dim, soft-caps that bend the scores and the logits, tied embeddings) and a
// tiny Gemma 1 give on the CPU the logits of a double-precision forward written here from transformers'
// modeling_gemma2.py / modeling_gemma.py, in one prefill and token by token with the KV cache; references
// that drop one Gemma 2 difference (either soft-capping, the window parity, the post norms) are far from them;
// bad soft-capping values / activations refused naming the key. No shared data.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "models/double_reference.hpp"
#include "models/gemma2_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
namespace {

const ExecContext kCpu{Device::CPU, 2};
using testing::load_quietly;
using testing::rel_l2;
using testing::tokens_of;
using testing::ref::causal_attention;
using testing::ref::gelu_tanh;
using testing::ref::matvec;
using testing::ref::rms_norm;
using testing::ref::rope;
using testing::ref::Vec;

/// What the reference computes; each flag off (or `odd_sliding` on) drops one of Gemma 2's differences, to show
/// that the comparison with kq sees it.
struct Variant {
  bool attn_softcap = true;   // scores → c · tanh(scores / c) before the mask and softmax
  bool final_softcap = true;  // logits → c · tanh(logits / c)
  bool odd_sliding = false;   // the window on the odd layers instead of the even ones
  bool post_norms = true;     // attention / MLP outputs normed before their residual adds
};

/// Logits [n, vocab] of the tiny Gemma 2 (s.gemma1: Gemma 1) for `tokens` in double precision, as
/// modeling_gemma2.py computes them: x = embed · sqrt(d); per layer h = input_layernorm(x); q, k, v; RoPE
/// (rope_theta, every layer); causal GQA attention with scores scaled by query_pre_attn_scalar^−1/2 then
/// soft-capped c · tanh(s / c), the even layers over q − window < j <= q only; x +=
/// post_attention_layernorm(o_proj(att)); x += post_feedforward_layernorm(down(gelu_tanh(gate(h')) · up(h'))),
/// h' = pre_feedforward_layernorm(x); the final norm, the tied lm_head and the logits' soft-cap. Gemma 1
/// (modeling_gemma.py): scale head_dim^−1/2, no window, no soft-caps, x += o_proj(att), h' =
/// post_attention_layernorm(x), x += down(...). `g` drops Gemma 2 differences for the negative checks.
Vec reference_logits(const std::map<std::string, Tensor>& t, const testing::TinyGemma2& s,
                     const std::vector<int32_t>& tokens, const Variant& g = {}) {
  const size_t n = tokens.size(), hd = size_t(s.head_dim), d = size_t(s.hidden);
  const bool post_norms = !s.gemma1 && g.post_norms;
  const double attn_cap = !s.gemma1 && g.attn_softcap ? s.attn_softcap : 0.0;
  const double final_cap = !s.gemma1 && g.final_softcap ? s.final_softcap : 0.0;
  const Tensor& emb = t.at("model.embed_tokens.weight");
  // Every Gemma norm scales by 1 + w: rms_norm(..., one_plus_w = true).
  std::vector<Vec> x(n, Vec(d));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j)
      x[i][j] = double(emb.data<float>()[size_t(tokens[i]) * d + j]) * std::sqrt(double(d));
  const double scale = 1.0 / std::sqrt(s.gemma1 ? double(s.head_dim) : s.query_pre_attn_scalar);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const bool sliding = !s.gemma1 && (g.odd_sliding ? l % 2 == 1 : l % 2 == 0);
    const int64_t window = sliding ? s.sliding_window : 0;
    std::vector<Vec> q(n), k(n), v(n);
    for (size_t i = 0; i < n; ++i) {
      Vec h = x[i];
      rms_norm(h, t.at(p + "input_layernorm.weight"), s.eps, true);
      q[i] = matvec(t.at(p + "self_attn.q_proj.weight"), h);
      k[i] = matvec(t.at(p + "self_attn.k_proj.weight"), h);
      v[i] = matvec(t.at(p + "self_attn.v_proj.weight"), h);
      for (int64_t hh = 0; hh < s.heads; ++hh) rope(q[i], size_t(hh) * hd, s.head_dim, int64_t(i), s.rope_theta);
      for (int64_t kh = 0; kh < s.kv_heads; ++kh) rope(k[i], size_t(kh) * hd, s.head_dim, int64_t(i), s.rope_theta);
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t first = window > 0 && int64_t(i) >= window ? i - size_t(window) + 1 : 0;
      const Vec att = causal_attention(q, k, v, i, size_t(s.heads), size_t(s.kv_heads), hd, scale, first, attn_cap);
      Vec o = matvec(t.at(p + "self_attn.o_proj.weight"), att);
      if (post_norms) rms_norm(o, t.at(p + "post_attention_layernorm.weight"), s.eps, true);
      for (size_t j = 0; j < d; ++j) x[i][j] += o[j];
      Vec h = x[i];
      // Gemma 2's MLP input norm is pre_feedforward_layernorm; Gemma 1's (and a Gemma 2 without post norms)
      // post_attention_layernorm.
      rms_norm(h, t.at(p + (post_norms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")),
               s.eps, true);
      Vec gate = matvec(t.at(p + "mlp.gate_proj.weight"), h);
      const Vec up = matvec(t.at(p + "mlp.up_proj.weight"), h);
      for (size_t f = 0; f < gate.size(); ++f) gate[f] = gelu_tanh(gate[f]) * up[f];
      Vec down = matvec(t.at(p + "mlp.down_proj.weight"), gate);
      if (post_norms) rms_norm(down, t.at(p + "post_feedforward_layernorm.weight"), s.eps, true);
      for (size_t j = 0; j < d; ++j) x[i][j] += down[j];
    }
  }
  Vec out;
  for (size_t i = 0; i < n; ++i) {
    rms_norm(x[i], t.at("model.norm.weight"), s.eps, true);
    Vec row = matvec(emb, x[i]);  // tied lm_head: the unscaled embedding table
    if (final_cap > 0)
      for (double& z : row) z = final_cap * std::tanh(z / final_cap);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

/// The rows [first, first + count) of logits [*, V].
std::vector<float> rows_of(const std::vector<float>& logits, size_t V, size_t first, size_t count) {
  return {logits.begin() + std::ptrdiff_t(first * V), logits.begin() + std::ptrdiff_t((first + count) * V)};
}

/// Decode through the KV cache equals the full pass: `prefill` tokens in one call, then one at a time (each
/// row against the full pass's row `full`), and a batched decode of two sequences at different positions.
void expect_decode_matches(Model& m, const std::vector<int32_t>& tokens, const std::vector<float>& full,
                           size_t prefill) {
  const size_t V = size_t(m.config().vocab_size);
  KVCache cache = m.make_cache(int64_t(tokens.size()));
  std::vector<float> step(prefill * V);
  m.forward(std::span(tokens).first(prefill), cache, step.data(), /*all_logits=*/true);
  EXPECT_LT(rel_l2(step, rows_of(full, V, 0, prefill)), 1e-6);
  for (size_t i = prefill; i < tokens.size(); ++i) {
    std::vector<float> row(V);
    m.forward(std::span(tokens).subspan(i, 1), cache, row.data(), /*all_logits=*/true);
    EXPECT_LT(rel_l2(row, rows_of(full, V, i, 1)), 1e-6) << "decode step " << i;
  }
  // Only the last token's logits (last_only): capped once, as the full pass's last row.
  KVCache last = m.make_cache(int64_t(tokens.size()));
  std::vector<float> last_row(V);
  m.forward(tokens, last, last_row.data(), /*all_logits=*/false);
  EXPECT_LT(rel_l2(last_row, rows_of(full, V, tokens.size() - 1, 1)), 1e-6);

  KVCache a = m.make_cache(int64_t(tokens.size())), b = m.make_cache(int64_t(tokens.size()));
  m.forward(std::span(tokens).first(12), a, nullptr, false);
  m.forward(std::span(tokens).first(6), b, nullptr, false);
  const int32_t next[] = {tokens[12], tokens[6]};
  KVCache* caches[] = {&a, &b};
  std::vector<float> rows(2 * V);
  m.decode_batch(next, caches, rows.data());
  EXPECT_LT(rel_l2(rows_of(rows, V, 0, 1), rows_of(full, V, 12, 1)), 1e-6);
  EXPECT_LT(rel_l2(rows_of(rows, V, 1, 1), rows_of(full, V, 6, 1)), 1e-6);
}

TEST(Gemma2Model, TinyRandomMatchesADoubleReference) {
  const testing::TinyGemma2 s;
  const auto tensors = testing::tiny_gemma2_tensors(s);
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "g2", testing::tiny_gemma2_config(s), tensors);
  auto m = load_quietly(dir);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.arch, Arch::Gemma2);
  EXPECT_TRUE(c.norm_offset && c.post_norms && c.scale_embeddings && c.tie_word_embeddings);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(c.attn_logit_softcapping, s.attn_softcap);
  EXPECT_EQ(c.final_logit_softcapping, s.final_softcap);

  const auto tokens = tokens_of(24, s.vocab);  // longer than the window; 3 row blocks of the decode path
  const std::vector<float> got = kq::testing::prefill_logits(*m, tokens);
  const Vec want = reference_logits(tensors, s, tokens);
  ASSERT_EQ(got.size(), want.size());
  const double err = rel_l2(got, want);
  std::printf("tiny gemma2: CPU F32 vs double reference logits, relative L2 %.3g\n", err);
  EXPECT_LT(err, 2e-6);
  // The soft-cap bounds every logit by the cap.
  for (float z : got) ASSERT_LE(std::abs(z), float(s.final_softcap));

  // Each Gemma 2 difference matters: a reference without it is far from kq's logits.
  const std::pair<const char*, Variant> wrong[] = {
      {"no attention soft-capping", {.attn_softcap = false}},
      {"no final logit soft-capping", {.final_softcap = false}},
      {"the window on the odd layers", {.odd_sliding = true}},
      {"no post-attention / post-feedforward norms", {.post_norms = false}},
  };
  for (const auto& [what, g] : wrong) {
    const double off = rel_l2(got, reference_logits(tensors, s, tokens, g));
    std::printf("  reference with %s: relative L2 %.3g\n", what, off);
    EXPECT_GT(off, 1e-3) << what;
  }

  expect_decode_matches(*m, tokens, got, 8);
}

// A prefill chunk of more than 8 rows takes the GEMM attention path (the direct path below): the soft-cap
// applies there too, within the window, over 70 tokens (two 64-row blocks).
TEST(Gemma2Model, LongPrefillTakesTheGemmPathWithTheSameCaps) {
  testing::TinyGemma2 s;
  s.layers = 2;
  s.sliding_window = 23;
  const auto tensors = testing::tiny_gemma2_tensors(s);
  testing::TempDir tmp;
  auto m = load_quietly(testing::write_model_folder(tmp.path / "g2", testing::tiny_gemma2_config(s), tensors));
  const auto tokens = tokens_of(70, s.vocab);
  const std::vector<float> got = kq::testing::prefill_logits(*m, tokens);
  EXPECT_LT(rel_l2(got, reference_logits(tensors, s, tokens)), 2e-6);
  EXPECT_GT(rel_l2(got, reference_logits(tensors, s, tokens, {.attn_softcap = false})), 1e-3);
  expect_decode_matches(*m, tokens, got, 40);
}

// gemma-2's own caps (50 on the scores, 30 on the logits) with q_proj scaled up so that scores reach tens:
// tanh saturates (|score| near the cap), and kq still matches the reference; without the cap it would not.
TEST(Gemma2Model, LargeScoresSaturateTheRealCaps) {
  testing::TinyGemma2 s;
  s.attn_softcap = 50;
  s.final_softcap = 30;
  auto tensors = testing::tiny_gemma2_tensors(s);
  for (int64_t l = 0; l < s.layers; ++l) {
    Tensor& q = tensors.at(fmt::format("model.layers.{}.self_attn.q_proj.weight", l));
    for (int64_t i = 0; i < q.numel(); ++i) q.mutable_data<float>()[i] *= 60.0f;
  }
  Tensor& e = tensors.at("model.embed_tokens.weight");  // logits up to ~60: the 30 cap bends them
  for (int64_t i = 0; i < e.numel(); ++i) e.mutable_data<float>()[i] *= 4.0f;
  testing::TempDir tmp;
  auto m = load_quietly(testing::write_model_folder(tmp.path / "g2", testing::tiny_gemma2_config(s), tensors));
  const auto tokens = tokens_of(20, s.vocab);
  const std::vector<float> got = kq::testing::prefill_logits(*m, tokens);
  const double err = rel_l2(got, reference_logits(tensors, s, tokens));
  const double no_attn = rel_l2(got, reference_logits(tensors, s, tokens, {.attn_softcap = false}));
  const double no_final = rel_l2(got, reference_logits(tensors, s, tokens, {.final_softcap = false}));
  std::printf("gemma2 large scores: vs reference %.3g, without the attention cap %.3g, without the logit cap %.3g\n",
              err, no_attn, no_final);
  EXPECT_LT(err, 5e-5);  // peaked softmaxes amplify F32 rounding somewhat
  EXPECT_GT(no_attn, 1e-3);  // 0.0025 here: peaked softmaxes pick the same keys with or without the cap
  EXPECT_GT(no_final, 1e-2);
}

TEST(GemmaModel, TinyRandomGemma1MatchesADoubleReference) {
  testing::TinyGemma2 s;
  s.gemma1 = true;
  const auto tensors = testing::tiny_gemma2_tensors(s);
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "g1", testing::tiny_gemma2_config(s), tensors);
  auto m = load_quietly(dir);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.arch, Arch::Gemma);
  EXPECT_EQ(c.activation, "gelu_pytorch_tanh");  // over the legacy hidden_act "gelu"
  EXPECT_FALSE(c.post_norms || c.qk_norm);
  EXPECT_EQ(c.attn_logit_softcapping + c.final_logit_softcapping, 0.0);
  const auto tokens = tokens_of(24, s.vocab);
  const std::vector<float> got = kq::testing::prefill_logits(*m, tokens);
  const double err = rel_l2(got, reference_logits(tensors, s, tokens));
  std::printf("tiny gemma: CPU F32 vs double reference logits, relative L2 %.3g\n", err);
  EXPECT_LT(err, 2e-6);
  expect_decode_matches(*m, tokens, got, 8);
}

// Soft-capping values that are not finite and >= 0 are refused naming the key (in config.json: with the file), and
// so are values finite as a double but not as the float32 the cap is applied in (tester round 23: 1e300 and 3.5e38
// ran, NaN logits blamed on the weights). (On CUDA soft-capping runs: ModelCuda.Gemma2AndGemma1MatchCpu.)
TEST(Gemma2Model, SoftCappingRefusals) {
  const testing::TinyGemma2 s;
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "g2", testing::tiny_gemma2_config(s),
                                               testing::tiny_gemma2_tensors(s));
  std::string msg;
  for (const double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity(), 1e300, 3.5e38, 1e-300}) {
    ModelConfig b = load_model_config(dir);
    b.attn_logit_softcapping = bad;
    msg = testing::error_of<InvalidArgument>([&] { Model::random(b, 1, kCpu); });
    EXPECT_NE(msg.find("attn_logit_softcapping"), std::string::npos) << msg;
    b = load_model_config(dir);
    b.final_logit_softcapping = bad;
    msg = testing::error_of<InvalidArgument>([&] { Model::random(b, 1, kCpu); });
    EXPECT_NE(msg.find("final_logit_softcapping"), std::string::npos) << msg;
  }
  // In config.json: named with the file.
  int folder = 0;
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"})
    for (const double bad : {-5.0, 1e300, 3.5e38}) {
      nlohmann::json cfg = testing::tiny_gemma2_config(s);
      cfg[key] = bad;
      const auto bad_dir = testing::write_model_folder(tmp.path / fmt::format("bad{}", folder++), cfg,
                                                       testing::tiny_gemma2_tensors(s));
      msg = testing::error_of<FormatError>([&] { Model::load(bad_dir, kCpu); });
      EXPECT_NE(msg.find(fmt::format("key '{}'", key)), std::string::npos) << msg;
      EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
      if (bad > 0) {
        EXPECT_NE(msg.find("outside float32's range"), std::string::npos) << msg;
      }
    }
  // The largest float32 is a cap that works (cap · tanh(x / cap) = x to rounding).
  ModelConfig b = load_model_config(dir);
  b.attn_logit_softcapping = b.final_logit_softcapping = 3.4e38;
  EXPECT_NO_THROW(Model::random(b, 1, kCpu));
}

// An activation Gemma does not have is refused naming hidden_activation; a Gemma 1 folder without its post norms
// loads (Gemma 2 requires them: the missing one named).
TEST(Gemma2Model, ActivationAndNormRefusals) {
  testing::TinyGemma2 s;
  testing::TempDir tmp;
  nlohmann::json cfg = testing::tiny_gemma2_config(s);
  cfg["hidden_activation"] = "silu";
  auto dir = testing::write_model_folder(tmp.path / "act", cfg, testing::tiny_gemma2_tensors(s));
  std::string msg = testing::error_of<FormatError>([&] { Model::load(dir, kCpu); });
  EXPECT_NE(msg.find("hidden_activation 'silu'"), std::string::npos) << msg;
  auto tensors = testing::tiny_gemma2_tensors(s);
  tensors.erase("model.layers.3.post_feedforward_layernorm.weight");
  dir = testing::write_model_folder(tmp.path / "norm", testing::tiny_gemma2_config(s), tensors);
  msg = testing::error_of<FormatError>([&] { Model::load(dir, kCpu); });
  EXPECT_NE(msg.find("missing tensor 'model.layers.3.post_feedforward_layernorm.weight'"), std::string::npos)
      << msg;
}

// Random weights (kq bench's models) run, soft-capped, for both.
TEST(Gemma2Model, RandomModelsRun) {
  for (const bool gemma1 : {false, true}) {
    testing::TinyGemma2 s;
    s.gemma1 = gemma1;
    ModelConfig c = parse_model_config(testing::tiny_gemma2_config(s), "tiny");
    auto m = Model::random(c, 7, kCpu);
    for (float v : kq::testing::prefill_logits(*m, tokens_of(9, s.vocab))) ASSERT_TRUE(std::isfinite(v));
  }
}

}  // namespace
}  // namespace kq
