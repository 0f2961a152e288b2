// Per-token activation quantizers (FP8 E4M3, INT8) against the host reference:
// codes and scales must match exactly, padding must be zero.
#ifdef KQ_WITH_CUDA
#include <gtest/gtest.h>

#include "cuda/gpu_test_util.hpp"
#include "cuda/host_quant.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/w8a8_kernels.hpp"

namespace kq::testing {
namespace {

using cuda::DeviceBuffer;

/// x [M, ldx] with a wide dynamic range (1 % outliers x100) and, when M > 1,
/// an all-zero last row (which must get scale 1 and codes 0).
std::vector<uint16_t> activations(Rng& r, int64_t M, int64_t K, int64_t ldx) {
  auto x = random_bf16(r, size_t(M * ldx));
  for (auto& v : x)
    if (r.integer(0, 99) == 0) v = f32_to_bf16(bf16f(v) * 100.0f);
  if (M > 1)
    for (int64_t k = 0; k < K; ++k) x[size_t((M - 1) * ldx + k)] = 0;
  return x;
}

template <class Code, class Launch, class Ref>
void check_quantizer(Launch launch, Ref ref) {
  KQ_REQUIRE_GPU();
  Rng r;
  for (const auto& [M, K, ldx, ldq, M_pad] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{1, 7, 7, 128, 1},
                                              {3, 1000, 1003, 1024, 16},
                                              {37, 4096, 4096, 4096, 48},
                                              // register path: 1, 2, 4 and 8 slots; K > 32768 loops again
                                              {1, 4096, 4096, 4096, 1},
                                              {2, 11008, 11008, 11008, 16},
                                              {1, 8200, 8208, 8320, 1},
                                              {3, 20480, 20480, 20480, 16},
                                              {1, 32776, 32776, 32896, 1}}) {
    SCOPED_TRACE("M=" + std::to_string(M) + " K=" + std::to_string(K) + " seed=" + std::to_string(r.seed));
    const auto x = activations(r, M, K, ldx);
    DeviceBuffer<uint16_t> dx;
    dx.upload(x);
    DeviceBuffer<Code> dq(size_t(M_pad * ldq));
    DeviceBuffer<float> ds{size_t(M_pad)};
    dq.fill_bytes(0x5A);
    ds.fill_bytes(0xFF);
    launch(dx.data(), ldx, M, K, dq.data(), ldq, M_pad, ds.data());
    KQ_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<Code> q;
    std::vector<float> s;
    ref(x, M, K, ldx, q, s);
    const auto gq = dq.download();
    const auto gs = ds.download();
    int64_t bad_codes = 0, bad_pad = 0, bad_scales = 0;
    for (int64_t m = 0; m < M_pad; ++m) {
      const float want_s = m < M ? s[size_t(m)] : 0.0f;
      bad_scales += !(gs[size_t(m)] == want_s);
      for (int64_t k = 0; k < ldq; ++k) {
        const Code g = gq[size_t(m * ldq + k)];
        if (m < M && k < K)
          bad_codes += g != q[size_t(m * K + k)];
        else
          bad_pad += g != Code(0);
      }
    }
    EXPECT_EQ(bad_codes, 0);
    EXPECT_EQ(bad_pad, 0);
    EXPECT_EQ(bad_scales, 0);
    if (M > 1) {
      EXPECT_EQ(gs[size_t(M - 1)], 1.0f) << "an all-zero row gets scale 1";
    }
  }
}

TEST(QuantizeActivations, Fp8PerTokenMatchesHostExactly) {
  check_quantizer<uint8_t>(
      [](const uint16_t* x, int64_t ldx, int64_t M, int64_t K, uint8_t* q, int64_t ldq, int64_t M_pad, float* s) {
        cuda::quantize_rows_fp8(x, ldx, M, K, q, ldq, M_pad, s, nullptr);
      },
      quantize_rows_fp8_ref);
}

TEST(QuantizeActivations, Int8PerTokenMatchesHostExactly) {
  check_quantizer<int8_t>(
      [](const uint16_t* x, int64_t ldx, int64_t M, int64_t K, int8_t* q, int64_t ldq, int64_t M_pad, float* s) {
        cuda::quantize_rows_int8(x, ldx, M, K, q, ldq, M_pad, s, nullptr);
      },
      quantize_rows_int8_ref);
}

}  // namespace
}  // namespace kq::testing
#endif  // KQ_WITH_CUDA
