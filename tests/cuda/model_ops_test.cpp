// The GPU model ops (kernels/cuda/model_ops.hpp) against float64 host
// references on fresh random inputs: every output buffer is poisoned with NaN
// (0xFF bytes) before the call, and padding columns beyond the used width
// (and unwritten KV-cache positions) must still hold the poison afterwards.
#ifdef KQ_WITH_CUDA
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "cuda/device_test_util.hpp"
#include "cuda/gpu_test_util.hpp"
#include "cuda/tolerances.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/model_ops.hpp"
#include "kernels/cuda/model_ops_launch.hpp"
#include "kq/error.hpp"

namespace kq::testing {
namespace {

using cuda::DeviceBuffer;

/// Attention: BF16 output rounding (~1.1e-3 rms), FP32 softmax; the prefill
/// path also rounds the probabilities to BF16 for the P·V tensor-core product.
constexpr double kAttention = 5e-3;
/// Norms and element-wise ops: one BF16 rounding of the output.
constexpr double kBf16Out = 4e-3;

constexpr uint16_t kPoison16 = 0xFFFF;

void sync() { KQ_CUDA_CHECK(cudaDeviceSynchronize()); }

/// Counts BF16 entries of rows [0, rows) in columns [cols, ld) that are not the poison.
int64_t touched_padding(const std::vector<uint16_t>& v, int64_t rows, int64_t cols, int64_t ld) {
  int64_t t = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = cols; c < ld; ++c) t += v[size_t(r * ld + c)] != kPoison16;
  return t;
}

std::vector<float> random_f32(Rng& r, size_t n, double lo, double hi) {
  std::vector<float> v(n);
  for (auto& e : v) e = float(r.uniform(lo, hi));
  return v;
}

// ------------------------------------------------------------ host-only ----

TEST(ModelOps, RejectsBadArguments) {
  // All checks run before any CUDA call, so this needs no device.
  auto* fx = reinterpret_cast<float*>(uintptr_t(256));
  auto* fb = reinterpret_cast<uint16_t*>(uintptr_t(256));
  auto* fi = reinterpret_cast<int32_t*>(uintptr_t(256));
  uint16_t* const* fp = reinterpret_cast<uint16_t* const*>(uintptr_t(256));
  EXPECT_THROW(cuda::rms_norm(fx, nullptr, 0, fx, 1e-5f, fb, 10, 2, 16, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::rms_norm(fx, fb, 8, fx, 1e-5f, fb, 16, 2, 16, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::layer_norm(fx, nullptr, 0, fx, nullptr, 1e-5f, fb, 16, 2, 16, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::rope(fb, 128, 2, nullptr, 0, 0, 63, fx, fx, fi, 1, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::swiglu(fb, 10, fb, 10, fb, 10, 1, 11, nullptr), InvalidArgument);
  cuda::KVLayerView kv{fp, fp, 100, 2, 128};
  EXPECT_THROW(cuda::causal_attention(fb, 384, 3, kv, fi, fi, 1, 10, 1.0f, fb, 384, fx, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::causal_attention(fb, 512, 4, kv, fi, fi, 1, 101, 1.0f, fb, 512, fx, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::causal_attention(fb, 500, 4, kv, fi, fi, 1, 10, 1.0f, fb, 512, fx, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::causal_attention(fb, 512, 4, kv, fi, fi, 1, 10, 1.0f, fb, 512, fx, nullptr,
                                      cuda::AttentionPath::Auto, /*window=*/-1),
               InvalidArgument);
  kv.head_dim = 96;
  EXPECT_THROW(cuda::causal_attention(fb, 512, 4, kv, fi, fi, 1, 10, 1.0f, fb, 512, fx, nullptr), Unsupported);
  kv.head_dim = 128;
  // Batch 1, long context: splits, merged through a workspace where clusters do not run (KQ_ATTN_CLUSTER=0,
  // before Hopper); with clusters nothing is needed, and the fake pointers must not reach a launch.
  kv.capacity = 4096;
  if (cuda::ops::decode_workspace_floats(1, 4, 128, cuda::ops::decode_plan(1, 4, 2, 4000,
                                                                           cuda::ops::decode_cluster_limit())) > 0) {
    EXPECT_THROW(cuda::causal_attention(fb, 512, 4, kv, fi, fi, 1, 4000, 1.0f, fb, 512, nullptr, nullptr),
                 InvalidArgument);
  }
}

TEST(ModelOps, AttentionWorkspaceBoundCoversEveryPlan) {
  for (int64_t n : {1, 2, 3, 16, 17, 64, 256})
    for (int q_heads : {1, 4, 12, 32, 64})
      for (int kv_heads = 1; kv_heads <= q_heads; ++kv_heads) {
        if (q_heads % kv_heads) continue;
        for (int64_t capacity : {1, 63, 64, 512, 1000, 4096})
          for (int64_t max_len : {int64_t(1), capacity / 2 + 1, capacity}) {
            // Clusters merge the splits on chip: no workspace, at most 16 splits, never one.
            const auto cp = cuda::ops::decode_plan(n, q_heads, kv_heads, max_len, 16);
            ASSERT_GE(int64_t(cp.splits) * cp.chunk, max_len);
            if (cp.cluster) {
              ASSERT_GT(cp.splits, 1);
              ASSERT_LE(cp.splits, 16);
              ASSERT_EQ(cuda::ops::decode_workspace_floats(n, q_heads, 128, cp), 0u);
            }
            const auto plan = cuda::ops::decode_plan(n, q_heads, kv_heads, max_len);
            ASSERT_FALSE(plan.cluster);
            ASSERT_GE(int64_t(plan.splits) * plan.chunk, max_len);
            ASSERT_LT(int64_t(plan.splits - 1) * plan.chunk, max_len);
            ASSERT_LE(cuda::ops::decode_workspace_floats(n, q_heads, 128, plan) * sizeof(float),
                      cuda::attention_workspace_bytes(n, q_heads, 128, capacity))
                << "n=" << n << " q_heads=" << q_heads << " kv_heads=" << kv_heads << " max_len=" << max_len;
          }
      }
}

// ------------------------------------------------------- element-wise ops ----

TEST(ModelOps, EmbedRows) {
  KQ_REQUIRE_GPU();
  Rng r;
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const int64_t vocab = 50, d = 37, n = 5, max_pos = 20;
  const auto table = random_bf16(r, size_t(vocab * d));
  const auto pos_table = random_bf16(r, size_t(max_pos * d));
  std::vector<int32_t> tokens(n), pos(n);
  for (int64_t i = 0; i < n; ++i) tokens[size_t(i)] = r.integer(0, vocab - 1), pos[size_t(i)] = r.integer(0, max_pos - 1);
  auto dt = up(table), dp = up(pos_table);
  auto dtok = up(tokens), dpos = up(pos);
  for (bool with_pos : {false, true}) {
    auto dx = poisoned<float>(size_t((n + 1) * d));
    cuda::embed_rows(dt.data(), with_pos ? dp.data() : nullptr, dtok.data(), dpos.data(), n, d, dx.data(), nullptr);
    sync();
    const auto x = dx.download();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) {
        double ref = bf16f(table[size_t(tokens[size_t(i)] * d + c)]);
        if (with_pos) ref += bf16f(pos_table[size_t(pos[size_t(i)] * d + c)]);
        ASSERT_NEAR(x[size_t(i * d + c)], ref, 1e-6 * std::fabs(ref)) << "row " << i << " col " << c;
      }
    for (int64_t c = n * d; c < (n + 1) * d; ++c) ASSERT_TRUE(std::isnan(x[size_t(c)])) << "wrote past row n";
  }
}

/// RMSNorm / LayerNorm with and without the fused residual add.
void check_norm(bool layer) {
  KQ_REQUIRE_GPU();
  Rng r;
  struct Shape {
    int64_t n, d, ld;
  };
  // ld % 4 == 0 with d % 4 == 0 takes the vectorized path; the others the scalar one.
  // d <= 16384 on the vector path: registers (1, 2, 4 or 8 slots); beyond: the loop.
  for (const Shape s : {Shape{1, 4096, 4096}, Shape{16, 4096, 4100}, Shape{3, 37, 40}, Shape{17, 768, 771},
                        Shape{2, 11008, 11008}, Shape{5, 768, 768}, Shape{1, 2052, 2056}, Shape{2, 16384, 16384},
                        Shape{2, 16388, 16388}}) {
    for (bool with_add : {false, true}) {
      SCOPED_TRACE("n=" + std::to_string(s.n) + " d=" + std::to_string(s.d) + " ld=" + std::to_string(s.ld) +
                   (with_add ? " +add" : "") + " seed=" + std::to_string(r.seed));
      auto x0 = random_f32(r, size_t(s.n * s.d), -2.0, 2.0);
      for (auto& v : x0) v += 0.5f;  // a non-zero mean for LayerNorm
      const auto add = random_bf16(r, size_t(s.n * s.ld));
      const auto w = random_f32(r, size_t(s.d), 0.5, 1.5);
      const auto b = random_f32(r, size_t(s.d), -0.5, 0.5);
      auto dx = up(x0);
      auto dadd = up(add);
      auto dw = up(w), db = up(b);
      auto dout = poisoned<uint16_t>(size_t(s.n * s.ld));
      const float eps = 1e-5f;
      if (layer)
        cuda::layer_norm(dx.data(), with_add ? dadd.data() : nullptr, s.ld, dw.data(), db.data(), eps, dout.data(),
                         s.ld, s.n, s.d, nullptr);
      else
        cuda::rms_norm(dx.data(), with_add ? dadd.data() : nullptr, s.ld, dw.data(), eps, dout.data(), s.ld, s.n,
                       s.d, nullptr);
      sync();
      const auto x = dx.download();
      const auto out = dout.download();
      std::vector<double> ref(size_t(s.n * s.d));
      for (int64_t i = 0; i < s.n; ++i) {
        std::vector<double> xr(size_t(s.d));
        for (int64_t c = 0; c < s.d; ++c) {
          xr[size_t(c)] = double(x0[size_t(i * s.d + c)]) + (with_add ? double(bf16f(add[size_t(i * s.ld + c)])) : 0.0);
          ASSERT_NEAR(x[size_t(i * s.d + c)], xr[size_t(c)], 1e-6 * (1 + std::fabs(xr[size_t(c)])))
              << "residual row " << i << " col " << c;
        }
        double mean = 0, ss = 0;
        for (double v : xr) mean += v;
        mean /= double(s.d);
        if (!layer) mean = 0;
        for (double v : xr) ss += (v - mean) * (v - mean);
        const double inv = 1.0 / std::sqrt(ss / double(s.d) + eps);
        for (int64_t c = 0; c < s.d; ++c)
          ref[size_t(i * s.d + c)] = (xr[size_t(c)] - mean) * inv * w[size_t(c)] + (layer ? b[size_t(c)] : 0.0);
      }
      EXPECT_LE(rel_l2(ref, bf16_matrix(out, size_t(s.n), size_t(s.d), size_t(s.ld))), kBf16Out);
      EXPECT_EQ(touched_padding(out, s.n, s.d, s.ld), 0);
    }
  }
}

TEST(ModelOps, RmsNorm) { check_norm(false); }
TEST(ModelOps, LayerNorm) { check_norm(true); }

TEST(ModelOps, AddResidual) {
  KQ_REQUIRE_GPU();
  Rng r;
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const int64_t n = 3, d = 1001, ld = 1005;
  const auto x0 = random_f32(r, size_t(n * d), -3, 3);
  const auto add = random_bf16(r, size_t(n * ld));
  auto dx = up(x0);
  auto dadd = up(add);
  cuda::add_residual(dx.data(), dadd.data(), ld, n, d, nullptr);
  sync();
  const auto x = dx.download();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) {
      const double ref = double(x0[size_t(i * d + c)]) + bf16f(add[size_t(i * ld + c)]);
      ASSERT_NEAR(x[size_t(i * d + c)], ref, 1e-6 * (1 + std::fabs(ref)));
    }
}

TEST(ModelOps, Rope) {
  KQ_REQUIRE_GPU();
  Rng r;
  // (head_dim, rotary_dim): whole heads, and Phi-3's partial rotation (the rest of each head left as it is).
  for (const auto& [hd, rd] : {std::pair{64, 64}, std::pair{128, 128}, std::pair{128, 96}, std::pair{64, 16}}) {
    SCOPED_TRACE("head_dim=" + std::to_string(hd) + " rotary_dim=" + std::to_string(rd) + " seed=" +
                 std::to_string(r.seed));
    const int qh = 4, kh = 2, max_pos = 1024, half = rd / 2;
    const int64_t n = 17, ldq = qh * hd + 8, ldk = kh * hd + 3;
    std::vector<float> cs(size_t(max_pos * half)), sn(cs.size());
    for (int p = 0; p < max_pos; ++p)
      for (int i = 0; i < half; ++i) {
        const double a = p * std::pow(10000.0, -2.0 * i / rd);
        cs[size_t(p * half + i)] = float(std::cos(a));
        sn[size_t(p * half + i)] = float(std::sin(a));
      }
    std::vector<int32_t> pos(n);
    for (auto& p : pos) p = r.integer(0, max_pos - 1);
    auto q0 = random_bf16(r, size_t(n * ldq)), k0 = random_bf16(r, size_t(n * ldk));
    for (int64_t i = 0; i < n; ++i) {  // poison the padding columns: they must stay untouched
      for (int64_t c = qh * hd; c < ldq; ++c) q0[size_t(i * ldq + c)] = kPoison16;
      for (int64_t c = kh * hd; c < ldk; ++c) k0[size_t(i * ldk + c)] = kPoison16;
    }
    auto dq = up(q0), dk = up(k0);
    auto dcs = up(cs), dsn = up(sn);
    auto dpos = up(pos);
    cuda::rope(dq.data(), ldq, qh, dk.data(), ldk, kh, hd, dcs.data(), dsn.data(), dpos.data(), n, nullptr,
               rd == hd ? 0 : rd);
    sync();
    for (int which = 0; which < 2; ++which) {
      const auto& in = which == 0 ? q0 : k0;
      const auto got = (which == 0 ? dq : dk).download();
      const int heads = which == 0 ? qh : kh;
      const int64_t ld = which == 0 ? ldq : ldk;
      std::vector<double> ref(size_t(n * heads * hd));
      for (int64_t i = 0; i < n; ++i)
        for (int h = 0; h < heads; ++h) {
          for (int j = rd; j < hd; ++j)  // past rotary_dim: unchanged
            ref[size_t((i * heads + h) * hd + j)] = bf16f(in[size_t(i * ld + h * hd + j)]);
          for (int j = 0; j < half; ++j) {
            const size_t o = size_t(i * ld + h * hd + j);
            const double a = bf16f(in[o]), b = bf16f(in[o + size_t(half)]);
            const double c = cs[size_t(pos[size_t(i)] * half + j)], s = sn[size_t(pos[size_t(i)] * half + j)];
            ref[size_t((i * heads + h) * hd + j)] = a * c - b * s;
            ref[size_t((i * heads + h) * hd + j + half)] = b * c + a * s;
          }
        }
      EXPECT_LE(rel_l2(ref, bf16_matrix(got, size_t(n), size_t(heads * hd), size_t(ld))), kBf16Out) << "tensor " << which;
      EXPECT_EQ(touched_padding(got, n, heads * hd, ld), 0);
    }
  }
}

// Qwen3's per-head RMSNorm against a double-precision recomputation, odd
// head counts and row strides, padding poisoned and left untouched.
TEST(ModelOps, QkNorm) {
  KQ_REQUIRE_GPU();
  Rng r;
  for (int hd : {64, 128, 96, 32, 256}) {
    SCOPED_TRACE("head_dim=" + std::to_string(hd) + " seed=" + std::to_string(r.seed));
    const int qh = 5, kh = 3;
    const int64_t n = 13, ldq = qh * hd + 8, ldk = kh * hd + 3;
    const float eps = 1e-6f;
    std::vector<float> qw(static_cast<size_t>(hd)), kw(static_cast<size_t>(hd));
    for (auto& w : qw) w = float(r.uniform(0.5, 1.5));
    for (auto& w : kw) w = float(r.uniform(0.5, 1.5));
    auto q0 = random_bf16(r, size_t(n * ldq), 3.0), k0 = random_bf16(r, size_t(n * ldk), 3.0);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t c = qh * hd; c < ldq; ++c) q0[size_t(i * ldq + c)] = kPoison16;
      for (int64_t c = kh * hd; c < ldk; ++c) k0[size_t(i * ldk + c)] = kPoison16;
    }
    auto dq = up(q0), dk = up(k0);
    auto dqw = up(qw), dkw = up(kw);
    cuda::qk_norm(dq.data(), ldq, qh, dk.data(), ldk, kh, hd, dqw.data(), dkw.data(), eps, n, nullptr);
    sync();
    for (int which = 0; which < 2; ++which) {
      const auto& in = which == 0 ? q0 : k0;
      const auto& w = which == 0 ? qw : kw;
      const auto got = (which == 0 ? dq : dk).download();
      const int heads = which == 0 ? qh : kh;
      const int64_t ld = which == 0 ? ldq : ldk;
      std::vector<double> ref(size_t(n * heads * hd));
      for (int64_t i = 0; i < n; ++i)
        for (int h = 0; h < heads; ++h) {
          double sq = 0;
          for (int j = 0; j < hd; ++j) sq += std::pow(bf16f(in[size_t(i * ld + h * hd + j)]), 2);
          const double inv = 1 / std::sqrt(sq / hd + eps);
          for (int j = 0; j < hd; ++j)
            ref[size_t((i * heads + h) * hd + j)] = bf16f(in[size_t(i * ld + h * hd + j)]) * inv * w[size_t(j)];
        }
      EXPECT_LE(rel_l2(ref, bf16_matrix(got, size_t(n), size_t(heads * hd), size_t(ld))), kBf16Out) << "tensor " << which;
      EXPECT_EQ(touched_padding(got, n, heads * hd, ld), 0);
    }
  }
}

TEST(ModelOps, SwigluAndGelu) {
  KQ_REQUIRE_GPU();
  Rng r;
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const int64_t n = 3, f = 1001, ld = 1006;
  const auto gate = random_bf16(r, size_t(n * ld), 2.0), upv = random_bf16(r, size_t(n * ld), 2.0);
  std::vector<double> ref(size_t(n * f)), gref(size_t(n * f));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < f; ++c) {
      const double g = bf16f(gate[size_t(i * ld + c)]), u = bf16f(upv[size_t(i * ld + c)]);
      ref[size_t(i * f + c)] = g / (1 + std::exp(-g)) * u;
      gref[size_t(i * f + c)] = 0.5 * g * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (g + 0.044715 * g * g * g)));
    }
  auto dg = up(gate), du = up(upv);
  auto dout = poisoned<uint16_t>(size_t(n * ld));
  cuda::swiglu(dg.data(), ld, du.data(), ld, dout.data(), ld, n, f, nullptr);
  sync();
  auto out = dout.download();
  EXPECT_LE(rel_l2(ref, bf16_matrix(out, size_t(n), size_t(f), size_t(ld))), kBf16Out);
  EXPECT_EQ(touched_padding(out, n, f, ld), 0);
  // In place (out aliases gate); the gate's padding keeps its values.
  cuda::swiglu(dg.data(), ld, du.data(), ld, dg.data(), ld, n, f, nullptr);
  sync();
  out = dg.download();
  EXPECT_LE(rel_l2(ref, bf16_matrix(out, size_t(n), size_t(f), size_t(ld))), kBf16Out);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = f; c < ld; ++c) ASSERT_EQ(out[size_t(i * ld + c)], gate[size_t(i * ld + c)]);
  // GELU in place on a copy of the gate.
  auto dx = up(gate);
  cuda::gelu_tanh_inplace(dx.data(), ld, n, f, nullptr);
  sync();
  out = dx.download();
  EXPECT_LE(rel_l2(gref, bf16_matrix(out, size_t(n), size_t(f), size_t(ld))), kBf16Out);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = f; c < ld; ++c) ASSERT_EQ(out[size_t(i * ld + c)], gate[size_t(i * ld + c)]);
}

