#pragma once
// The low-level building blocks of the double-precision reference forwards in tests/models (each forward itself
// stays a separate transcription of one transformers modeling file): matrix-vector products of F32 weights,
// RMSNorm with a gain w or Gemma's 1 + w, RoPE's rotate_half, GELU (tanh form) and SiLU, and causal softmax
// attention of one query position over GQA heads. Everything is computed in double.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kq/tensor.hpp"

namespace kq::testing::ref {

using Vec = std::vector<double>;

/// y[rows] = W[row0, row0 + rows)·x (+ bias[row0 + n] when `bias` is given) for the F32 weight W [N, K] (a part
/// of a fused weight, or all of it) and an F32 bias [N].
inline Vec matvec_rows(const Tensor& w, int64_t row0, int64_t rows, const Vec& x, const Tensor* bias = nullptr) {
  const int64_t K = w.shape()[1];
  Vec y(size_t(rows), 0.0);
  for (int64_t n = 0; n < rows; ++n) {
    double acc = bias ? double(bias->data<float>()[row0 + n]) : 0.0;
    for (int64_t k = 0; k < K; ++k) acc += double(w.data<float>()[(row0 + n) * K + k]) * x[size_t(k)];
    y[size_t(n)] = acc;
  }
  return y;
}

/// y[N] = W[N, K]·x (+ bias[N] when given), W and bias F32.
inline Vec matvec(const Tensor& w, const Vec& x, const Tensor* bias = nullptr) {
  return matvec_rows(w, 0, w.shape()[0], x, bias);
}

/// RMSNorm in place of v[off, off + n) with the F32 weight w [n]: v / sqrt(mean(v²) + eps) · w (LlamaRMSNorm), or
/// · (1 + w) when `one_plus_w` (GemmaRMSNorm, Gemma2RMSNorm, Gemma3RMSNorm).
inline void rms_norm(Vec& v, size_t off, size_t n, const Tensor& w, double eps, bool one_plus_w = false) {
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += v[off + i] * v[off + i];
  const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
  for (size_t i = 0; i < n; ++i) {
    if (one_plus_w)
      v[off + i] *= inv * (1.0 + double(w.data<float>()[i]));
    else
      v[off + i] = v[off + i] * inv * double(w.data<float>()[i]);
  }
}

/// rms_norm over the whole of v.
inline void rms_norm(Vec& v, const Tensor& w, double eps, bool one_plus_w = false) {
  rms_norm(v, 0, v.size(), w, eps, one_plus_w);
}

/// rotate_half RoPE (apply_rotary_pos_emb) of the head at v[off, ...) by the angles a_i, i < half = angles.size():
/// (x_i, x_{i+half}) → (x_i·c − x_{i+half}·s, x_{i+half}·c + x_i·s) with c = cos(a_i)·attention, s =
/// sin(a_i)·attention (attention: longrope's attention factor, else 1). Dimensions from 2·half on are left as
/// they are (partial rotary).
inline void rotate_half(Vec& v, size_t off, const Vec& angles, double attention = 1.0) {
  const size_t half = angles.size();
  for (size_t i = 0; i < half; ++i) {
    const double c = std::cos(angles[i]) * attention, sn = std::sin(angles[i]) * attention;
    const double x1 = v[off + i], x2 = v[off + i + half];
    v[off + i] = x1 * c - x2 * sn;
    v[off + i + half] = x2 * c + x1 * sn;
  }
}

/// The default RoPE angles at position `pos` over `dim` rotated dimensions: pos · θ^(−2i/dim) / factor, i <
/// dim / 2 (factor: linear RoPE scaling, 1 for none).
inline Vec rope_angles(int64_t pos, int64_t dim, double theta, double factor = 1.0) {
  Vec a(size_t(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i)
    a[size_t(i)] = double(pos) * std::pow(theta, -2.0 * double(i) / double(dim)) / factor;
  return a;
}

/// Default (or linearly scaled) RoPE of the head at v[off, off + hd) at position `pos`.
inline void rope(Vec& v, size_t off, int64_t hd, int64_t pos, double theta, double factor = 1.0) {
  rotate_half(v, off, rope_angles(pos, hd, theta, factor));
}

/// GELU, tanh approximation (gelu_pytorch_tanh): 0.5·a·(1 + tanh(sqrt(2/π)·(a + 0.044715·a³))).
inline double gelu_tanh(double a) {
  return 0.5 * a * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a)));
}

/// SiLU: a / (1 + e^−a).
inline double silu(double a) { return a / (1.0 + std::exp(-a)); }

/// Softmax attention of the query at position i over the keys at positions [first, i] (first > 0: a sliding
/// window), for q[i] [heads · hd] and k[j], v[j] [kv_heads · hd] (GQA: query head h reads kv head h / (heads /
/// kv_heads)): scores q·k · scale, soft-capped to softcap · tanh(s / softcap) when softcap > 0. Returns [heads ·
/// hd].
inline Vec causal_attention(const std::vector<Vec>& q, const std::vector<Vec>& k, const std::vector<Vec>& v,
                            size_t i, size_t heads, size_t kv_heads, size_t hd, double scale, size_t first = 0,
                            double softcap = 0.0) {
  const size_t group = heads / kv_heads;
  Vec att(heads * hd, 0.0);
  for (size_t hh = 0; hh < heads; ++hh) {
    const size_t kv = hh / group;
    Vec score(i + 1, 0.0);
    double mx = -1e300;
    for (size_t j = first; j <= i; ++j) {
      double dot = 0;
      for (size_t e = 0; e < hd; ++e) dot += q[i][hh * hd + e] * k[j][kv * hd + e];
      score[j] = dot * scale;
      if (softcap > 0) score[j] = softcap * std::tanh(score[j] / softcap);
      mx = std::max(mx, score[j]);
    }
    double sum = 0;
    for (size_t j = first; j <= i; ++j) sum += (score[j] = std::exp(score[j] - mx));
    for (size_t j = first; j <= i; ++j)
      for (size_t e = 0; e < hd; ++e) att[hh * hd + e] += score[j] / sum * v[j][kv * hd + e];
  }
  return att;
}

}  // namespace kq::testing::ref
