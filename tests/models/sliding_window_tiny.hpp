#pragma once
// A tiny random Mistral (every layer windowed) or Qwen2 (layer_types picks the windowed layers; q/k/v biases),
// F32 safetensors written to a folder, and a double-precision forward of it written from transformers'
// modeling_mistral.py / modeling_qwen2.py and masking_utils.py (sliding_window_causal: the query at position i
// sees the keys at positions j with i − window < j <= i), for tests of sliding-window attention on sequences
// longer than the window. No shared data.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kq/tensor.hpp"
#include "models/qwen3_tiny.hpp"  // TinyTensorDraw, write_model_folder

namespace kq::testing {

/// Sizes of a tiny windowed model: head_dim 16, GQA (4 query heads over 2 kv heads), untied embeddings, an odd
/// window of 7 positions over a context of 256.
struct TinyWindowed {
  std::string model_type = "mistral";  ///< "mistral" (every layer windowed) or "qwen2" (layer_types)
  int64_t layers = 3, hidden = 64, heads = 4, kv_heads = 2, ffn = 96, vocab = 100, max_positions = 256;
  int64_t window = 7;
  /// Qwen2: one "full_attention" / "sliding_attention" per layer (config.json layer_types).
  std::vector<std::string> layer_types = {"full_attention", "sliding_attention", "full_attention"};
  double rope_theta = 10000.0, eps = 1e-6;
  uint64_t seed = 5;
  int64_t head_dim() const { return hidden / heads; }
  bool qwen2() const { return model_type == "qwen2"; }
  /// The window of each layer as transformers runs it (0: full causal attention).
  std::vector<int64_t> windows() const {
    std::vector<int64_t> w(size_t(layers), window);
    if (qwen2())
      for (int64_t l = 0; l < layers; ++l) w[size_t(l)] = layer_types[size_t(l)] == "sliding_attention" ? window : 0;
    return w;
  }
};

/// The tensors of a random model of sizes `s` (Llama names): embeddings in [-1, 1), each projection [N, K] in
/// ±1/sqrt(K) (Qwen2: q/k/v biases in [-0.5, 0.5)), every norm gain in [0.5, 1.5).
inline std::map<std::string, Tensor> tiny_windowed_tensors(const TinyWindowed& s) {
  TinyTensorDraw draw(s.seed);
  const auto linear = [&](const std::string& name, int64_t n, int64_t k, bool bias) {
    draw.linear(name + ".weight", n, k);
    if (bias) draw.uniform(name + ".bias", {n}, -0.5, 0.5);
  };
  const auto gain = [&](const std::string& name, int64_t n) { draw.uniform(name, {n}, 0.5, 1.5); };
  const int64_t hd = s.head_dim();
  draw.uniform("model.embed_tokens.weight", {s.vocab, s.hidden}, -1, 1);
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    gain(p + "input_layernorm.weight", s.hidden);
    linear(p + "self_attn.q_proj", s.heads * hd, s.hidden, s.qwen2());
    linear(p + "self_attn.k_proj", s.kv_heads * hd, s.hidden, s.qwen2());
    linear(p + "self_attn.v_proj", s.kv_heads * hd, s.hidden, s.qwen2());
    linear(p + "self_attn.o_proj", s.hidden, s.heads * hd, false);
    gain(p + "post_attention_layernorm.weight", s.hidden);
    linear(p + "mlp.gate_proj", s.ffn, s.hidden, false);
    linear(p + "mlp.up_proj", s.ffn, s.hidden, false);
    linear(p + "mlp.down_proj", s.hidden, s.ffn, false);
  }
  gain("model.norm.weight", s.hidden);
  linear("lm_head", s.vocab, s.hidden, false);
  return std::move(draw.t);
}

/// The config.json of sizes `s`: Mistral's sliding_window, or Qwen2's use_sliding_window with layer_types (and a
/// max_window_layers that alone would window no layer: layer_types decides).
inline nlohmann::json tiny_windowed_config(const TinyWindowed& s) {
  nlohmann::json j = {{"architectures", {s.qwen2() ? "Qwen2ForCausalLM" : "MistralForCausalLM"}},
                      {"model_type", s.model_type},
                      {"hidden_act", "silu"},
                      {"hidden_size", s.hidden},
                      {"intermediate_size", s.ffn},
                      {"max_position_embeddings", s.max_positions},
                      {"num_attention_heads", s.heads},
                      {"num_hidden_layers", s.layers},
                      {"num_key_value_heads", s.kv_heads},
                      {"rms_norm_eps", s.eps},
                      {"rope_theta", s.rope_theta},
                      {"sliding_window", s.window},
                      {"tie_word_embeddings", false},
                      {"torch_dtype", "float32"},
                      {"vocab_size", s.vocab}};
  if (s.qwen2()) {
    j["use_sliding_window"] = true;
    j["max_window_layers"] = s.layers;
    j["layer_types"] = s.layer_types;
  }
  return j;
}

