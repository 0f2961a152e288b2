#pragma once
// The double-precision Phi-3 forward of the tests (tests/models/phi3_test.cpp, phi3_longrope_test.cpp), written from
// transformers' modeling_phi3.py and modeling_rope_utils.py (_compute_longrope_parameters): fused qkv_proj /
// gate_up_proj, partial rotary, longrope factors and attention factor, chosen per position so that a reference can
// also follow a KV cache whose keys were rotated by other passes.
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kq/tensor.hpp"
#include "models/double_reference.hpp"
#include "models/phi3_tiny.hpp"

namespace kq::testing::phi3 {

using ref::causal_attention;
using ref::rms_norm;
using ref::silu;
using ref::Vec;

/// W[row0, row0 + rows)·x for the weight `name` of `t` (a part of a fused weight), or W·x.
inline Vec matvec_rows(const std::map<std::string, Tensor>& t, const std::string& name, int64_t row0, int64_t rows,
                       const Vec& x) {
  return ref::matvec_rows(t.at(name), row0, rows, x);
}
inline Vec matvec(const std::map<std::string, Tensor>& t, const std::string& name, const Vec& x) {
  return ref::matvec(t.at(name), x);
}

/// The RoPE of the reference: the first rotary_dim dimensions of each head rotated (rotate_half within them),
/// inv_freq_i = 1 / (ext_i · θ^(2i/rotary_dim)) (ext: longrope's short or long factors, or ones), cos and sin times
/// `attention` (longrope's attention factor, or 1).
struct RefRope {
  int64_t rotary_dim = 0;
  Vec ext;
  double attention = 1.0;
};

/// The RoPE of the Phi-3 `s` with the short (or, when `long_factors`, the long) longrope factors and the attention
/// factor; no scaling (ones, attention 1) without longrope.
inline RefRope rope_of(const TinyPhi3& s, bool long_factors = false) {
  RefRope r{s.rotary_dim(), Vec(size_t(s.rotary_dim() / 2), 1.0), 1.0};
  if (s.longrope) {
    r.ext = long_factors ? s.long_factor() : s.short_factor();
    r.attention = s.attention_factor();
  }
  return r;
}

/// RoPE of the head at v[off, off + head_dim) at position `pos` (apply_rotary_pos_emb of modeling_phi3.py: q_rot =
/// q[..., :rotary_dim] rotated, q_pass = the rest unchanged).
inline void rope(Vec& v, size_t off, int64_t pos, double theta, const RefRope& r) {
  Vec angles(size_t(r.rotary_dim / 2));
  for (size_t i = 0; i < angles.size(); ++i)
    angles[i] = double(pos) * (1.0 / (r.ext[i] * std::pow(theta, 2.0 * double(i) / double(r.rotary_dim))));
  ref::rotate_half(v, off, angles, r.attention);
}

/// Logits [n, vocab] of the Phi-3 of sizes `s` and (fused) tensors `t` for `tokens` in double precision, as
/// modeling_phi3.py computes them: per layer h = RMSNorm(x); qkv = qkv_proj(h) split into q (heads·hd rows), k and v
/// (kv_heads·hd each); RoPE `r` on q and k; causal GQA attention; x += o_proj; gate, up = gate_up_proj(h') split in
/// halves with h' = RMSNorm(x); x += down(silu(gate) · up); then the final norm and lm_head. The query and key of
/// position i are rotated with rope_at(i): one RefRope for a pass that computes every position, or the rotation of
/// the pass that computed position i when the positions came from several passes over one KV cache (a cached key
/// keeps the rotation it was stored with; the position's query was rotated in that same pass).
inline Vec reference_logits(const std::map<std::string, Tensor>& t, const TinyPhi3& s,
                            const std::function<const RefRope&(int64_t)>& rope_at,
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
      const RefRope& r = rope_at(int64_t(i));
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

/// reference_logits with the one RoPE `r` at every position (one pass).
inline Vec reference_logits(const std::map<std::string, Tensor>& t, const TinyPhi3& s, const RefRope& r,
                            const std::vector<int32_t>& tokens) {
  return reference_logits(t, s, [&r](int64_t) -> const RefRope& { return r; }, tokens);
}

}  // namespace kq::testing::phi3
