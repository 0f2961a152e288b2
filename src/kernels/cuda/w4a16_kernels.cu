// W4A16 kernels: the decode GEMV (mma.sync m16n8k16 BF16, see
// gemv_common.cuh for the warp tile) and the BF16 dequantization for prefill.
//
// GEMV dequantization: the 4-bit codes become BF16 pairs that go straight into
// the mma's A registers, unscaled; block scales (and INT4 zero points) are
// applied to the FP32 partial sums once per block:
//  * NF4 / FP4 (codebooks): a byte -> BF16x2 lookup table in shared memory,
//    one copy per lane (entry stride 256 bytes, lane l reads word l, so the 32
//    lanes always hit 32 different banks). One PRMT builds the byte address
//    (code byte << 8 | lane << 2) and one LDS fetches the pair.
//  * INT4 (arithmetic): interleaved nibbles, so one LOP3 turns two codes u
//    into the exact BF16 pair (128 + u); the offset 128 + zero is removed in
//    FP32 with the activation sums that a second mma (A = ones) provides.
#include <cuda_bf16.h>

#include <algorithm>
#include <array>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_info.hpp"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/w4a16.hpp"
#include "kernels/cuda/w4a16_launch.hpp"

namespace kq::cuda {
namespace {

using gemv::kTileK;

/// How codes become values.
enum class Dq { Lut, Int4Sym, Int4Asym };

constexpr int kLutBytes = 256 * 256;  // 256 entries x 256 bytes (lanes use the first 128)

struct Codebook16 {
  float v[16];
};

struct W4GemvParams {
  const uint8_t* codes;          // [N, ldq]
  int64_t ldq;                   // bytes per row = K_pad / 2
  const __nv_bfloat16* scales;   // [N, lds]
  const __nv_bfloat16* zeros;    // [N, lds] (INT4Asym) or null
  int64_t lds;                   // blocks per row
  int block_shift;               // log2(block)
  const uint16_t* x;             // [M, ldx] BF16 bits
  int64_t ldx;
  int64_t K;
  int M;
  bool x_vec;                    // rows 8-byte aligned: ldx % 4 == 0
  __nv_bfloat16* y;              // [M, ldy]
  int64_t ldy;
  int64_t N;
  int k_tiles;                   // K_pad / 128
  float codebook[16];            // Lut only
};

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}


__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// This lane's activations for one 128-k tile: for step s (0..7), token g's
/// BF16 pairs at k = kb + 16s + 4t + {0, 1} (x[2s]) and {2, 3} (x[2s+1]);
/// zeros past K or for g >= M.
__device__ __forceinline__ void load_x(uint32_t (&x)[16], const W4GemvParams& p, int64_t kb, int g, int t) {
  if (g >= p.M) {
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = 0;
    return;
  }
  const uint16_t* xr = p.x + int64_t(g) * p.ldx;
  if (p.x_vec && kb + kTileK <= p.K) {
#pragma unroll
    for (int s = 0; s < 8; ++s) {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(xr + kb + 16 * s + 4 * t));
      x[2 * s] = v.x;
      x[2 * s + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int s = 0; s < 8; ++s)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t k = kb + 16 * s + 4 * t + 2 * h;
        const uint32_t lo = k < p.K ? uint32_t(__ldg(xr + k)) : 0u;
        const uint32_t hi = k + 1 < p.K ? uint32_t(__ldg(xr + k + 1)) : 0u;
        x[2 * s + h] = lo | (hi << 16);
      }
  }
}

/// Pair from byte `i` (0..3, compile-time) of `word` through the lane's LUT column.
__device__ __forceinline__ uint32_t lut_pair(const char* lut, uint32_t lane4, uint32_t word, int i) {
  const uint32_t off = __byte_perm(lane4, word, 0x1100u | uint32_t(4 + i) << 4);  // byte << 8 | lane << 2
  return *reinterpret_cast<const uint32_t*>(lut + off);
}