namespace window_ref {
using Vec = std::vector<double>;

/// W[N, K]·x (+ bias when `t` has name.bias) in double.
inline Vec linear(const std::map<std::string, Tensor>& t, const std::string& name, const Vec& x) {
  const Tensor& w = t.at(name + ".weight");
  const int64_t N = w.shape()[0], K = w.shape()[1];
  const auto b = t.find(name + ".bias");
  Vec y(size_t(N), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    double acc = b != t.end() ? double(b->second.data<float>()[n]) : 0.0;
    for (int64_t k = 0; k < K; ++k) acc += double(w.data<float>()[n * K + k]) * x[size_t(k)];
    y[size_t(n)] = acc;
  }
  return y;
}

/// RMSNorm in place with gain g: v / sqrt(mean(v²) + eps) · g.
inline void rms_norm(Vec& v, const Tensor& g, double eps) {
  double ss = 0;
  for (const double x : v) ss += x * x;
  const double inv = 1.0 / std::sqrt(ss / double(v.size()) + eps);
  for (size_t i = 0; i < v.size(); ++i) v[i] = v[i] * inv * double(g.data<float>()[i]);
}

/// RoPE (rotate_half) of the head at v[off, off + hd) at position `pos`.
inline void rope(Vec& v, size_t off, size_t hd, int64_t pos, double theta) {
  const size_t half = hd / 2;
  for (size_t i = 0; i < half; ++i) {
    const double a = double(pos) / std::pow(theta, 2.0 * double(i) / double(hd));
    const double c = std::cos(a), sn = std::sin(a);
    const double x1 = v[off + i], x2 = v[off + i + half];
    v[off + i] = x1 * c - x2 * sn;
    v[off + i + half] = x2 * c + x1 * sn;
  }
}
}  // namespace window_ref

/// Logits [n, vocab] of the model of sizes `s` and tensors `t` for `tokens` (at positions 0 .. n−1) in double
/// precision, layer l attending within windows[l] positions (0: every earlier position): per layer h = RMSNorm(x),
/// q/k/v = the projections of h (with biases when `t` has them), RoPE on q and k, GQA attention of query i over
/// the keys j with i − window < j <= i, x += o_proj; x += down(silu(gate(h')) · up(h')) with h' = RMSNorm(x); then
/// the final norm and lm_head.
inline std::vector<double> windowed_reference_logits(const std::map<std::string, Tensor>& t, const TinyWindowed& s,
                                                     const std::vector<int32_t>& tokens,
                                                     const std::vector<int64_t>& windows) {
  using window_ref::Vec;
  const size_t n = tokens.size(), hd = size_t(s.head_dim()), d = size_t(s.hidden);
  const size_t group = size_t(s.heads / s.kv_heads);
  std::vector<Vec> x(n, Vec(d));
  const Tensor& emb = t.at("model.embed_tokens.weight");
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) x[i][j] = emb.data<float>()[size_t(tokens[i]) * d + j];
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const int64_t window = windows[size_t(l)];
    std::vector<Vec> q(n), k(n), v(n);
    for (size_t i = 0; i < n; ++i) {
      Vec h = x[i];
      window_ref::rms_norm(h, t.at(p + "input_layernorm.weight"), s.eps);
      q[i] = window_ref::linear(t, p + "self_attn.q_proj", h);
      k[i] = window_ref::linear(t, p + "self_attn.k_proj", h);
      v[i] = window_ref::linear(t, p + "self_attn.v_proj", h);
      for (size_t hh = 0; hh < size_t(s.heads); ++hh) window_ref::rope(q[i], hh * hd, hd, int64_t(i), s.rope_theta);
      for (size_t g = 0; g < size_t(s.kv_heads); ++g) window_ref::rope(k[i], g * hd, hd, int64_t(i), s.rope_theta);
    }
    for (size_t i = 0; i < n; ++i) {
      // Keys j with i − window < j <= i (masking_utils' sliding_window_overlay and causal mask).
      const size_t first = window > 0 && int64_t(i) >= window ? i + 1 - size_t(window) : 0;
      Vec att(size_t(s.heads) * hd, 0.0);
      for (size_t hh = 0; hh < size_t(s.heads); ++hh) {
        const size_t g = hh / group;
        Vec score(i + 1, 0.0);
        double mx = -1e300;
        for (size_t j = first; j <= i; ++j) {
          double dot = 0;
          for (size_t e = 0; e < hd; ++e) dot += q[i][hh * hd + e] * k[j][g * hd + e];
          score[j] = dot / std::sqrt(double(hd));
          mx = std::max(mx, score[j]);
        }
        double sum = 0;
        for (size_t j = first; j <= i; ++j) sum += (score[j] = std::exp(score[j] - mx));
        for (size_t j = first; j <= i; ++j)
          for (size_t e = 0; e < hd; ++e) att[hh * hd + e] += score[j] / sum * v[j][g * hd + e];
      }
      const Vec o = window_ref::linear(t, p + "self_attn.o_proj", att);
      for (size_t j = 0; j < d; ++j) x[i][j] += o[j];
      Vec h = x[i];
      window_ref::rms_norm(h, t.at(p + "post_attention_layernorm.weight"), s.eps);
      Vec gate = window_ref::linear(t, p + "mlp.gate_proj", h);
      const Vec up = window_ref::linear(t, p + "mlp.up_proj", h);
      for (size_t f = 0; f < gate.size(); ++f) gate[f] = gate[f] / (1.0 + std::exp(-gate[f])) * up[f];
      const Vec down = window_ref::linear(t, p + "mlp.down_proj", gate);
      for (size_t j = 0; j < d; ++j) x[i][j] += down[j];
    }
  }
  std::vector<double> out;
  for (size_t i = 0; i < n; ++i) {
    window_ref::rms_norm(x[i], t.at("model.norm.weight"), s.eps);
    const Vec row = window_ref::linear(t, "lm_head", x[i]);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

}  // namespace kq::testing
