#pragma once
// A test-side packer of pre-quantized Hugging Face Hub layers, written from the
// published layouts (not from kq's loader): AutoAWQ's GEMM tensors and
// AutoGPTQ's v1 / GPTQModel's v2 tensors of one linear layer W [N, K] from known
// 4-bit codes q[n, k], zero points z[g, n] and fp16 scales s[g, n], and the
// reference dequantization w[n, k] = (q[n, k] − z[g(k), n]) · s[g(k), n] in F32.
//   AWQ:  qweight I32 [K, N/8], nibble i of word (k, c) = q[8c + {0,2,4,6,1,3,5,7}[i], k];
//         qzeros I32 [G, N/8] the same interleave; scales F16 [G, N].
//   GPTQ: qweight I32 [K/8, N], nibble i of word (r, n) = q[n, 8r + i];
//         qzeros I32 [G, N/8], nibble i of (g, c) = z[g, 8c + i] − 1 (v1) or z (v2);
//         scales F16 [G, N]; g_idx I32 [K] = k / group_size (or HubCodes::g_idx).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kq/dtype.hpp"
#include "kq/tensor.hpp"

namespace kq::testing {

/// The checkpoint layouts the packer writes.
enum class HubFormat { Awq, GptqV1, GptqV2 };

/// Known codes, zero points and scales of one layer W [N, K].
struct HubCodes {
  int64_t N = 0, K = 0, group = 128;  ///< group −1: one group per row
  int64_t G = 1;                      ///< groups per row
  std::vector<uint8_t> q;             ///< [N, K] codes 0..15
  std::vector<uint8_t> z;             ///< [G, N] zero points 0..15
  Tensor scales;                      ///< F16 [G, N]
  std::vector<int32_t> g_idx;         ///< [K] the group of each input channel (GPTQ act-order); empty: k / group
  int64_t group_of(int64_t k) const { return !g_idx.empty() ? g_idx[size_t(k)] : group < 0 ? 0 : k / group; }
};

/// Deterministic codes of W [N, K]: codes uniform in 0..15, zero points 8 when
/// `symmetric`, else uniform in [zmin, 15] (zmin 1 for GPTQ v1, which cannot
/// store zero point 0), scales in [0.002, 0.05) rounded to fp16.
inline HubCodes hub_codes(int64_t N, int64_t K, int64_t group, bool symmetric, int zmin, uint64_t seed) {
  uint64_t st = seed * 0x9E3779B97F4A7C15ull + 12345;
  auto next = [&] {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return st;
  };
  HubCodes c;
  c.N = N;
  c.K = K;
  c.group = group;
  c.G = group < 0 ? 1 : (K + group - 1) / group;
  c.q.resize(size_t(N * K));
  for (uint8_t& v : c.q) v = uint8_t(next() % 16);
  c.z.resize(size_t(c.G * N));
  for (uint8_t& v : c.z) v = symmetric ? 8 : uint8_t(zmin + int(next() % uint64_t(16 - zmin)));
  std::vector<float> s(size_t(c.G * N));
  for (float& v : s) v = 0.002f + 0.048f * float(next() % 100000) / 100000.0f;
  c.scales = Tensor::empty(DType::F16, {c.G, N});
  convert_from_f32(DType::F16, s.data(), c.scales.mutable_data<uint16_t>(), s.size());
  return c;
}

/// Symmetric round-to-nearest codes of an F32 weight `w` [N, K] (zero point 8, scale absmax / 7 per group
/// rounded to fp16, q = clamp(round(w / s) + 8, 0, 15)), as a GPTQ / AWQ checkpoint of that weight might hold.
inline HubCodes hub_codes_rtn(const Tensor& w, int64_t group) {
  HubCodes c;
  c.N = w.shape()[0];
  c.K = w.shape()[1];
  c.group = group;
  c.G = group < 0 ? 1 : (c.K + group - 1) / group;
  const float* p = w.data<float>();
  std::vector<float> s(size_t(c.G * c.N), 0.0f);
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t k = 0; k < c.K; ++k) {
      float& a = s[size_t(c.group_of(k) * c.N + n)];
      a = std::max(a, std::fabs(p[n * c.K + k]) / 7.0f);
    }
  c.scales = Tensor::empty(DType::F16, {c.G, c.N});
  convert_from_f32(DType::F16, s.data(), c.scales.mutable_data<uint16_t>(), s.size());
  const Tensor s16 = c.scales.to_f32();
  c.z.assign(size_t(c.G * c.N), 8);
  c.q.resize(size_t(c.N * c.K));
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t k = 0; k < c.K; ++k) {
      const float sc = s16.data<float>()[c.group_of(k) * c.N + n];
      const float r = sc > 0.0f ? std::nearbyint(p[n * c.K + k] / sc) : 0.0f;
      c.q[size_t(n * c.K + k)] = uint8_t(std::clamp(r + 8.0f, 0.0f, 15.0f));
    }
  return c;
}