/// INT4 pair (128 + u_lo, 128 + u_hi) from nibbles 0 and 4 of `bits`.
__device__ __forceinline__ uint32_t int4_pair(uint32_t bits) { return (bits & 0x000F000Fu) | 0x43004300u; }

constexpr uint32_t kOnes = 0x3F803F80u;  // BF16x2 (1, 1)

__device__ __forceinline__ float bf16_bits_to_float(uint32_t b) { return __uint_as_float(b << 16); }

/// One 128-k tile of rows g (w0) and g+8 (w1) for this lane. Device layout:
/// this lane's 16 bytes hold, for step s = 0..7, the 4 codes at
/// k = kb + 16s + 4t + {0..3}, so a step spans 16 contiguous k and never
/// crosses a block. Steps of one block are summed unscaled (codebook values,
/// or 128 + u for INT4), then the block's scale (and zero point, through a
/// ones-mma that sums the activations) is applied in FP32:
///   Σ w x = s · (Σ (128 + u) x − (128 + z) Σ x).
template <int kParts, Dq kDq>
__device__ __forceinline__ void compute_tile(float (&acc)[4], const uint4& w0, const uint4& w1,
                                             const uint32_t (&sc)[kParts][2], const uint32_t (&zc)[kParts][2],
                                             const uint32_t (&x)[16], const char* lut, uint32_t lane4) {
  constexpr int kSteps = 8 / kParts;
#pragma unroll
  for (int part = 0; part < kParts; ++part) {
    float c[4] = {0.f, 0.f, 0.f, 0.f}, o[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int ss = 0; ss < kSteps; ++ss) {
      const int s = part * kSteps + ss;
      const uint32_t q0 = gemv::word(w0, s >> 1), q1 = gemv::word(w1, s >> 1);
      uint32_t a0, a1, a2, a3;
      if constexpr (kDq == Dq::Lut) {
        // Plain packing: the step's 4 codes are bytes 2(s&1), 2(s&1)+1 of the word, low nibble first.
        const int i = 2 * (s & 1);
        a0 = lut_pair(lut, lane4, q0, i);
        a1 = lut_pair(lut, lane4, q1, i);
        a2 = lut_pair(lut, lane4, q0, i + 1);
        a3 = lut_pair(lut, lane4, q1, i + 1);
      } else {
        // Interleaved packing: code e of a word's 8 is in nibble e/2 + 4 (e % 2).
        const int sh = 8 * (s & 1);
        a0 = int4_pair(q0 >> sh);
        a1 = int4_pair(q1 >> sh);
        a2 = int4_pair(q0 >> (sh + 4));
        a3 = int4_pair(q1 >> (sh + 4));
      }
      mma_bf16_16816(c, a0, a1, a2, a3, x[2 * s], x[2 * s + 1]);
      if constexpr (kDq != Dq::Lut) mma_bf16_16816(o, kOnes, kOnes, kOnes, kOnes, x[2 * s], x[2 * s + 1]);
    }
    const float s0 = bf16_bits_to_float(sc[part][0]), s1 = bf16_bits_to_float(sc[part][1]);
    if constexpr (kDq == Dq::Lut) {
      acc[0] = fmaf(s0, c[0], acc[0]);
      acc[1] = fmaf(s0, c[1], acc[1]);
      acc[2] = fmaf(s1, c[2], acc[2]);
      acc[3] = fmaf(s1, c[3], acc[3]);
    } else {
      // 128 + zero point (INT4 symmetric codes are offset binary: zero 8).
      const float b0 = kDq == Dq::Int4Sym ? 136.0f : 128.0f + bf16_bits_to_float(zc[part][0]);
      const float b1 = kDq == Dq::Int4Sym ? 136.0f : 128.0f + bf16_bits_to_float(zc[part][1]);
      acc[0] = fmaf(s0, fmaf(-b0, o[0], c[0]), acc[0]);
      acc[1] = fmaf(s0, fmaf(-b0, o[1], c[1]), acc[1]);
      acc[2] = fmaf(s1, fmaf(-b1, o[2], c[2]), acc[2]);
      acc[3] = fmaf(s1, fmaf(-b1, o[3], c[3]), acc[3]);
    }
  }
}

