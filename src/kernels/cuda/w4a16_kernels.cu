// W4A16 decode GEMV (M <= 16 tokens), the split-K kernel: mma.sync m16n8k16
// BF16 with the tokens on the n = 8 side (two n8 halves for M > 8). Taken for
// M = 1 on small weights and where the streaming (M = 1) or batch (M >= 2)
// kernels do not fit; w4a16_gemv_launch below picks the kernel.
//
// Work split (version 8 of the tuning log in docs/GPU.md): one block per
// 16-row group, a non-persistent grid; the block's kWarps warps split the
// group's 128-k tiles into contiguous ranges and every warp issues the loads
// of its first kU tiles (codes, scales, zero points: 128 bytes of codes per
// lane at kU = 4) before anything else, so the whole matrix is requested in
// about one wave; the LUT fill and the compute follow. Partial sums are
// reduced over the warps in shared memory.
//
// Dequantization: the 4-bit codes become BF16 pairs that go straight into
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
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"
#include "kernels/cuda/w4a16.hpp"
#include "kernels/cuda/w4a16_device.cuh"
#include "kernels/cuda/w4a16_launch.hpp"

namespace kq::cuda {
namespace {

using namespace w4dev;

constexpr int kTileK = 128;            // k per warp tile: 4 lanes x 32 codes
constexpr int kLutBytes = 256 * 256;   // 256 entries x 256 bytes (lanes use the first 128)

struct W4GemvParams {
  const uint8_t* codes;   // [N, ldq]
  int64_t ldq;            // bytes per row = K_pad / 2
  const uint16_t* scales; // BF16 [N, lds]
  const uint16_t* zeros;  // BF16 [N, lds] (INT4Asym) or null
  int64_t lds;            // blocks per row
  int block_shift;        // log2(block)
  const uint16_t* x;      // [M, ldx] BF16 bits
  int64_t ldx;
  int64_t K;
  int M;
  bool x_vec;             // rows 8-byte aligned: ldx % 4 == 0
  __nv_bfloat16* y;       // [M, ldy]
  int64_t ldy;
  int64_t N;
  int k_tiles;            // K_pad / 128
  int per_warp;           // tiles per warp (contiguous range)
  float codebook[16];     // Lut only
};

/// This lane's activations of token `tok` for one 128-k tile: for step s
/// (0..7), BF16 pairs at k = kb + 16s + 4t + {0, 1} (x[2s]) and {2, 3}
/// (x[2s+1]); zeros past K or for tok >= M.
__device__ __forceinline__ void load_x(uint32_t (&x)[16], const W4GemvParams& p, int64_t kb, int tok, int t) {
  if (tok >= p.M) {
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = 0;
    return;
  }
  const uint16_t* xr = p.x + int64_t(tok) * p.ldx;
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

constexpr uint32_t kOnes = 0x3F803F80u;  // BF16x2 (1, 1)

/// One 128-k tile of rows g (w0) and g+8 (w1) for this lane and kN8 groups of
/// 8 tokens. This lane's 16 bytes hold, for step s = 0..7, the 4 codes at
/// k = kb + 16s + 4t + {0..3}, so a step spans 16 contiguous k and never
/// crosses a block. Steps of one block are summed unscaled (codebook values,
/// or 128 + u for INT4), then the block's scale (and zero point, through a
/// ones-mma that sums the activations) is applied in FP32:
///   Σ w x = s · (Σ (128 + u) x − (128 + z) Σ x).
template <int kParts, Dq kDq, int kN8>
__device__ __forceinline__ void compute_tile(float (&acc)[kN8][4], const uint4& w0, const uint4& w1,
                                             const uint32_t (&sc)[kParts][2], const uint32_t (&zc)[kParts][2],
                                             const uint32_t (&x)[kN8][16], const char* lut, uint32_t lane4) {
  constexpr int kSteps = 8 / kParts;
#pragma unroll
  for (int part = 0; part < kParts; ++part) {
    // One mma chain per part: two (even / odd steps) measured no faster at
    // M = 1 and spilled at M = 16 (tuning log, version 9).
    float c[1][kN8][4], o[1][kN8][4];
#pragma unroll
    for (int j = 0; j < kN8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) c[0][j][i] = o[0][j][i] = 0.f;
#pragma unroll
    for (int ss = 0; ss < kSteps; ++ss) {
      const int s = part * kSteps + ss;
      uint32_t a[4];
      a_operand_16rows<kDq>(a, w0, w1, s, lut, lane4);
#pragma unroll
      for (int j = 0; j < kN8; ++j) {
        mma_bf16_16816(c[0][j], a[0], a[1], a[2], a[3], x[j][2 * s], x[j][2 * s + 1]);
        if constexpr (kDq != Dq::Lut) mma_bf16_16816(o[0][j], kOnes, kOnes, kOnes, kOnes, x[j][2 * s], x[j][2 * s + 1]);
      }
    }
    const float s0 = bf16_bits_to_float(sc[part][0]), s1 = bf16_bits_to_float(sc[part][1]);
#pragma unroll
    for (int j = 0; j < kN8; ++j) {
      if constexpr (kDq == Dq::Lut) {
        acc[j][0] = fmaf(s0, c[0][j][0], acc[j][0]);
        acc[j][1] = fmaf(s0, c[0][j][1], acc[j][1]);
        acc[j][2] = fmaf(s1, c[0][j][2], acc[j][2]);
        acc[j][3] = fmaf(s1, c[0][j][3], acc[j][3]);
      } else {
        // 128 + zero point (INT4 symmetric codes are offset binary: zero 8).
        const float b0 = kDq == Dq::Int4Sym ? 136.0f : 128.0f + bf16_bits_to_float(zc[part][0]);
        const float b1 = kDq == Dq::Int4Sym ? 136.0f : 128.0f + bf16_bits_to_float(zc[part][1]);
        acc[j][0] = fmaf(s0, fmaf(-b0, o[0][j][0], c[0][j][0]), acc[j][0]);
        acc[j][1] = fmaf(s0, fmaf(-b0, o[0][j][1], c[0][j][1]), acc[j][1]);
        acc[j][2] = fmaf(s1, fmaf(-b1, o[0][j][2], c[0][j][2]), acc[j][2]);
        acc[j][3] = fmaf(s1, fmaf(-b1, o[0][j][3], c[0][j][3]), acc[j][3]);
      }
    }
  }
}

template <int kWarps, int kN8, Dq kDq>
constexpr size_t smem_bytes() {
  return size_t(kWarps) * kN8 * 4 * 32 * sizeof(float) + (kDq == Dq::Lut ? size_t(kLutBytes) : 0);
}

/// Codes, scales and zero points of kU tiles starting at kt0 (tiles >= kt_end skipped).
template <int kU, int kParts, Dq kDq>
__device__ __forceinline__ void load_chunk(uint4 (&w0)[kU], uint4 (&w1)[kU], uint32_t (&sc)[kU][kParts][2],
                                           uint32_t (&zc)[kU][kParts][2], const W4GemvParams& p,
                                           const uint8_t* q0, const uint8_t* q1, int64_t r0, int64_t r1, int kt0,
                                           int kt_end) {
#pragma unroll
  for (int u = 0; u < kU; ++u) {
    const int kt = kt0 + u;
    if (kt < kt_end) {
      w0[u] = ld_stream16(q0 + int64_t(kt) * (kTileK / 2));
      w1[u] = ld_stream16(q1 + int64_t(kt) * (kTileK / 2));
      const int64_t blk0 = (int64_t(kt) * kTileK) >> p.block_shift;
#pragma unroll
      for (int part = 0; part < kParts; ++part) {
        sc[u][part][0] = ld_u16(p.scales + r0 * p.lds + blk0 + part);
        sc[u][part][1] = ld_u16(p.scales + r1 * p.lds + blk0 + part);
        if constexpr (kDq == Dq::Int4Asym) {
          zc[u][part][0] = ld_u16(p.zeros + r0 * p.lds + blk0 + part);
          zc[u][part][1] = ld_u16(p.zeros + r1 * p.lds + blk0 + part);
        } else {
          zc[u][part][0] = zc[u][part][1] = 0;
        }
      }
    }
  }
}

/// One block per 16-row group; kWarps warps split its 128-k tiles (each warp a
/// contiguous range of p.per_warp tiles, processed kU at a time).
/// kParts = blocks per 128-k tile (1 for block >= 128, 2 for 64, 4 for 32).
/// kMinBlocks blocks per SM must fit (the register cap: 65536 / (kMinBlocks * 32 * kWarps)).
template <int kWarps, int kU, int kParts, Dq kDq, int kN8, int kMinBlocks>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks) w4a16_gemv_kernel(const __grid_constant__ W4GemvParams p) {
  extern __shared__ __align__(16) uint32_t smem[];
  float* red = reinterpret_cast<float*>(smem);                        // [kWarps][kN8*4][32]
  char* lut = reinterpret_cast<char*>(smem + kWarps * kN8 * 4 * 32);  // [256][256 bytes]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) << 2;
  const int64_t n0 = int64_t(blockIdx.x) * 16;
  const int64_t r0 = min(n0 + g, p.N - 1), r1 = min(n0 + g + 8, p.N - 1);
  const uint8_t* q0 = p.codes + r0 * p.ldq + 16 * t;
  const uint8_t* q1 = p.codes + r1 * p.ldq + 16 * t;
  const int kt_begin = min(warp * p.per_warp, p.k_tiles), kt_end = min(kt_begin + p.per_warp, p.k_tiles);

  uint4 w0[kU], w1[kU];
  uint32_t sc[kU][kParts][2], zc[kU][kParts][2];
  // The first chunk's loads go out before the LUT fill and its barrier, and
  // before waiting for the previous kernel (PDL: weights are never written).
  load_chunk<kU, kParts, kDq>(w0, w1, sc, zc, p, q0, q1, r0, r1, kt_begin, kt_end);
  pdl_wait();
  if constexpr (kDq == Dq::Lut) {
    fill_lut<kWarps * 32>(lut, p.codebook);
    __syncthreads();
  }
  float acc[kN8][4];
#pragma unroll
  for (int j = 0; j < kN8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[j][i] = 0.f;
  for (int kt0 = kt_begin; kt0 < kt_end;) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int kt = kt0 + u;
      if (kt < kt_end) {
        uint32_t x[kN8][16];
#pragma unroll
        for (int j = 0; j < kN8; ++j) load_x(x[j], p, int64_t(kt) * kTileK, g + 8 * j, t);
        compute_tile<kParts, kDq, kN8>(acc, w0[u], w1[u], sc[u], zc[u], x, lut, lane4);
      }
    }
    kt0 += kU;
    if (kt0 < kt_end) load_chunk<kU, kParts, kDq>(w0, w1, sc, zc, p, q0, q1, r0, r1, kt0, kt_end);
  }
  // Sum over the warps (split K); warp 0 writes y.
#pragma unroll
  for (int j = 0; j < kN8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) red[((warp * kN8 + j) * 4 + i) * 32 + lane] = acc[j][i];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int j = 0; j < kN8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float s = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) s += red[((w * kN8 + j) * 4 + i) * 32 + lane];
        const int m = 8 * j + 2 * t + (i & 1);
        const int64_t n = n0 + g + (i >> 1) * 8;
        if (m < p.M && n < p.N) p.y[int64_t(m) * p.ldy + n] = __float2bfloat16_rn(s);
      }
  }
}

