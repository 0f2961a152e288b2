#include "kernels/cuda/w8a8.hpp"

#include <cmath>
#include <vector>

#include "kernels/cuda/fp8_gemv.hpp"
#include "kernels/cuda/gemm_lt.hpp"
#include "kernels/cuda/w8a8_kernels.hpp"
#include "kq/error.hpp"

namespace kq::cuda {
namespace {

constexpr int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

template <class Code>
W8Weight<Code> upload_w8(const char* what, const Code* codes, const float* scales, bool per_channel, int64_t N,
                         int64_t K) {
  if (N <= 0 || K <= 0) raise<InvalidArgument>("{}: weight shape [{}, {}] is empty", what, N, K);
  if (!codes || !scales) raise<InvalidArgument>("{}: null codes or scales", what);
  W8Weight<Code> w;
  w.N = N;
  w.K = K;
  w.N_pad = round_up(N, 16);
  w.K_pad = round_up(K, 128);
  w.per_channel = per_channel;
  std::vector<Code> padded(size_t(w.N_pad * w.K_pad), Code(0));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) padded[size_t(n * w.K_pad + k)] = codes[n * K + k];
  std::vector<float> s(size_t(w.N_pad), 1.0f);
  for (int64_t n = 0; n < N; ++n) {
    const float v = scales[per_channel ? n : 0];
    if (!std::isfinite(v) || v < 0.0f)
      raise<InvalidArgument>("{}: scale of output channel {} is {} (must be finite and >= 0)", what, n, v);
    s[size_t(n)] = v;
  }
  w.codes.upload(padded);
  w.scale.upload(s);
  return w;
}

void check_call(const char* op, int64_t M, int64_t ldx, int64_t K, int64_t ldy, int64_t N) {
  if (M <= 0) raise<InvalidArgument>("{}: M = {} tokens (must be >= 1)", op, M);
  if (ldx < K || ldy < N)
    raise<InvalidArgument>("{}: row strides ldx={} / ldy={} smaller than K={} / N={}", op, ldx, ldy, K, N);
}

}  // namespace

Fp8Weight upload_fp8_weight(const uint8_t* codes_host, const float* scales_host, bool per_channel, int64_t N,
                            int64_t K) {
  return upload_w8("upload_fp8_weight", codes_host, scales_host, per_channel, N, K);
}

Int8Weight upload_int8_weight(const int8_t* codes_host, const float* scales_host, bool per_channel, int64_t N,
                              int64_t K) {
  return upload_w8("upload_int8_weight", codes_host, scales_host, per_channel, N, K);
}