constexpr size_t smem_bytes(int warps, Dq dq) {
  return size_t(warps) * 4 * 32 * sizeof(float) + (dq == Dq::Lut ? size_t(kLutBytes) : 0);
}

/// kWarps warps split the 128-k tiles of each 16-row group (each warp a
/// contiguous range); a persistent grid walks the row groups. A warp first
/// issues the code and scale loads of kUnroll adjacent tiles, then computes them.
/// kParts = blocks per 128-k tile (1 for block >= 128, 2 for 64, 4 for 32).
template <int kWarps, int kUnroll, int kParts, Dq kDq>
__global__ void __launch_bounds__(kWarps * 32) w4a16_gemv_kernel(const __grid_constant__ W4GemvParams p) {
  extern __shared__ __align__(16) uint32_t smem[];
  float* red = reinterpret_cast<float*>(smem);                  // [kWarps][4][32]
  char* lut = reinterpret_cast<char*>(smem + kWarps * 4 * 32);  // [256][256 bytes]
  if constexpr (kDq == Dq::Lut) {
    uint4* lut4 = reinterpret_cast<uint4*>(lut);
    for (int i = threadIdx.x; i < 256 * 8; i += kWarps * 32) {
      const int b = i >> 3;
      const uint32_t v = pack_bf16x2(p.codebook[b & 15], p.codebook[b >> 4]);
      lut4[b * 16 + (i & 7)] = make_uint4(v, v, v, v);
    }
    __syncthreads();
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) << 2;
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(p.scales);
  const uint16_t* zeros = reinterpret_cast<const uint16_t*>(p.zeros);
  const int groups = int((p.N + 15) / 16);
  // Each warp takes a contiguous range of tiles, so its loads of one row are adjacent.
  const int per_warp = (p.k_tiles + kWarps - 1) / kWarps;
  const int kt_begin = min(warp * per_warp, p.k_tiles), kt_end = min(kt_begin + per_warp, p.k_tiles);
  for (int rg = blockIdx.x; rg < groups; rg += gridDim.x) {
    const int64_t n0 = int64_t(rg) * 16;
    const int64_t r0 = min(n0 + g, p.N - 1), r1 = min(n0 + g + 8, p.N - 1);
    const uint8_t* q0 = p.codes + r0 * p.ldq + 16 * t;
    const uint8_t* q1 = p.codes + r1 * p.ldq + 16 * t;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int kt0 = kt_begin; kt0 < kt_end; kt0 += kUnroll) {
      uint4 w0[kUnroll], w1[kUnroll];
      uint32_t sc[kUnroll][kParts][2], zc[kUnroll][kParts][2];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int kt = kt0 + u;
        if (kt < kt_end) {
          w0[u] = gemv::ld_stream(q0 + int64_t(kt) * (kTileK / 2));
          w1[u] = gemv::ld_stream(q1 + int64_t(kt) * (kTileK / 2));
          const int64_t blk0 = (int64_t(kt) * kTileK) >> p.block_shift;
#pragma unroll
          for (int part = 0; part < kParts; ++part) {
            sc[u][part][0] = scales[r0 * p.lds + blk0 + part];
            sc[u][part][1] = scales[r1 * p.lds + blk0 + part];
            if constexpr (kDq == Dq::Int4Asym) {
              zc[u][part][0] = zeros[r0 * p.lds + blk0 + part];
              zc[u][part][1] = zeros[r1 * p.lds + blk0 + part];
            } else {
              zc[u][part][0] = zc[u][part][1] = 0;
            }
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int kt = kt0 + u;
        if (kt < kt_end) {
          uint32_t x[16];
          load_x(x, p, int64_t(kt) * kTileK, g, t);
          compute_tile<kParts, kDq>(acc, w0[u], w1[u], sc[u], zc[u], x, lut, lane4);
        }
      }
    }
    gemv::reduce_store<kWarps>(acc, red, n0, p.N, p.M, p.y, p.ldy, [](int, int64_t) { return 1.0f; });
  }
}