/// The codes of one layer whose output rows are those of `parts` in order (each [N_i, K], the same K, groups and
/// g_idx): a fused layer (Phi-3's qkv_proj = q, k, v rows) as a checkpoint that quantized it as one stores it.
inline HubCodes hub_codes_concat(const std::vector<HubCodes>& parts) {
  HubCodes c = parts.front();
  c.N = 0;
  for (const HubCodes& p : parts) c.N += p.N;
  c.q.clear();
  c.z.assign(size_t(c.G * c.N), 0);
  std::vector<uint16_t> s(size_t(c.G * c.N));
  int64_t n0 = 0;
  for (const HubCodes& p : parts) {
    c.q.insert(c.q.end(), p.q.begin(), p.q.end());  // rows [n0, n0 + p.N)
    for (int64_t g = 0; g < c.G; ++g)
      for (int64_t n = 0; n < p.N; ++n) {
        c.z[size_t(g * c.N + n0 + n)] = p.z[size_t(g * p.N + n)];
        s[size_t(g * c.N + n0 + n)] = p.scales.data<uint16_t>()[g * p.N + n];
      }
    n0 += p.N;
  }
  c.scales = Tensor::empty(DType::F16, {c.G, c.N});
  std::copy(s.begin(), s.end(), c.scales.mutable_data<uint16_t>());
  return c;
}

/// The reference dequantization F32 [N, K]: (q − z) · s with s the fp16 scale widened to F32.
inline Tensor hub_reference(const HubCodes& c) {
  const Tensor s = c.scales.to_f32();
  const float* sp = s.data<float>();
  Tensor w = Tensor::empty(DType::F32, {c.N, c.K});
  float* wp = w.mutable_data<float>();
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t k = 0; k < c.K; ++k) {
      const int64_t g = c.group_of(k);
      wp[n * c.K + k] =
          float(int(c.q[size_t(n * c.K + k)]) - int(c.z[size_t(g * c.N + n)])) * sp[g * c.N + n];
    }
  return w;
}

/// The tensors of the layer under `prefix` (prefix.qweight, .qzeros, .scales, and for GPTQ .g_idx when `g_idx`).
inline std::map<std::string, Tensor> hub_layer_tensors(const HubCodes& c, const std::string& prefix, HubFormat f,
                                                       bool g_idx = true) {
  constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  const int64_t N = c.N, K = c.K, G = c.G;
  std::map<std::string, Tensor> out;
  Tensor qw = f == HubFormat::Awq ? Tensor::empty(DType::I32, {K, N / 8}) : Tensor::empty(DType::I32, {K / 8, N});
  uint32_t* w = qw.mutable_data<uint32_t>();
  if (f == HubFormat::Awq) {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t col = 0; col < N / 8; ++col) {
        uint32_t v = 0;
        for (int i = 0; i < 8; ++i) v |= uint32_t(c.q[size_t((8 * col + kAwqOrder[i]) * K + k)]) << (4 * i);
        w[k * (N / 8) + col] = v;
      }
  } else {
    for (int64_t r = 0; r < K / 8; ++r)
      for (int64_t n = 0; n < N; ++n) {
        uint32_t v = 0;
        for (int i = 0; i < 8; ++i) v |= uint32_t(c.q[size_t(n * K + 8 * r + i)]) << (4 * i);
        w[r * N + n] = v;
      }
  }
  Tensor qz = Tensor::empty(DType::I32, {G, N / 8});
  uint32_t* zp = qz.mutable_data<uint32_t>();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t col = 0; col < N / 8; ++col) {
      uint32_t v = 0;
      for (int i = 0; i < 8; ++i) {
        const int64_t n = 8 * col + (f == HubFormat::Awq ? kAwqOrder[i] : i);
        const uint32_t stored = uint32_t(c.z[size_t(g * N + n)]) - (f == HubFormat::GptqV1 ? 1u : 0u);
        v |= (stored & 0xFu) << (4 * i);
      }
      zp[g * (N / 8) + col] = v;
    }
  out[prefix + ".qweight"] = qw;
  out[prefix + ".qzeros"] = qz;
  out[prefix + ".scales"] = c.scales;
  if (f != HubFormat::Awq && g_idx) {
    Tensor gi = Tensor::empty(DType::I32, {K});
    for (int64_t k = 0; k < K; ++k) gi.mutable_data<int32_t>()[k] = int32_t(c.group_of(k));
    out[prefix + ".g_idx"] = gi;
  }
  return out;
}

}  // namespace kq::testing
