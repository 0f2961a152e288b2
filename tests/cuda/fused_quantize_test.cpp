// The kernels that quantize the activations they produce (rms_norm_quantize,
// swiglu_quantize: a decode step's norm / SwiGLU feeding a W8A8 linear)
// against the two-kernel path they replace (rms_norm / swiglu, then
// quantize_rows_fp8 / _int8, themselves checked against host references in
// quantize_act_test.cpp and model_ops_test.cpp): the BF16 outputs, the
// residual, the codes (padding included) and the scales must be the same bits.
// Outputs are poisoned before each call.
#ifdef KQ_WITH_CUDA
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/device_test_util.hpp"
#include "cuda/gpu_test_util.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/model_ops.hpp"
#include "kernels/cuda/w8a8_kernels.hpp"
#include "kq/error.hpp"

namespace kq::testing {
namespace {

using cuda::ActCode;
using cuda::DeviceBuffer;

/// The stand-alone quantizer of `code` on x [n, ld] (K columns) into q [n, ldq], scale [n].
void quantize(ActCode code, const uint16_t* x, int64_t ld, int64_t n, int64_t K, void* q, int64_t ldq,
              float* scale) {
  if (code == ActCode::E4M3)
    cuda::quantize_rows_fp8(x, ld, n, K, static_cast<uint8_t*>(q), ldq, n, scale, nullptr);
  else
    cuda::quantize_rows_int8(x, ld, n, K, static_cast<int8_t*>(q), ldq, n, scale, nullptr);
}

const char* name(ActCode c) { return c == ActCode::E4M3 ? "e4m3" : "int8"; }

TEST(FusedQuantize, RmsNormQuantizeEqualsNormThenQuantizer) {
  KQ_REQUIRE_GPU();
  Rng r;
  struct Case {
    int64_t n, d, ld, ldq;
    bool add;
  };
  // Register slots 1, 2, 4 and 8 (d <= 2048, 4096, 8192, 16384), a row with
  // an outlier, padded codes (ldq > d), strided rows.
  for (const Case& c :
       {Case{1, 4096, 4096, 4096, true}, Case{3, 1000, 1004, 1024, true}, Case{2, 5120, 5120, 5120, false},
        Case{1, 11008, 11008, 11008, true}, Case{8, 16384, 16384, 16384, true}, Case{1, 16, 16, 128, true}})
    for (const ActCode code : {ActCode::E4M3, ActCode::Int8}) {
      SCOPED_TRACE("n=" + std::to_string(c.n) + " d=" + std::to_string(c.d) + " " + name(code) +
                   " seed=" + std::to_string(r.seed));
      std::vector<float> x(size_t(c.n * c.d)), w(size_t(c.d));
      for (auto& v : x) v = float(r.uniform(-2.0, 2.0));
      for (auto& v : w) v = float(r.uniform(0.5, 1.5));
      x[size_t(r.integer(0, int(x.size()) - 1))] = 80.0f;  // an outlier sets one row's scale
      const auto add = random_bf16(r, size_t(c.n * c.ld));
      auto dw = up(w);
      auto dadd = up(add);
      auto x1 = up(x), x2 = up(x);
      auto out1 = poisoned<uint16_t>(size_t(c.n * c.ld)), out2 = poisoned<uint16_t>(size_t(c.n * c.ld));
      auto q1 = poisoned<uint8_t>(size_t(c.n * c.ldq)), q2 = poisoned<uint8_t>(size_t(c.n * c.ldq));
      auto s1 = poisoned<float>(size_t(c.n)), s2 = poisoned<float>(size_t(c.n));
      const uint16_t* a = c.add ? dadd.data() : nullptr;
      cuda::rms_norm(x1.data(), a, c.ld, dw.data(), 1e-5f, out1.data(), c.ld, c.n, c.d, nullptr);
      quantize(code, out1.data(), c.ld, c.n, c.d, q1.data(), c.ldq, s1.data());
      ASSERT_TRUE(cuda::rms_norm_quantize(x2.data(), a, c.ld, dw.data(), 1e-5f, out2.data(), c.ld, c.n, c.d,
                                          code, q2.data(), c.ldq, s2.data(), nullptr));
      KQ_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_EQ(x1.download(), x2.download());
      EXPECT_EQ(out1.download(), out2.download());
      EXPECT_EQ(q1.download(), q2.download());
      EXPECT_EQ(s1.download(), s2.download());
    }
}

TEST(FusedQuantize, SwigluQuantizeEqualsSwigluThenQuantizer) {
  KQ_REQUIRE_GPU();
  Rng r;
  struct Case {
    int64_t n, f, ld, ldq;
  };
  // 1..4 register slots (f <= 4096, 8192, 12288, 16384), padded codes, strided rows.
  for (const Case& c : {Case{1, 11008, 11008, 11008}, Case{3, 1000, 1008, 1024}, Case{2, 8192, 8200, 8192},
                        Case{1, 16384, 16384, 16384}, Case{8, 64, 64, 128}})
    for (const ActCode code : {ActCode::E4M3, ActCode::Int8}) {
      SCOPED_TRACE("n=" + std::to_string(c.n) + " f=" + std::to_string(c.f) + " " + name(code) +
                   " seed=" + std::to_string(r.seed));
      const auto gate = random_bf16(r, size_t(c.n * c.ld), 2.0),
                 upv = random_bf16(r, size_t(c.n * c.ld), 2.0);
      auto g1 = up(gate), g2 = up(gate), du = up(upv);
      auto q1 = poisoned<uint8_t>(size_t(c.n * c.ldq)), q2 = poisoned<uint8_t>(size_t(c.n * c.ldq));
      auto s1 = poisoned<float>(size_t(c.n)), s2 = poisoned<float>(size_t(c.n));
      // In place, as the backend runs it (out = gate).
      cuda::swiglu(g1.data(), c.ld, du.data(), c.ld, g1.data(), c.ld, c.n, c.f, nullptr);
      quantize(code, g1.data(), c.ld, c.n, c.f, q1.data(), c.ldq, s1.data());
      ASSERT_TRUE(cuda::swiglu_quantize(g2.data(), c.ld, du.data(), c.ld, g2.data(), c.ld, c.n, c.f, code,
                                        q2.data(), c.ldq, s2.data(), nullptr));
      KQ_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_EQ(g1.download(), g2.download());  // the gate's padding columns keep their values too
      EXPECT_EQ(q1.download(), q2.download());
      EXPECT_EQ(s1.download(), s2.download());
    }
}

TEST(FusedQuantize, ShapesOutsideTheRegisterKernelsLaunchNothing) {
  KQ_REQUIRE_GPU();
  auto x = poisoned<float>(64), w = poisoned<float>(64);
  auto b = poisoned<uint16_t>(64 * 40);
  auto q = poisoned<uint8_t>(256);
  auto s = poisoned<float>(2);
  // f not a multiple of 8; ldq shorter than the row; an odd norm width; code None.
  EXPECT_FALSE(cuda::swiglu_quantize(b.data(), 20, b.data(), 20, b.data(), 20, 1, 12, ActCode::E4M3, q.data(),
                                     128, s.data(), nullptr));
  EXPECT_FALSE(cuda::swiglu_quantize(b.data(), 64, b.data(), 64, b.data(), 64, 1, 64, ActCode::Int8, q.data(),
                                     32, s.data(), nullptr));
  EXPECT_FALSE(cuda::rms_norm_quantize(x.data(), nullptr, 0, w.data(), 1e-5f, b.data(), 64, 1, 63,
                                       ActCode::E4M3, q.data(), 128, s.data(), nullptr));
  EXPECT_FALSE(cuda::rms_norm_quantize(x.data(), nullptr, 0, w.data(), 1e-5f, b.data(), 64, 1, 64,
                                       ActCode::None, q.data(), 128, s.data(), nullptr));
  EXPECT_THROW(cuda::rms_norm_quantize(x.data(), nullptr, 0, w.data(), 1e-5f, b.data(), 64, 1, 64,
                                       ActCode::E4M3, nullptr, 128, s.data(), nullptr),
               InvalidArgument);
  KQ_CUDA_CHECK(cudaDeviceSynchronize());
  for (const uint8_t v : q.download()) ASSERT_EQ(v, 0xFF);
  for (const uint16_t v : b.download()) ASSERT_EQ(v, 0xFFFF);
}

}  // namespace
}  // namespace kq::testing
#endif