template <int kWarps, int kParts, Dq kDq>
void launch_gemv(const W4GemvParams& p, cudaStream_t stream) {
  constexpr int kUnroll = 2;
  auto kernel = w4a16_gemv_kernel<kWarps, kUnroll, kParts, kDq>;
  constexpr size_t smem = smem_bytes(kWarps, kDq);
  static const int blocks_per_sm = [&] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    int b = 0;
    KQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, kWarps * 32, smem));
    return std::max(b, 1);
  }();
  const int groups = int((p.N + 15) / 16);
  const int grid = std::min(groups, blocks_per_sm * current_device().multiprocessors);
  kernel<<<grid, kWarps * 32, smem, stream>>>(p);
  KQ_CUDA_CHECK_LAUNCH();
}

template <int kParts, Dq kDq>
void launch_gemv_warps(const W4GemvParams& p, int warps, cudaStream_t stream) {
  if (warps == 16)
    launch_gemv<16, kParts, kDq>(p, stream);
  else if (warps == 8)
    launch_gemv<8, kParts, kDq>(p, stream);
  else
    launch_gemv<4, kParts, kDq>(p, stream);
}

template <Dq kDq>
void launch_gemv_tuned(const W4GemvParams& p, W4GemvTuning tuning, cudaStream_t stream) {
  int warps = tuning.warps;
  if (warps != 4 && warps != 8 && warps != 16) {
    // Enough warps per row group to keep ~32 warps per SM busy, each with at
    // least one unrolled step (2 tiles).
    const int sms = current_device().multiprocessors;
    const int64_t groups = (p.N + 15) / 16;
    const int64_t want = (int64_t(sms) * 32 + groups - 1) / groups;
    warps = want <= 4 ? 4 : (want <= 8 ? 8 : 16);
    while (warps > 4 && p.k_tiles < 2 * warps) warps /= 2;
  }
  const int parts = p.block_shift >= 7 ? 1 : (p.block_shift == 6 ? 2 : 4);
  if (parts == 1)
    launch_gemv_warps<1, kDq>(p, warps, stream);
  else if (parts == 2)
    launch_gemv_warps<2, kDq>(p, warps, stream);
  else
    launch_gemv_warps<4, kDq>(p, warps, stream);
}

/// Position of element k in its row's code stream (see w4_code_position).
__device__ __forceinline__ int64_t w4_position(int64_t k) {
  const int64_t r = k & 127;
  return (k & ~int64_t(127)) | ((r >> 2) & 3) << 5 | (r >> 4) << 2 | (r & 3);
}

/// One output element per thread: BF16((value(code) - zero) * scale) in FP32.
template <Dq kDq>
__global__ void w4_dequant_kernel(const uint8_t* __restrict__ codes, int64_t ldq,
                                  const __nv_bfloat16* __restrict__ scales, const __nv_bfloat16* __restrict__ zeros,
                                  int64_t lds, int block_shift, int64_t K, int64_t N, __nv_bfloat16* __restrict__ out,
                                  int64_t ldo, const __grid_constant__ Codebook16 codebook) {
  __shared__ float cb[16];
  if (threadIdx.x < 16) cb[threadIdx.x] = codebook.v[threadIdx.x];
  __syncthreads();
  const int64_t total = N * K;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / K, k = i - n * K;
    const uint8_t* row = codes + n * ldq;
    const int64_t pos = w4_position(k);
    uint32_t u;
    if constexpr (kDq == Dq::Lut) {
      u = (row[pos >> 1] >> (4 * (pos & 1))) & 15u;
    } else {
      const int e = int(pos & 7), nib = (e >> 1) + (e & 1) * 4;
      u = (row[(pos >> 3) * 4 + (nib >> 1)] >> (4 * (nib & 1))) & 15u;
    }
    const int64_t blk = k >> block_shift;
    const float s = __bfloat162float(scales[n * lds + blk]);
    float v;
    if constexpr (kDq == Dq::Lut)
      v = cb[u];
    else if constexpr (kDq == Dq::Int4Sym)
      v = float(u) - 8.0f;
    else
      v = float(u) - __bfloat162float(zeros[n * lds + blk]);
    out[n * ldo + k] = __float2bfloat16_rn(v * s);
  }
}

