#include "kernels/cuda/w4a16.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gemm_lt.hpp"
#include "kernels/cuda/w4a16_launch.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"

namespace kq::cuda {

const char* w4_format_name(W4Format f) {
  switch (f) {
    case W4Format::NF4: return "nf4";
    case W4Format::FP4: return "fp4";
    case W4Format::INT4: return "int4";
    case W4Format::INT4Asym: return "int4-asym";
    case W4Format::FP4Bnb: return "fp4-bnb";
  }
  return "?";
}

std::array<float, 16> w4_codebook(W4Format f) {
  switch (f) {
    case W4Format::NF4:
      // QLoRA (Dettmers et al. 2023), Appendix E: the 16 NormalFloat4 values.
      return {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
              -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
              0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
              0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
    case W4Format::FP4:
      // OCP Microscaling Formats (MX) v1.0, E2M1.
      return {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    case W4Format::INT4:  // offset binary: code c means c - 8 (src/formats/int4.hpp)
      return {-8.f, -7.f, -6.f, -5.f, -4.f, -3.f, -2.f, -1.f, 0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f};
    case W4Format::INT4Asym:
      return {0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 9.f, 10.f, 11.f, 12.f, 13.f, 14.f, 15.f};
    case W4Format::FP4Bnb:
      // bitsandbytes' FP4 (functional.py get_4bit_type("fp4"), before its division by 12), in code order:
      // bit 3 the sign; every value exact in BF16.
      return {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f,
              -0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};
  }
  return {};
}

int64_t w4_code_position(int64_t k) {
  const int64_t r = k & 127;
  return (k & ~int64_t(127)) | ((r >> 2) & 3) << 5 | (r >> 4) << 2 | (r & 3);
}

W4Weight upload_w4_weight(W4Format format, int64_t N, int64_t K, int block, const uint8_t* codes,
                          const float* scales, const float* zeros) {
  const char* name = w4_format_name(format);
  if (N <= 0 || K <= 0) raise<InvalidArgument>("upload_w4_weight ({}): weight shape [{}, {}] is empty", name, N, K);
  if (block < 32 || block > 256 || !std::has_single_bit(unsigned(block)))
    raise<InvalidArgument>("upload_w4_weight ({}): block size {} is not a power of two in [32, 256]", name, block);
  if (!codes || !scales) raise<InvalidArgument>("upload_w4_weight ({}): null codes or scales", name);
  const bool asym = format == W4Format::INT4Asym;
  if (asym != (zeros != nullptr))
    raise<InvalidArgument>("upload_w4_weight ({}): zero points {} for this format", name,
                           asym ? "are required" : "are not used");
  W4Weight w;
  w.format = format;
  w.N = N;
  w.K = K;
  w.block = block;
  const int64_t tile = std::max<int64_t>(128, block);
  w.K_pad = (K + tile - 1) / tile * tile;
  w.blocks_pad = w.K_pad / block;
  const int64_t nblk = (K + block - 1) / block;  // blocks the caller provides per row
  const int64_t ldq = w.K_pad / 2;

  // Element k goes to position w4_code_position(k) of its row's code stream
  // (the GEMV lane order, see w4a16.hpp). Codebook formats: plain packing
  // (byte j = positions 2j | 2j+1 << 4). INT4: within each 32-bit word of 8
  // positions, nibble j holds position 2j and nibble j+4 position 2j+1 (the
  // GEMV's arithmetic dequantization wants a pair 4 bits apart).
  const bool interleaved = format == W4Format::INT4 || asym;
  std::vector<uint8_t> packed(size_t(N * ldq), 0);
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* row = codes + n * K;
    uint8_t* out = packed.data() + n * ldq;
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t q = row[k];
      if (q > 15)
        raise<InvalidArgument>("upload_w4_weight ({}): code {} at [{}, {}] is not a 4-bit value", name, int(q), n, k);
      const uint8_t u = q;
      const int64_t pos = w4_code_position(k);
      if (interleaved) {
        const int64_t e = pos & 7, nib = (e >> 1) + (e & 1) * 4;
        out[(pos >> 3) * 4 + (nib >> 1)] |= uint8_t(u << (4 * (nib & 1)));
      } else {
        out[pos >> 1] |= uint8_t(u << (4 * (pos & 1)));
      }
    }
  }
  auto to_bf16 = [&](const float* src, const char* what) {
    // One spare element: the GEMV fetches scales as aligned 4-byte words.
    std::vector<uint16_t> out(size_t(N * w.blocks_pad) + 1, 0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < nblk; ++b) {
        const float v = src[n * nblk + b];
        if (!std::isfinite(v))
          raise<InvalidArgument>("upload_w4_weight ({}): {} of row {} block {} is not finite", name, what, n, b);
        out[size_t(n * w.blocks_pad + b)] = f32_to_bf16(v);
      }
    return out;
  };
  if (asym)
    for (int64_t i = 0; i < N * nblk; ++i)
      if (!(zeros[i] >= 0.0f && zeros[i] <= 15.0f && zeros[i] == std::nearbyint(zeros[i])))
        raise<InvalidArgument>("upload_w4_weight ({}): zero point {} of row {} block {} is not an integer in [0, 15]",
                               name, zeros[i], i / nblk, i % nblk);
  w.codes.upload(packed);
  w.scales.upload(to_bf16(scales, "scale"));
  if (asym) w.zeros.upload(to_bf16(zeros, "zero point"));
  return w;
}

W4Weight upload_w4_weight_packed(W4Format format, int64_t N, int64_t K, int block, const uint8_t* packed,
                                 const float* scales, const uint8_t* zeros) {
  if (N <= 0 || K <= 0)
    raise<InvalidArgument>("upload_w4_weight_packed ({}): weight shape [{}, {}] is empty", w4_format_name(format), N, K);
  if (!packed) raise<InvalidArgument>("upload_w4_weight_packed ({}): null codes", w4_format_name(format));
  const int64_t row_bytes = (K + 1) / 2;
  std::vector<uint8_t> codes(size_t(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      codes[size_t(n * K + k)] = uint8_t((packed[n * row_bytes + k / 2] >> (4 * (k & 1))) & 0xF);
  std::vector<float> z;
  if (zeros) {
    const int64_t nblk = (K + block - 1) / std::max(block, 1);
    z.assign(zeros, zeros + N * nblk);
  }
  return upload_w4_weight(format, N, K, block, codes.data(), scales, zeros ? z.data() : nullptr);
}

void set_w4_input_scale(W4Weight& w, const float* scale) {
  if (!scale) raise<InvalidArgument>("set_w4_input_scale: null scale");
  for (int64_t k = 0; k < w.K; ++k)
    if (!(std::isfinite(scale[k]) && scale[k] > 0.0f))
      raise<InvalidArgument>("set_w4_input_scale: input scale {} at k = {} is not finite and > 0", scale[k], k);
  w.x_scale.upload(scale, size_t(w.K));
}

void w4a16_gemv(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                cudaStream_t stream, W4GemvTuning tuning) {
  if (M < 1 || M > 16) raise<InvalidArgument>("w4a16_gemv: M = {} tokens (the decode GEMV takes 1..16)", M);
  if (ldx < w.K || ldy < w.N)
    raise<InvalidArgument>("w4a16_gemv: row strides ldx={} / ldy={} smaller than K={} / N={}", ldx, ldy, w.K, w.N);
  if (!w.x_scale.empty()) {
    if (M == 1 && w4a16_gemv_stream_launch(w, x, y, stream, tuning, nullptr, w.x_scale.data())) return;
    raise<InvalidArgument>("w4a16_gemv: a weight with input scales (AWQ) at M = {} needs w4a16_linear", M);
  }
  w4a16_gemv_launch(w, x, ldx, M, y, ldy, stream, tuning);
}

bool w4a16_gemv_swiglu(const W4Weight& w, const uint16_t* gate, const uint16_t* up, uint16_t* y,
                       cudaStream_t stream) {
  if (!gate || !up || !y) raise<InvalidArgument>("w4a16_gemv_swiglu: null gate, up or y");
  return w4a16_gemv_stream_launch(w, gate, y, stream, W4GemvTuning{0, 0, 2}, up,
                                  w.x_scale.empty() ? nullptr : w.x_scale.data());
}

bool w4a16_gemv_rms_norm(const W4Weight& w, const W4RmsNormInput& in, uint16_t* y, cudaStream_t stream) {
  if (!in.residual || !in.weight || !y) raise<InvalidArgument>("w4a16_gemv_rms_norm: null residual, weight or y");
  if (in.add && !in.counter) raise<InvalidArgument>("w4a16_gemv_rms_norm: a residual add needs a counter");
  return w4a16_gemv_stream_launch(w, nullptr, y, stream, W4GemvTuning{0, 0, 2}, nullptr,
                                  w.x_scale.empty() ? nullptr : w.x_scale.data(), &in);
}

void w4a16_gemm(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                cudaStream_t stream) {
  if (M < 1) raise<InvalidArgument>("w4a16_gemm: M = {} tokens (must be >= 1)", M);
  if (ldx < w.K || ldy < w.N)
    raise<InvalidArgument>("w4a16_gemm: row strides ldx={} / ldy={} smaller than K={} / N={}", ldx, ldy, w.K, w.N);
  if (ldx % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0)
    raise<InvalidArgument>("w4a16_gemm: activation rows must be 16-byte aligned (ldx = {}, a multiple of 8)", ldx);
  if (!w.x_scale.empty()) raise<InvalidArgument>("w4a16_gemm: a weight with input scales (AWQ) needs w4a16_linear");
  w4a16_gemm_launch(w, x, ldx, M, y, ldy, stream);
}

void w4_dequantize_bf16(const W4Weight& w, uint16_t* out, int64_t ldo, cudaStream_t stream) {
  if (ldo < w.K) raise<InvalidArgument>("w4_dequantize_bf16: row stride {} smaller than K={}", ldo, w.K);
  w4_dequantize_launch(w, out, ldo, stream);
}

void w4a16_linear(GpuContext& ctx, const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                  int64_t ldy, W4PrefillPath path) {
  if (M < 1) raise<InvalidArgument>("w4a16_linear: M = {} tokens (must be >= 1)", M);
  if (ldx < w.K || ldy < w.N)
    raise<InvalidArgument>("w4a16_linear: row strides ldx={} / ldy={} smaller than K={} / N={}", ldx, ldy, w.K, w.N);
  if (path == W4PrefillPath::Auto) path = M <= kW4FusedMaxM ? W4PrefillPath::Fused : W4PrefillPath::DequantGemm;
  if (!w.x_scale.empty()) {
    // Input scales: the streaming GEMV (M = 1) and the dequantization apply
    // them; the batch / split-K GEMVs and the fused GEMM read x ⊙ x_scale from
    // 16-byte-aligned scratch rows.
    if (M == 1 && w4a16_gemv_stream_launch(w, x, y, ctx.stream(), W4GemvTuning{0, 0, 2}, nullptr, w.x_scale.data()))
      return;
    if (M <= kW4GemvMaxM || path == W4PrefillPath::Fused) {
      const int64_t lda = (w.K + 7) / 8 * 8;
      auto* xa = static_cast<uint16_t*>(ctx.scratch(Scratch::Weight, size_t(M * lda) * 2));
      w4_scale_input_launch(x, ldx, M, w.K, w.x_scale.data(), xa, lda, ctx.stream());
      if (M <= kW4GemvMaxM)
        w4a16_gemv_launch(w, xa, lda, M, y, ldy, ctx.stream(), {});
      else
        w4a16_gemm_launch(w, xa, lda, M, y, ldy, ctx.stream());
      return;
    }
  }
  if (M <= kW4GemvMaxM) {
    w4a16_gemv(w, x, ldx, M, y, ldy, ctx.stream());
    return;
  }
  if (path == W4PrefillPath::Fused) {
    if (ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
      w4a16_gemm_launch(w, x, ldx, M, y, ldy, ctx.stream());
      return;
    }
    // Unaligned activation rows: copy into 16-byte-aligned scratch rows first.
    const int64_t lda = (w.K + 7) / 8 * 8;
    auto* xa = static_cast<uint16_t*>(ctx.scratch(Scratch::Weight, size_t(M * lda) * 2));
    KQ_CUDA_CHECK(cudaMemcpy2DAsync(xa, size_t(lda) * 2, x, size_t(ldx) * 2, size_t(w.K) * 2, size_t(M),
                                    cudaMemcpyDeviceToDevice, ctx.stream()));
    w4a16_gemm_launch(w, xa, lda, M, y, ldy, ctx.stream());
    return;
  }
  // Dequantize once into scratch (row stride rounded to 8 elements for
  // 16-byte-aligned rows), then the BF16 tensor-core GEMM.
  const int64_t ldw = (w.K + 7) / 8 * 8;
  auto* wb = static_cast<uint16_t*>(ctx.scratch(Scratch::Weight, size_t(w.N * ldw) * 2));
  w4_dequantize_bf16(w, wb, ldw, ctx.stream());
  gemm_bf16(ctx, x, ldx, wb, ldw, y, ldy, M, w.N, w.K);
}

}  // namespace kq::cuda