void fp8_w8a8_linear(GpuContext& ctx, const Fp8Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                     int64_t ldy, Fp8Path path) {
  check_call("fp8_w8a8_linear", M, ldx, w.K, ldy, w.N);
  const DeviceQuery& dev = ctx.device();
  if (dev.cc_major * 10 + dev.cc_minor < 89)
    raise<Unsupported>("fp8_w8a8_linear: {} (cc {}.{}) has no FP8 tensor cores (cc >= 8.9 needed)", dev.name,
                       dev.cc_major, dev.cc_minor);
  if (path == Fp8Path::Gemv && M > kW8GemvMaxM)
    raise<InvalidArgument>("fp8_w8a8_linear: the decode GEMV takes M <= {} tokens, got {}", kW8GemvMaxM, M);
  const bool gemv = path == Fp8Path::Gemv || (path == Fp8Path::Auto && M <= kW8GemvMaxM);
  const int64_t M_pad = gemv ? M : round_up(M, 16);
  const QuantizedInput& pre = ctx.quantized_input();
  if (gemv && pre.matches(x, M, w.K, w.K_pad, ActCode::E4M3)) {  // quantized by the producing kernel
    fp8_gemv(static_cast<const uint8_t*>(pre.q), pre.scale, w.codes.data(), w.scale.data(), w.K_pad, y, ldy,
             M, w.N, ctx.stream());
    return;
  }
  auto* q = static_cast<uint8_t*>(ctx.scratch(Scratch::ActQ, size_t(M_pad * w.K_pad)));
  auto* sx = static_cast<float*>(ctx.scratch(Scratch::ActScale, size_t(M_pad) * sizeof(float)));
  quantize_rows_fp8(x, ldx, M, w.K, q, w.K_pad, M_pad, sx, ctx.stream());
  if (gemv) {
    fp8_gemv(q, sx, w.codes.data(), w.scale.data(), w.K_pad, y, ldy, M, w.N, ctx.stream());
    return;
  }
  // cuBLASLt runs on the padded problem [M_pad, N_pad] (K_pad is a multiple of 16).
  const bool direct = M_pad == M && w.N_pad == w.N && ldy == w.N;
  uint16_t* d = y;
  float* d32 = nullptr;
  bool fused = path == Fp8Path::Fused;
  if (path == Fp8Path::Auto) {
    uint16_t* probe = direct ? y : static_cast<uint16_t*>(ctx.scratch(Scratch::GemmOut, size_t(M_pad * w.N_pad) * 2));
    fused = gemm_fp8_rowwise_supported(ctx, q, w.K_pad, w.codes.data(), w.K_pad, probe, w.N_pad, M_pad, w.N_pad,
                                       w.K_pad, w.scale.data(), sx);
  }
  if (fused) {
    if (!direct) d = static_cast<uint16_t*>(ctx.scratch(Scratch::GemmOut, size_t(M_pad * w.N_pad) * 2));
    gemm_fp8(ctx, q, w.K_pad, w.codes.data(), w.K_pad, d, w.N_pad, M_pad, w.N_pad, w.K_pad, Fp8Scaling::Rowwise,
             w.scale.data(), sx);
    if (!direct)
      KQ_CUDA_CHECK(cudaMemcpy2DAsync(y, size_t(ldy) * 2, d, size_t(w.N_pad) * 2, size_t(w.N) * 2, size_t(M),
                                      cudaMemcpyDeviceToDevice, ctx.stream()));
    return;
  }
  d32 = static_cast<float*>(ctx.scratch(Scratch::GemmOut, size_t(M_pad * w.N_pad) * sizeof(float)));
  gemm_fp8_f32(ctx, q, w.K_pad, w.codes.data(), w.K_pad, d32, w.N_pad, M_pad, w.N_pad, w.K_pad);
  scale_rows_cols_to_bf16(d32, w.N_pad, sx, w.scale.data(), y, ldy, M, w.N, ctx.stream());
}

void int8_w8a8_linear(GpuContext& ctx, const Int8Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                      int64_t ldy) {
  check_call("int8_w8a8_linear", M, ldx, w.K, ldy, w.N);
  // Decode: our INT8 GEMV (same codes, same exact INT32 sums as the GEMM), on M rows; else M padded to 16.
  const bool gemv = M <= kW8GemvMaxM && ctx.device().cc_major >= 8;
  const int64_t M_pad = gemv ? M : round_up(M, 16);
  const QuantizedInput& pre = ctx.quantized_input();
  if (gemv && pre.matches(x, M, w.K, w.K_pad, ActCode::Int8)) {  // quantized by the producing kernel
    int8_gemv(static_cast<const int8_t*>(pre.q), pre.scale, w.codes.data(), w.scale.data(), w.K_pad, y, ldy,
              M, w.N, ctx.stream());
    return;
  }
  auto* q = static_cast<int8_t*>(ctx.scratch(Scratch::ActQ, size_t(M_pad * w.K_pad)));
  auto* sx = static_cast<float*>(ctx.scratch(Scratch::ActScale, size_t(M_pad) * sizeof(float)));
  quantize_rows_int8(x, ldx, M, w.K, q, w.K_pad, M_pad, sx, ctx.stream());
  if (gemv) {
    int8_gemv(q, sx, w.codes.data(), w.scale.data(), w.K_pad, y, ldy, M, w.N, ctx.stream());
    return;
  }
  auto* d = static_cast<int32_t*>(ctx.scratch(Scratch::GemmOut, size_t(M_pad * w.N_pad) * sizeof(int32_t)));
  gemm_int8(ctx, q, w.K_pad, w.codes.data(), w.K_pad, d, w.N_pad, M_pad, w.N_pad, w.K_pad);
  scale_rows_cols_to_bf16(d, w.N_pad, sx, w.scale.data(), y, ldy, M, w.N, ctx.stream());
}

}  // namespace kq::cuda