/// kWarpsPerSm: the occupancy the register cap aims at (M <= 8 with one or
/// two blocks per 128-k tile; larger tiles of state get half).
template <int kWarps, int kU, int kParts, Dq kDq, int kN8, int kWarpsPerSm>
void launch_gemv(W4GemvParams p, cudaStream_t stream) {
  constexpr int kTarget = (kN8 == 1 && kParts <= 2) ? kWarpsPerSm : kWarpsPerSm / 2;
  constexpr int kMinBlocks = kTarget / kWarps > 1 ? kTarget / kWarps : 1;
  auto kernel = w4a16_gemv_kernel<kWarps, kU, kParts, kDq, kN8, kMinBlocks>;
  constexpr size_t smem = smem_bytes<kWarps, kN8, kDq>();
  static const bool attr = [&] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    return true;
  }();
  (void)attr;
  p.per_warp = (p.k_tiles + kWarps - 1) / kWarps;
  const unsigned grid = unsigned((p.N + 15) / 16);
  launch_pdl(kernel, dim3(grid), dim3(kWarps * 32), smem, stream, p);
}

/// (warps, tiles per chunk, warps per SM the register cap aims at):
/// {4, 8, 12}, {8, 4, 16}, {8, 2, 32}, {16, 4, 16}, {16, 2, 32}.
template <int kParts, Dq kDq, int kN8>
void launch_config(const W4GemvParams& p, int warps, int unroll, cudaStream_t stream) {
  if (warps == 4)
    launch_gemv<4, 8, kParts, kDq, kN8, 12>(p, stream);
  else if (warps == 8 && unroll == 2)
    launch_gemv<8, 2, kParts, kDq, kN8, 32>(p, stream);
  else if (warps == 8)
    launch_gemv<8, 4, kParts, kDq, kN8, 16>(p, stream);
  else if (unroll == 2)
    launch_gemv<16, 2, kParts, kDq, kN8, 32>(p, stream);
  else
    launch_gemv<16, 4, kParts, kDq, kN8, 16>(p, stream);
}