Dq dq_of(W4Format f) {
  switch (f) {
    case W4Format::INT4: return Dq::Int4Sym;
    case W4Format::INT4Asym: return Dq::Int4Asym;
    default: return Dq::Lut;
  }
}

}  // namespace

void w4a16_gemv_launch(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                       cudaStream_t stream, W4GemvTuning tuning) {
  W4GemvParams p{};
  p.codes = w.codes.data();
  p.ldq = w.K_pad / 2;
  p.scales = reinterpret_cast<const __nv_bfloat16*>(w.scales.data());
  p.zeros = w.format == W4Format::INT4Asym ? reinterpret_cast<const __nv_bfloat16*>(w.zeros.data()) : nullptr;
  p.lds = w.blocks_pad;
  p.block_shift = __builtin_ctz(unsigned(w.block));
  p.x = x;
  p.ldx = ldx;
  p.K = w.K;
  p.M = int(M);
  p.x_vec = ldx % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 8 == 0;
  p.y = reinterpret_cast<__nv_bfloat16*>(y);
  p.ldy = ldy;
  p.N = w.N;
  p.k_tiles = int(w.K_pad / kTileK);
  const std::array<float, 16> cb = w4_codebook(w.format);
  std::copy(cb.begin(), cb.end(), p.codebook);
  switch (dq_of(w.format)) {
    case Dq::Lut: launch_gemv_tuned<Dq::Lut>(p, tuning, stream); break;
    case Dq::Int4Sym: launch_gemv_tuned<Dq::Int4Sym>(p, tuning, stream); break;
    case Dq::Int4Asym: launch_gemv_tuned<Dq::Int4Asym>(p, tuning, stream); break;
  }
}

void w4_dequantize_launch(const W4Weight& w, uint16_t* out, int64_t ldo, cudaStream_t stream) {
  Codebook16 cb{};
  const std::array<float, 16> values = w4_codebook(w.format);
  std::copy(values.begin(), values.end(), cb.v);
  const int64_t total = w.N * w.K;
  const int threads = 256;
  const unsigned blocks = unsigned(
      std::min<int64_t>((total + threads - 1) / threads, int64_t(current_device().multiprocessors) * 32));
  const auto* scales = reinterpret_cast<const __nv_bfloat16*>(w.scales.data());
  const auto* zeros = w.format == W4Format::INT4Asym ? reinterpret_cast<const __nv_bfloat16*>(w.zeros.data()) : nullptr;
  auto* o = reinterpret_cast<__nv_bfloat16*>(out);
  const int shift = __builtin_ctz(unsigned(w.block));
  switch (dq_of(w.format)) {
    case Dq::Lut:
      w4_dequant_kernel<Dq::Lut><<<blocks, threads, 0, stream>>>(w.codes.data(), w.K_pad / 2, scales, zeros,
                                                                 w.blocks_pad, shift, w.K, w.N, o, ldo, cb);
      break;
    case Dq::Int4Sym:
      w4_dequant_kernel<Dq::Int4Sym><<<blocks, threads, 0, stream>>>(w.codes.data(), w.K_pad / 2, scales, zeros,
                                                                     w.blocks_pad, shift, w.K, w.N, o, ldo, cb);
      break;
    case Dq::Int4Asym:
      w4_dequant_kernel<Dq::Int4Asym><<<blocks, threads, 0, stream>>>(w.codes.data(), w.K_pad / 2, scales, zeros,
                                                                      w.blocks_pad, shift, w.K, w.N, o, ldo, cb);
      break;
  }
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace kq::cuda