/// Gemma's ops: GeGLU (tanh and erf GELU, in place too), RMSNorm of BF16 rows in place, the residual scale.
TEST(ModelOps, GegluRmsNormRowsAndScaleRows) {
  KQ_REQUIRE_GPU();
  Rng r;
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const int64_t n = 3, f = 1001, ld = 1006;
  const auto gate = random_bf16(r, size_t(n * ld), 2.0), upv = random_bf16(r, size_t(n * ld), 2.0);
  for (const bool exact : {false, true}) {
    std::vector<double> ref(size_t(n * f));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < f; ++c) {
        const double g = bf16f(gate[size_t(i * ld + c)]), u = bf16f(upv[size_t(i * ld + c)]);
        const double a = exact ? 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)))
                               : 0.5 * g * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (g + 0.044715 * g * g * g)));
        ref[size_t(i * f + c)] = a * u;
      }
    auto dg = up(gate), du = up(upv);
    auto dout = poisoned<uint16_t>(size_t(n * ld));
    cuda::geglu(dg.data(), ld, du.data(), ld, dout.data(), ld, n, f, exact, nullptr);
    sync();
    auto out = dout.download();
    EXPECT_LE(rel_l2(ref, bf16_matrix(out, size_t(n), size_t(f), size_t(ld))), kBf16Out) << exact;
    EXPECT_EQ(touched_padding(out, n, f, ld), 0);
    cuda::geglu(dg.data(), ld, du.data(), ld, dg.data(), ld, n, f, exact, nullptr);  // in place
    sync();
    out = dg.download();
    EXPECT_LE(rel_l2(ref, bf16_matrix(out, size_t(n), size_t(f), size_t(ld))), kBf16Out) << exact;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = f; c < ld; ++c) ASSERT_EQ(out[size_t(i * ld + c)], gate[size_t(i * ld + c)]);
  }
  // rms_norm_rows: rows of 1152 (Gemma 3 1B's hidden) and 300, stride past d poisoned.
  for (const int64_t d : {int64_t(1152), int64_t(300)}) {
    const int64_t rows = 5, ldy = d + 7;
    const float eps = 1e-6f;
    auto y0 = random_bf16(r, size_t(rows * ldy), 4.0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = d; c < ldy; ++c) y0[size_t(i * ldy + c)] = kPoison16;
    const auto w = random_f32(r, size_t(d), 0.5, 1.5);
    std::vector<double> ref(size_t(rows * d));
    for (int64_t i = 0; i < rows; ++i) {
      double sq = 0;
      for (int64_t c = 0; c < d; ++c) sq += std::pow(bf16f(y0[size_t(i * ldy + c)]), 2);
      const double inv = 1 / std::sqrt(sq / double(d) + eps);
      for (int64_t c = 0; c < d; ++c) ref[size_t(i * d + c)] = bf16f(y0[size_t(i * ldy + c)]) * inv * w[size_t(c)];
    }
    auto dy = up(y0);
    auto dw = up(w);
    cuda::rms_norm_rows(dy.data(), ldy, dw.data(), eps, rows, d, nullptr);
    sync();
    const auto got = dy.download();
    EXPECT_LE(rel_l2(ref, bf16_matrix(got, size_t(rows), size_t(d), size_t(ldy))), kBf16Out) << d;
    EXPECT_EQ(touched_padding(got, rows, d, ldy), 0);
  }
  // scale_rows: exact F32 products.
  const auto x0 = random_f32(r, size_t(7 * 333), -3, 3);
  auto dx = up(x0);
  cuda::scale_rows(dx.data(), 33.9411255f, 7, 333, nullptr);
  sync();
  const auto x = dx.download();
  for (size_t i = 0; i < x0.size(); ++i) ASSERT_EQ(x[i], x0[i] * 33.9411255f) << i;
  EXPECT_THROW(cuda::rms_norm_rows(nullptr, 10, nullptr, 1e-6f, 1, 10, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::geglu(nullptr, 10, nullptr, 10, nullptr, 10, 1, 10, false, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::scale_rows(nullptr, 2.0f, 1, 10, nullptr), InvalidArgument);
}

TEST(ModelOps, Conversions) {
  KQ_REQUIRE_GPU();
  Rng r;
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const int64_t count = 100003;
  auto f = random_f32(r, size_t(count), -1e3, 1e3);
  f[0] = 0.0f, f[1] = -0.0f, f[2] = 1e-40f, f[3] = 3.0e38f;
  auto df = up(f);
  auto db = poisoned<uint16_t>(size_t(count + 1));
  cuda::f32_to_bf16(df.data(), db.data(), count, nullptr);
  sync();
  const auto b = db.download();
  for (int64_t i = 0; i < count; ++i) ASSERT_EQ(b[size_t(i)], f32_to_bf16(f[size_t(i)])) << "value " << f[size_t(i)];
  EXPECT_EQ(b[size_t(count)], kPoison16);
  auto dback = poisoned<float>(size_t(count + 1));
  cuda::bf16_to_f32(db.data(), dback.data(), count, nullptr);
  sync();
  const auto back = dback.download();
  for (int64_t i = 0; i < count; ++i) ASSERT_EQ(back[size_t(i)], bf16f(b[size_t(i)]));
  EXPECT_TRUE(std::isnan(back[size_t(count)]));
}

// ----------------------------------------------------------- KV cache ----

/// Device KV caches of several sequences for one layer (each its own allocation).
struct Caches {
  std::vector<std::vector<uint16_t>> k, v;  // host copies, [kv_heads, capacity, head_dim]
  std::vector<DeviceBuffer<uint16_t>> dk, dv;
  DeviceBuffer<uint16_t*> dkp, dvp;
  cuda::KVLayerView view;

  /// Positions < len[s] random, the rest NaN poison.
  Caches(Rng& r, int kv_heads, int head_dim, int64_t capacity, const std::vector<int64_t>& len) {
    std::vector<uint16_t*> kp, vp;
    for (size_t s = 0; s < len.size(); ++s) {
      for (int which = 0; which < 2; ++which) {
        std::vector<uint16_t> c(size_t(kv_heads * capacity * head_dim), kPoison16);
        for (int h = 0; h < kv_heads; ++h) {
          const auto vals = random_bf16(r, size_t(len[s] * head_dim));
          std::copy(vals.begin(), vals.end(), c.begin() + (h * capacity) * head_dim);
        }
        (which ? v : k).push_back(c);
        (which ? dv : dk).push_back(up(c));
        (which ? vp : kp).push_back((which ? dv : dk).back().data());
      }
    }
    dkp.upload(kp);
    dvp.upload(vp);
    view = cuda::KVLayerView{dkp.data(), dvp.data(), capacity, kv_heads, head_dim};
  }
};

TEST(ModelOps, StoreKv) {
  KQ_REQUIRE_GPU();
  Rng r;
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const int kvh = 2, hd = 64;
  const int64_t cap = 40, n = 7, ldk = kvh * hd + 5, ldv = kvh * hd + 1;
  Caches c(r, kvh, hd, cap, {0, 0, 0});  // all poison
  std::vector<int32_t> seq = {0, 0, 0, 1, 2, 2, 1}, pos = {0, 1, 2, 39, 7, 8, 20};
  const auto k = random_bf16(r, size_t(n * ldk)), v = random_bf16(r, size_t(n * ldv));
  auto dkk = up(k), dvv = up(v);
  auto dseq = up(seq), dpos = up(pos);
  cuda::store_kv(dkk.data(), ldk, dvv.data(), ldv, c.view, dseq.data(), dpos.data(), n, nullptr);
  sync();
  for (int s = 0; s < 3; ++s) {
    auto ek = c.k[size_t(s)], ev = c.v[size_t(s)];
    for (int64_t i = 0; i < n; ++i) {
      if (seq[size_t(i)] != s) continue;
      for (int h = 0; h < kvh; ++h)
        for (int j = 0; j < hd; ++j) {
          const size_t o = size_t((h * cap + pos[size_t(i)]) * hd + j);
          ek[o] = k[size_t(i * ldk + h * hd + j)];
          ev[o] = v[size_t(i * ldv + h * hd + j)];
        }
    }
    EXPECT_TRUE(c.dk[size_t(s)].download() == ek) << "keys of sequence " << s;
    EXPECT_TRUE(c.dv[size_t(s)].download() == ev) << "values of sequence " << s;
  }
}

// rope_store_kv is rope then store_kv in one kernel: bit-identical q, k and caches.
TEST(ModelOps, RopeStoreKvEqualsRopeThenStoreKv) {
  KQ_REQUIRE_GPU();
  Rng r;
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  for (const auto& [hd, rd] : {std::pair{64, 0}, std::pair{128, 0}, std::pair{128, 96}, std::pair{64, 2}}) {
    const int qh = 8, kvh = 2, half = (rd ? rd : hd) / 2;
    const int64_t cap = 40, n = 7, ldq = qh * hd + 6, ldk = kvh * hd + 5, ldv = kvh * hd + 1;
    std::vector<float> cs(size_t(cap * half)), sn(cs.size());
    for (size_t i = 0; i < cs.size(); ++i) {
      cs[i] = float(std::cos(0.37 * double(i)));
      sn[i] = float(std::sin(0.37 * double(i)));
    }
    const std::vector<int32_t> seq = {0, 0, 0, 1, 2, 2, 1}, pos = {0, 1, 2, 39, 7, 8, 20};
    const auto q0 = random_bf16(r, size_t(n * ldq)), k0 = random_bf16(r, size_t(n * ldk));
    const auto v = random_bf16(r, size_t(n * ldv));
    auto dcs = up(cs), dsn = up(sn);
    auto dseq = up(seq), dpos = up(pos);
    auto dv = up(v);
    Caches two(r, kvh, hd, cap, {0, 0, 0}), one(r, kvh, hd, cap, {0, 0, 0});
    auto q2 = up(q0), k2 = up(k0), q1 = up(q0), k1 = up(k0);
    cuda::rope(q2.data(), ldq, qh, k2.data(), ldk, kvh, hd, dcs.data(), dsn.data(), dpos.data(), n, nullptr, rd);
    cuda::store_kv(k2.data(), ldk, dv.data(), ldv, two.view, dseq.data(), dpos.data(), n, nullptr);
    cuda::rope_store_kv(q1.data(), ldq, qh, k1.data(), ldk, dv.data(), ldv, one.view, dcs.data(), dsn.data(),
                        dseq.data(), dpos.data(), n, nullptr, rd);
    sync();
    EXPECT_TRUE(q1.download() == q2.download()) << "q, head_dim " << hd << ", rotary_dim " << rd;
    EXPECT_TRUE(k1.download() == k2.download()) << "k, head_dim " << hd << ", rotary_dim " << rd;
    for (size_t s = 0; s < 3; ++s) {
      EXPECT_TRUE(one.dk[s].download() == two.dk[s].download()) << "keys of sequence " << s << ", head_dim " << hd;
      EXPECT_TRUE(one.dv[s].download() == two.dv[s].download()) << "values of sequence " << s << ", head_dim " << hd;
    }
  }
}

// ---------------------------------------------------------- attention ----

struct RowSpan {
  int seq, pos0, count;  // pos0 < 0: a random position in [0, capacity)
};
struct AttnCase {
  std::string name;
  int hd, qh, kvh;
  int64_t cap;
  int seqs;
  std::vector<RowSpan> rows;  // empty: one row per sequence at a random position
  int64_t window = 0;         // sliding window (0: none)
  float softcap = 0;          // attention logit softcapping (Gemma 2; 0: none)
  float scale_mul = 1;        // the attention scale is scale_mul / sqrt(hd) (large scores make the cap matter)
};

const std::vector<AttnCase>& attn_cases() {
  static const std::vector<AttnCase> cases = [] {
    std::vector<AttnCase> c = {
        {"llama7b decode b1 ctx512", 128, 32, 32, 1024, 1, {{0, 511, 1}}},
        {"llama gqa4 decode b16", 128, 32, 8, 1024, 16, {}},
        {"prefill 256 first chunk hd64", 64, 12, 12, 512, 1, {{0, 0, 256}}},
        {"prefill 256 second chunk gqa4", 128, 8, 2, 1024, 1, {{0, 700, 256}}},
        {"prefill 17 gqa4 hd64", 64, 8, 2, 512, 1, {{0, 300, 17}}},
        {"decode 3 rows mixed lengths", 128, 4, 4, 1000, 3, {{0, 0, 1}, {1, 999, 1}, {2, 5, 1}}},
        {"mixed sequences gqa3", 64, 6, 2, 1000, 3, {{1, 10, 40}, {0, 0, 30}, {2, 800, 1}}},
        {"gqa8 decode", 128, 16, 2, 600, 5, {}},
        {"hd256 decode", 256, 2, 1, 300, 3, {}},
        // Gemma 3 1B's heads (4 of 256 over 1 kv head): a prefill chunk on the tensor-core path
        {"prefill 100 gqa4 hd256", 256, 4, 1, 512, 1, {{0, 37, 100}}},
        {"hd32 decode gqa2 (gpt2-tiny / llama-small shapes)", 32, 4, 2, 300, 3, {}},
        {"hd32 prefill 40 rows on the decode path", 32, 4, 4, 256, 1, {{0, 100, 40}}},
        {"one row prefill", 128, 4, 1, 64, 1, {{0, 63, 1}}},
        // 4000 keys: 16 splits, a cluster on Hopper; without clusters (KQ_ATTN_CLUSTER=0, as
        // scripts/gpu-model-check.sh also runs these tests) 64 splits merged by the combine kernel
        {"long context gqa4 decode b1", 128, 8, 2, 4096, 1, {{0, 3999, 1}}},
        // 12 blocks per split: a non-portable 16-block cluster on Hopper
        {"decode 16 splits mha", 128, 12, 12, 1024, 1, {{0, 1023, 1}}},
    };
    for (int s = 0; s < 16; ++s) c[1].rows.push_back({s, -1, 1});
    for (int s = 0; s < 5; ++s) c[7].rows.push_back({s, -1, 1});
    for (int s = 0; s < 3; ++s) c[8].rows.push_back({s, -1, 1});
    return c;
  }();
  return cases;
}

struct AttnSetup {
  AttnCase c;
  int64_t n = 0, ldq = 0, ldo = 0, max_len = 0;
  float scale = 0;
  std::vector<int32_t> seq, pos;
  std::vector<uint16_t> q;
  std::unique_ptr<Caches> caches;
  DeviceBuffer<int32_t> dseq, dpos;
  DeviceBuffer<uint16_t> dq;
  DeviceBuffer<uint8_t> ws;

  AttnSetup(Rng& r, const AttnCase& ac) : c(ac) {
    if (c.rows.empty())
      for (int s = 0; s < c.seqs; ++s) c.rows.push_back({s, -1, 1});
    std::vector<int64_t> len(size_t(c.seqs), 0);
    for (const RowSpan& s : c.rows) {
      const int p0 = s.pos0 >= 0 ? s.pos0 : r.integer(0, int(c.cap) - 1);
      for (int i = 0; i < s.count; ++i) {
        seq.push_back(s.seq);
        pos.push_back(p0 + i);
        len[size_t(s.seq)] = std::max<int64_t>(len[size_t(s.seq)], p0 + i + 1);
        max_len = std::max<int64_t>(max_len, p0 + i + 1);
      }
    }
    n = int64_t(seq.size());
    ldq = int64_t(c.qh) * c.hd + 24;  // e.g. q inside a fused qkv row
    ldo = int64_t(c.qh) * c.hd + 8;
    scale = float(double(c.scale_mul) / std::sqrt(double(c.hd)));
    q = random_bf16(r, size_t(n * ldq));
    caches = std::make_unique<Caches>(r, c.kvh, c.hd, c.cap, len);
    poison_before_windows();
    dseq.upload(seq);
    dpos.upload(pos);
    dq.upload(q);
    ws = poisoned<uint8_t>(std::max<size_t>(1, cuda::attention_workspace_bytes(n, c.qh, c.hd, c.cap)));
  }

  /// The first key a row at position `p` sees: p − window + 1 (at least 0) with a window, else 0
  /// (transformers' sliding_window_causal mask: key j visible when p − window < j <= p).
  int64_t first_key(int64_t p) const { return c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : 0; }

  /// With a window, every cache position before the windows of all rows of its sequence becomes NaN poison (on
  /// the device too): a kernel that read one would give NaN outputs.
  void poison_before_windows() {
    if (c.window == 0) return;
    for (int s = 0; s < c.seqs; ++s) {
      int64_t first = c.cap;
      for (int64_t r = 0; r < n; ++r)
        if (seq[size_t(r)] == s) first = std::min(first, first_key(pos[size_t(r)]));
      if (first == c.cap) continue;  // no row of this sequence
      for (int which = 0; which < 2; ++which) {
        std::vector<uint16_t>& host = (which ? caches->v : caches->k)[size_t(s)];
        for (int h = 0; h < c.kvh; ++h)
          std::fill_n(host.begin() + std::ptrdiff_t(h * c.cap * c.hd), size_t(first * c.hd), kPoison16);
        KQ_CUDA_CHECK(cudaMemcpy((which ? caches->dv : caches->dk)[size_t(s)].data(), host.data(),
                                 host.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
      }
    }
  }

  /// Float64 reference; `cap`: the softcap applied (the case's by default).
  std::vector<double> reference() const { return reference(c.softcap); }
  std::vector<double> reference(double cap) const {
    std::vector<double> ref(size_t(n * c.qh * c.hd));
    const int group = c.qh / c.kvh;
    std::vector<double> w;
    for (int64_t r = 0; r < n; ++r)
      for (int h = 0; h < c.qh; ++h) {
        const auto& K = caches->k[size_t(seq[size_t(r)])];
        const auto& V = caches->v[size_t(seq[size_t(r)])];
        const int64_t kvbase = int64_t(h / group) * c.cap * c.hd, len = pos[size_t(r)] + 1;
        const int64_t first = first_key(pos[size_t(r)]);
        const uint16_t* qr = &q[size_t(r * ldq + h * c.hd)];
        w.assign(size_t(len), 0.0);
        double mx = -1e300, sum = 0;
        for (int64_t p = first; p < len; ++p) {
          double d = 0;
          for (int i = 0; i < c.hd; ++i) d += double(bf16f(qr[i])) * bf16f(K[size_t(kvbase + p * c.hd + i)]);
          w[size_t(p)] = cap > 0 ? cap * std::tanh(d * scale / cap) : d * scale;
          mx = std::max(mx, w[size_t(p)]);
        }
        for (int64_t p = first; p < len; ++p) sum += (w[size_t(p)] = std::exp(w[size_t(p)] - mx));
        double* o = &ref[size_t((r * c.qh + h) * c.hd)];
        for (int64_t p = first; p < len; ++p)
          for (int i = 0; i < c.hd; ++i) o[i] += w[size_t(p)] / sum * bf16f(V[size_t(kvbase + p * c.hd + i)]);
      }
    return ref;
  }

  /// at_capacity: max_len = the cache capacity, as a CUDA graph captured for every position passes it.
  void launch(uint16_t* out, cuda::AttentionPath path, cudaStream_t stream, bool at_capacity = false) {
    cuda::causal_attention(dq.data(), ldq, c.qh, caches->view, dseq.data(), dpos.data(), n,
                           at_capacity ? c.cap : max_len, scale, out, ldo, ws.data(), stream, path, c.window,
                           c.softcap);
  }
};

const char* path_name(cuda::AttentionPath p) {
  return p == cuda::AttentionPath::Auto ? "Auto" : (p == cuda::AttentionPath::Decode ? "Decode" : "Prefill");
}

/// Every case of `cases` on every path (and the decode path with max_len at the capacity) against the float64
/// reference; output padding untouched.
void expect_attention_matches_reference(const std::vector<AttnCase>& cases) {
  Rng r;
  for (const AttnCase& ac : cases) {
    AttnSetup st(r, ac);
    const auto ref = st.reference();
    const int64_t cols = int64_t(ac.qh) * ac.hd;
    for (auto path : {cuda::AttentionPath::Auto, cuda::AttentionPath::Decode, cuda::AttentionPath::Prefill})
      for (bool at_capacity : {false, true}) {
        // The decode plan splits the keys for max_len; each row's keys are split by its own length.
        if (at_capacity && path != cuda::AttentionPath::Decode) continue;
        SCOPED_TRACE(ac.name + " n=" + std::to_string(st.n) + " path=" + path_name(path) +
                     (at_capacity ? " max_len=capacity" : "") + " seed=" + std::to_string(r.seed));
        auto dout = poisoned<uint16_t>(size_t(st.n * st.ldo));
        st.ws.fill_bytes(0xFF);
        st.launch(dout.data(), path, nullptr, at_capacity);
        sync();
        const auto out = dout.download();
        EXPECT_LE(rel_l2(ref, bf16_matrix(out, size_t(st.n), size_t(cols), size_t(st.ldo))), kAttention);
        EXPECT_EQ(touched_padding(out, st.n, cols, st.ldo), 0);
      }
  }
}

TEST(ModelOps, CausalAttentionMatchesFloat64Reference) {
  KQ_REQUIRE_GPU();
  expect_attention_matches_reference(attn_cases());
}

/// Sliding windows (Mistral; keys before each row's window are NaN poison in the caches): odd windows, windows
/// shorter than a 64-key prefill tile and across tiles, a window of 1, GQA / MQA / MHA, several decode splits with
/// the window starting inside a split's chunk, rows of several sequences, and a window longer than every row.
const std::vector<AttnCase>& windowed_attn_cases() {
  static const std::vector<AttnCase> cases = {
      {"window 7 prefill 200 gqa4 hd64", 64, 8, 2, 512, 1, {{0, 0, 200}}, 7},
      {"window 100 prefill 130 after 300 gqa4 hd128", 128, 8, 2, 1024, 1, {{0, 300, 130}}, 100},
      {"window 1 (own key only) 20 rows hd64", 64, 4, 4, 256, 1, {{0, 50, 20}}, 1},
      {"window 65 mixed sequences gqa3", 64, 6, 2, 1000, 3, {{1, 10, 40}, {0, 0, 30}, {2, 800, 1}}, 65},
      {"mistral 7b window 4096 decode b1 at 5000", 128, 32, 8, 8192, 1, {{0, 4999, 1}}, 4096},
      {"window 500 long decode gqa4 at 3999", 128, 8, 2, 4096, 1, {{0, 3999, 1}}, 500},
      {"window 33 decode b5 gqa8", 128, 16, 2, 600, 5, {}, 33},
      {"window 37 hd256 decode b3", 256, 2, 1, 300, 3, {}, 37},
      {"window 70 prefill 150 after 40 hd256 gqa4", 256, 4, 1, 512, 1, {{0, 40, 150}}, 70},
      {"window 19 hd32 prefill 40 rows on the decode path", 32, 4, 2, 256, 1, {{0, 100, 40}}, 19},
      {"window 1000 beyond every row hd32", 32, 4, 2, 300, 3, {}, 1000},
  };
  return cases;
}

TEST(ModelOps, CausalAttentionWithSlidingWindowMatchesFloat64Reference) {
  KQ_REQUIRE_GPU();
  expect_attention_matches_reference(windowed_attn_cases());
}

/// Attention logit softcapping (Gemma 2: cap · tanh(score / cap)), scores scaled up so that tanh bends them: every
/// path, with windows, GQA, head_dim 256, a prefill chunk after cached keys and a long decode split over a cluster.
TEST(ModelOps, CausalAttentionWithSoftcapMatchesFloat64Reference) {
  KQ_REQUIRE_GPU();
  const std::vector<AttnCase> cases = {
      {"softcap 2 decode b3 hd256 gqa2 window 37", 256, 4, 2, 300, 3, {}, 37, 2.0f, 8.0f},
      {"softcap 2 prefill 130 after 20 hd256", 256, 8, 4, 512, 1, {{0, 20, 130}}, 0, 2.0f, 8.0f},
      {"softcap 3 prefill 130 after 300 hd128 window 100", 128, 8, 2, 1024, 1, {{0, 300, 130}}, 100, 3.0f, 8.0f},
      {"softcap 5 long decode gqa4 hd128", 128, 8, 2, 4096, 1, {{0, 3999, 1}}, 0, 5.0f, 8.0f},
      {"softcap 50 (gemma 2's) hd64 mixed sequences", 64, 6, 2, 1000, 3, {{1, 10, 40}, {0, 0, 30}, {2, 800, 1}}, 0,
       50.0f, 8.0f},
      // Caps far above any score (config.json allows up to float32's largest) bend nothing: no overflow to NaN.
      {"softcap 1e30 prefill 40 after 9 hd128", 128, 8, 2, 256, 1, {{0, 9, 40}}, 0, 1e30f, 8.0f},
      {"softcap FLT_MAX decode b2 hd64", 64, 4, 2, 300, 2, {}, 0, FLT_MAX, 8.0f},
  };
  // The cap changes the result well beyond the tolerance (else the test could not tell it was applied).
  Rng r;
  for (const AttnCase& ac : cases) {
    if (ac.softcap >= 50) continue;  // Gemma 2's cap barely bends these scores: checked for agreement only
    AttnSetup st(r, ac);
    const std::vector<double> capped = st.reference();
    EXPECT_GT(rel_l2(st.reference(0), std::vector<float>(capped.begin(), capped.end())), 20 * kAttention) << ac.name;
  }
  expect_attention_matches_reference(cases);
  // A negative or non-finite cap is refused.
  AttnSetup st(r, cases[0]);
  auto dout = poisoned<uint16_t>(size_t(st.n * st.ldo));
  for (float bad : {-1.0f, std::nanf(""), INFINITY}) {
    st.c.softcap = bad;
    EXPECT_THROW(st.launch(dout.data(), cuda::AttentionPath::Auto, nullptr), InvalidArgument) << bad;
  }
}

// A windowed decode step captured in a CUDA graph (for the cache capacity, as the CUDA backend captures decode
// steps) replays to the direct launch's outputs.
TEST(ModelOps, WindowedAttentionReplaysInCudaGraph) {
  KQ_REQUIRE_GPU();
  Rng r;
  cudaStream_t stream;
  KQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (size_t ci : {size_t(4), size_t(6)}) {  // split decode b1, GQA batch decode
    const AttnCase& ac = windowed_attn_cases()[ci];
    SCOPED_TRACE(ac.name + " seed=" + std::to_string(r.seed));
    AttnSetup st(r, ac);
    auto direct = poisoned<uint16_t>(size_t(st.n * st.ldo)), g_out = poisoned<uint16_t>(size_t(st.n * st.ldo));
    st.launch(direct.data(), cuda::AttentionPath::Decode, stream, /*at_capacity=*/true);
    KQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    KQ_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    st.launch(g_out.data(), cuda::AttentionPath::Decode, stream, /*at_capacity=*/true);
    KQ_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    KQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    KQ_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    KQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(g_out.download() == direct.download());
    const auto ref = st.reference();
    EXPECT_LE(rel_l2(ref, bf16_matrix(g_out.download(), size_t(st.n), size_t(ac.qh) * size_t(ac.hd),
                                      size_t(st.ldo))),
              kAttention);
    KQ_CUDA_CHECK(cudaGraphExecDestroy(exec));
    KQ_CUDA_CHECK(cudaGraphDestroy(graph));
  }
  KQ_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(ModelOps, AttentionAndNormReplayInCudaGraph) {
  KQ_REQUIRE_GPU();
  Rng r;
  cudaStream_t stream;
  KQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (size_t ci : {size_t(0), size_t(1), size_t(3)}) {  // split decode, GQA batch decode, prefill
    const AttnCase& ac = attn_cases()[ci];
    SCOPED_TRACE(ac.name + " seed=" + std::to_string(r.seed));
    AttnSetup st(r, ac);
    const int64_t d = int64_t(ac.qh) * ac.hd;  // the norm reads the attention output as its residual input
    const auto x0 = random_f32(r, size_t(st.n * d), -1, 1);
    const auto w = random_f32(r, size_t(d), 0.5, 1.5);
    auto dw = up(w);
    auto dx = up(x0);
    auto direct = poisoned<uint16_t>(size_t(st.n * st.ldo)), nd = poisoned<uint16_t>(size_t(st.n * d));
    st.launch(direct.data(), cuda::AttentionPath::Auto, stream);
    cuda::rms_norm(dx.data(), direct.data(), st.ldo, dw.data(), 1e-6f, nd.data(), d, st.n, d, stream);
    KQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    const auto want_attn = direct.download(), want_norm = nd.download();

    dx.upload(x0);
    auto g_out = poisoned<uint16_t>(size_t(st.n * st.ldo)), g_norm = poisoned<uint16_t>(size_t(st.n * d));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    KQ_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    st.launch(g_out.data(), cuda::AttentionPath::Auto, stream);
    cuda::rms_norm(dx.data(), g_out.data(), st.ldo, dw.data(), 1e-6f, g_norm.data(), d, st.n, d, stream);
    KQ_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    KQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    KQ_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    KQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(g_out.download() == want_attn);
    EXPECT_TRUE(g_norm.download() == want_norm);
    KQ_CUDA_CHECK(cudaGraphExecDestroy(exec));
    KQ_CUDA_CHECK(cudaGraphDestroy(graph));
  }
  KQ_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace kq::testing
#endif  // KQ_WITH_CUDA