template <Dq kDq>
void launch_gemv_tuned(const W4GemvParams& p, W4GemvTuning tuning, cudaStream_t stream) {
  int warps = tuning.warps, unroll = tuning.tiles;
  if (warps != 4 && warps != 8 && warps != 16) {
    // 8 warps x 4-tile chunks was the fastest variant on every 7B shape on the
    // H200 (K = 4096 and 11008, N = 4096..22016; docs/GPU.md); longer rows loop.
    warps = 8;
    unroll = 4;
  }
  const int parts = p.block_shift >= 7 ? 1 : (p.block_shift == 6 ? 2 : 4);
  const bool two = p.M > 8;
  auto go = [&](auto parts_c) {
    constexpr int kP = decltype(parts_c)::value;
    if (two)
      launch_config<kP, kDq, 2>(p, warps, unroll, stream);
    else
      launch_config<kP, kDq, 1>(p, warps, unroll, stream);
  };
  if (parts == 1)
    go(std::integral_constant<int, 1>{});
  else if (parts == 2)
    go(std::integral_constant<int, 2>{});
  else
    go(std::integral_constant<int, 4>{});
}

}  // namespace

void w4a16_gemv_launch(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                       cudaStream_t stream, W4GemvTuning tuning) {
  // M = 1: the streaming kernel (w4a16_gemv_stream.cu) where it measured faster
  // on the H200: every 7B decode shape but 4096 x 4096 (16.8 M weights, where
  // the split-K kernel's 256 blocks finish first).
  const bool stream_auto = tuning.kernel == 0 && w.N * w.K_pad >= (int64_t(1) << 25);
  if (M == 1 && (tuning.kernel == 2 || stream_auto) && w4a16_gemv_stream_launch(w, x, y, stream, tuning)) return;
  // M >= 2: the batch kernel (w4a16_gemv_batch.cu) reads x once per SM instead of once per 16 rows.
  // Its warp count is taken from `tuning` only when it is asked for by name (kernel = 3).
  const bool batch_auto = tuning.kernel == 0 && M >= 2;
  if ((tuning.kernel == 3 || batch_auto) &&
      w4a16_gemv_batch_launch(w, x, ldx, M, y, ldy, stream,
                              W4GemvTuning{tuning.kernel == 3 ? tuning.warps : 0, 0, 3}))
    return;
  W4GemvParams p{};
  p.codes = w.codes.data();
  p.ldq = w.K_pad / 2;
  p.scales = w.scales.data();
  p.zeros = w.format == W4Format::INT4Asym ? w.zeros.data() : nullptr;
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
  switch (w.format) {
    case W4Format::INT4: launch_gemv_tuned<Dq::Int4Sym>(p, tuning, stream); break;
    case W4Format::INT4Asym: launch_gemv_tuned<Dq::Int4Asym>(p, tuning, stream); break;
    default: launch_gemv_tuned<Dq::Lut>(p, tuning, stream); break;
  }
}

}  // namespace kq::cuda
