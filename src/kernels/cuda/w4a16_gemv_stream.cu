// W4A16 decode GEMV for one token (M = 1): the "streaming" kernel (version 10
// of the tuning log in docs/GPU.md).
//
// Work split: one block per SM (grid = multiprocessors, or fewer for small N).
// Block c owns the rows [c·N/P, (c+1)·N/P), so every SM moves the same number
// of weight bytes whatever N is; its rows are cut into 16-row groups (the last
// one partial: its missing rows repeat the block's last row, which costs no
// DRAM traffic, only compute). The block's (group, 128-k tile) items are split
// into one contiguous range per warp, tile-major by default (consecutive items
// of a warp share a tile, so the warp's x registers are reused) or group-major.
// Each warp streams its items through a ring of kD register slots: the loads
// of item i + kD (codes, scales, zero points) are issued right after item i is
// computed, so kD KB of codes per warp stay in flight with no barrier.
//
// Activation: x is staged once per block in shared memory, in the lanes' step
// order (one LDS.128 per two mma steps), zero-padded to K_pad; for INT4 the
// per-block sums Σx are computed there too. Every lane feeds the same token to
// the mma's B operand, so all 8 token columns of C hold the same dot product
// and lane t = 0 takes column 0: no branch or zero fill on the x path.
//
// Dequantization as in the split-K kernel (w4a16_kernels.cu): NF4/FP4 through
// a lane-private byte -> BF16x2 table in shared memory (PRMT + LDS per pair),
// INT4 arithmetic from interleaved nibbles (128 + u, exact in BF16), scales
// and zero points applied to the FP32 partial sums; INT4 removes the offset
// (128 + zero) with the staged sums instead of a second mma.
//
// Partial sums: each warp adds its items' sums into its own shared-memory
// slot per (group, row); after one barrier the block adds the slots of all
// warps and writes y.
#include <cuda_bf16.h>

#include <algorithm>
#include <array>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_info.hpp"
#include "kernels/cuda/w4a16.hpp"
#include "kernels/cuda/w4a16_device.cuh"
#include "kernels/cuda/w4a16_launch.hpp"

namespace kq::cuda {
namespace {

using namespace w4dev;

constexpr int kTileK = 128;
constexpr int kLutBytes = 256 * 256;  // 256 entries x 256 bytes (lanes use the first 128)

struct StreamParams {
  const uint8_t* codes;    // [N, ldq]
  const uint16_t* scales;  // BF16 [N, lds]
  const uint16_t* zeros;   // BF16 [N, lds] (INT4Asym) or null
  const uint16_t* x;       // BF16 [K] (token 0)
  __nv_bfloat16* y;        // BF16 [N]
  uint32_t ldq;            // code bytes per row (K_pad / 2)
  uint32_t lds;            // scales per row (blocks_pad)
  int block_shift;         // log2(block)
  int K;
  int N;
  int k_tiles;             // K_pad / 128
  int ctas;                // gridDim.x
  int g_max;               // 16-row groups per block, at most
  int order;               // 0: tile-major items, 1: group-major
  bool x_vec;              // x 8-byte aligned
  uint32_t off_x, off_sums, off_slots;  // shared-memory offsets (bytes)
  float base;              // INT4 offset: 136 (symmetric, 128 + 8) or 128 (asymmetric, + zero)
  float codebook[16];      // Lut only
};

/// Scale (or zero point) words of one row for one tile: kParts BF16 values.
template <int kParts>
struct ScaleWords {
  uint32_t v[kParts == 4 ? 2 : 1];
};

template <int kParts>
__device__ __forceinline__ ScaleWords<kParts> ld_scales(const uint16_t* p) {
  ScaleWords<kParts> r;
  if constexpr (kParts == 1) {
    r.v[0] = ld_u16(p);
  } else if constexpr (kParts == 2) {
    asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(r.v[0]) : "l"(p));
  } else {
    asm volatile("ld.global.nc.v2.u32 {%0, %1}, [%2];" : "=r"(r.v[0]), "=r"(r.v[1]) : "l"(p));
  }
  return r;
}

/// BF16 value of part `part` (compile-time) as float.
template <int kParts>
__device__ __forceinline__ float part_value(const ScaleWords<kParts>& s, int part) {
  if constexpr (kParts == 1) return bf16_bits_to_float(s.v[0]);
  const uint32_t w = s.v[part >> 1];
  return (part & 1) ? __uint_as_float(w & 0xFFFF0000u) : __uint_as_float(w << 16);
}

/// One ring slot: this lane's codes of rows g and g + 8 for one tile, and their scales / zero points.
template <int kParts, Dq kDq>
struct Slot {
  uint4 w0, w1;
  ScaleWords<kParts> s0, s1;
  ScaleWords<kParts> z0, z1;  // INT4Asym only
};

/// Pair from byte `i` (0..3, compile-time) of `w` through the lane's LUT column (LUT at shared offset 0).
__device__ __forceinline__ uint32_t lut_pair(const unsigned char* lut, uint32_t lane4, uint32_t w, int i) {
  const uint32_t off = __byte_perm(lane4, w, 0x1100u | uint32_t(4 + i) << 4);  // byte << 8 | lane << 2
  return *reinterpret_cast<const uint32_t*>(lut + off);
}

/// INT4 pair (128 + u_lo, 128 + u_hi) from nibbles 0 and 4 of `bits`.
__device__ __forceinline__ uint32_t int4_pair(uint32_t bits) { return (bits & 0x000F000Fu) | 0x43004300u; }

/// C[16x8] = A · B with zero accumulators.
__device__ __forceinline__ void mma_bf16_16816_zero(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                    uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %10, %10, %10};"
      : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(0.0f));
}

/// A operand of step s (0..7, compile-time) from the lane's code words of rows g (w0) and g + 8 (w1).
template <Dq kDq>
__device__ __forceinline__ void a_operand(uint32_t (&a)[4], const uint4& w0, const uint4& w1, int s,
                                          const unsigned char* lut, uint32_t lane4) {
  const uint32_t q0 = word(w0, s >> 1), q1 = word(w1, s >> 1);
  if constexpr (kDq == Dq::Lut) {
    // Plain packing: the step's 4 codes are bytes 2(s&1), 2(s&1)+1 of the word, low nibble first.
    const int i = 2 * (s & 1);
    a[0] = lut_pair(lut, lane4, q0, i);
    a[1] = lut_pair(lut, lane4, q1, i);
    a[2] = lut_pair(lut, lane4, q0, i + 1);
    a[3] = lut_pair(lut, lane4, q1, i + 1);
  } else {
    // Interleaved packing: code e of a word's 8 is in nibble e/2 + 4 (e % 2).
    const int sh = 8 * (s & 1);
    a[0] = int4_pair(q0 >> sh);
    a[1] = int4_pair(q1 >> sh);
    a[2] = int4_pair(q0 >> (sh + 4));
    a[3] = int4_pair(q1 >> (sh + 4));
  }
}

/// Σ_k x·w of one item for rows g (sum0) and g + 8 (sum1), scales and zero points applied.
/// xb: the tile's B operands (step s: xb[2s], xb[2s+1]); sums: the tile's per-part (Σx, base·Σx).
template <int kParts, Dq kDq>
__device__ __forceinline__ void compute_item(float& sum0, float& sum1, const Slot<kParts, kDq>& sl,
                                             const uint32_t (&xb)[16], const float2* sums, const unsigned char* lut,
                                             uint32_t lane4) {
  constexpr int kSteps = 8 / kParts;
  // Two independent mma chains: the two halves of each part for kParts = 1
  // (even / odd steps), else consecutive parts.
  float c[kParts == 1 ? 2 : kParts][4];
#pragma unroll
  for (int ss = 0; ss < kSteps; ++ss) {
#pragma unroll
    for (int part = 0; part < kParts; ++part) {
      const int s = part * kSteps + ss;
      const int ch = kParts == 1 ? (ss & 1) : part;
      uint32_t a[4];
      a_operand<kDq>(a, sl.w0, sl.w1, s, lut, lane4);
      if (kParts == 1 ? ss < 2 : ss == 0)
        mma_bf16_16816_zero(c[ch], a[0], a[1], a[2], a[3], xb[2 * s], xb[2 * s + 1]);
      else
        mma_bf16_16816(c[ch], a[0], a[1], a[2], a[3], xb[2 * s], xb[2 * s + 1]);
    }
  }
  if constexpr (kParts == 1) {
    c[0][0] += c[1][0];
    c[0][2] += c[1][2];
  }
#pragma unroll
  for (int part = 0; part < kParts; ++part) {
    const float s0 = part_value<kParts>(sl.s0, part), s1 = part_value<kParts>(sl.s1, part);
    const float v0 = c[part][0], v1 = c[part][2];
    if constexpr (kDq == Dq::Lut) {
      sum0 = fmaf(s0, v0, sum0);
      sum1 = fmaf(s1, v1, sum1);
    } else {
      const float2 sx = sums[part];
      if constexpr (kDq == Dq::Int4Sym) {
        sum0 = fmaf(s0, v0 - sx.y, sum0);
        sum1 = fmaf(s1, v1 - sx.y, sum1);
      } else {
        const float z0 = part_value<kParts>(sl.z0, part), z1 = part_value<kParts>(sl.z1, part);
        sum0 = fmaf(s0, fmaf(-z0, sx.x, v0 - sx.y), sum0);
        sum1 = fmaf(s1, fmaf(-z1, sx.x, v1 - sx.y), sum1);
      }
    }
  }
}

/// Item position: (tile, group) advanced in the block's item order.
__device__ __forceinline__ void advance(int& tile, int& grp, int order, int groups, int k_tiles) {
  if (order == 0) {
    if (++grp == groups) {
      grp = 0;
      ++tile;
    }
  } else if (++tile == k_tiles) {
    tile = 0;
    ++grp;
  }
}

template <int kWarps, int kD, int kParts, Dq kDq>
__global__ void __launch_bounds__(kWarps * 32, 1) w4a16_gemv_stream_kernel(const __grid_constant__ StreamParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const unsigned char* lut = smem;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) << 2;

  // This block's rows [rb, re) and this warp's items [i0, i1).
  const int rb = int(int64_t(blockIdx.x) * p.N / p.ctas), re = int(int64_t(blockIdx.x + 1) * p.N / p.ctas);
  const int groups = (re - rb + 15) >> 4;
  const int items = groups * p.k_tiles;
  const int i0 = int(int64_t(warp) * items / kWarps), i1 = int(int64_t(warp + 1) * items / kWarps);
  int tile0, grp0;
  if (p.order == 0) {
    tile0 = groups > 0 ? i0 / groups : 0;
    grp0 = i0 - tile0 * groups;
  } else {
    grp0 = i0 / p.k_tiles;
    tile0 = i0 - grp0 * p.k_tiles;
  }

  // Loads of one item into a ring slot.
  const int row_lo = rb + g, row_last = re - 1;
  const uint8_t* codes_t = p.codes + 16 * t;
  auto load_item = [&](Slot<kParts, kDq>& sl, int tile, int grp) {
    const uint32_t r0 = uint32_t(min(row_lo + 16 * grp, row_last));
    const uint32_t r1 = uint32_t(min(row_lo + 16 * grp + 8, row_last));
    const uint8_t* q = codes_t + uint32_t(tile) * (kTileK / 2);
    sl.w0 = ld_stream16(q + size_t(r0) * p.ldq);
    sl.w1 = ld_stream16(q + size_t(r1) * p.ldq);
    const uint32_t blk = (uint32_t(tile) * kTileK) >> p.block_shift;
    sl.s0 = ld_scales<kParts>(p.scales + blk + size_t(r0) * p.lds);
    sl.s1 = ld_scales<kParts>(p.scales + blk + size_t(r1) * p.lds);
    if constexpr (kDq == Dq::Int4Asym) {
      sl.z0 = ld_scales<kParts>(p.zeros + blk + size_t(r0) * p.lds);
      sl.z1 = ld_scales<kParts>(p.zeros + blk + size_t(r1) * p.lds);
    }
  };

  // The ring's first kD items go out before anything else.
  Slot<kParts, kDq> ring[kD];
  int lt = tile0, lg = grp0;
#pragma unroll
  for (int d = 0; d < kD; ++d)
    if (i0 + d < i1) {
      load_item(ring[d], lt, lg);
      advance(lt, lg, p.order, groups, p.k_tiles);
    }

  // Stage x in step order (and, for INT4, the per-part sums Σx), zero-padded to K_pad.
  unsigned char* xs = smem + p.off_x;
  float2* sums = reinterpret_cast<float2*>(smem + p.off_sums);
  for (int kt = warp; kt < p.k_tiles; kt += kWarps) {
    const int k = kt * kTileK + 4 * lane;
    uint32_t e[4];
    if (p.x_vec && k + 4 <= p.K) {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(p.x + k));
      e[0] = v.x & 0xFFFFu;
      e[1] = v.x >> 16;
      e[2] = v.y & 0xFFFFu;
      e[3] = v.y >> 16;
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) e[i] = k + i < p.K ? uint32_t(__ldg(p.x + k + i)) : 0u;
    }
    const int s = lane >> 2;
    *reinterpret_cast<uint2*>(xs + kt * 256 + (s >> 1) * 64 + t * 16 + (s & 1) * 8) =
        make_uint2(e[0] | e[1] << 16, e[2] | e[3] << 16);
    if constexpr (kDq != Dq::Lut) {
      // One part = 128 / kParts k = 32 / kParts lanes.
      float sx = (bf16_bits_to_float(e[0]) + bf16_bits_to_float(e[1])) +
                 (bf16_bits_to_float(e[2]) + bf16_bits_to_float(e[3]));
#pragma unroll
      for (int o = 1; o < 32 / kParts; o <<= 1) sx += __shfl_xor_sync(0xFFFFFFFFu, sx, o);
      if ((lane & (32 / kParts - 1)) == 0) sums[kt * kParts + lane / (32 / kParts)] = make_float2(sx, p.base * sx);
    }
  }
  if constexpr (kDq == Dq::Lut) {
    uint4* lut4 = reinterpret_cast<uint4*>(smem);
    for (int i = threadIdx.x; i < 256 * 8; i += kWarps * 32) {
      const int b = i >> 3;
      const uint32_t v = pack_bf16x2(p.codebook[b & 15], p.codebook[b >> 4]);
      lut4[b * 16 + (i & 7)] = make_uint4(v, v, v, v);
    }
  }
  float* slots = reinterpret_cast<float*>(smem + p.off_slots);  // [kWarps][g_max][16]
  for (int i = threadIdx.x; i < kWarps * p.g_max * 16; i += kWarps * 32) slots[i] = 0.f;
  __syncthreads();

  float* my_slots = slots + warp * p.g_max * 16;
  int ct = tile0, cg = grp0, xtile = -1;
  uint32_t xb[16];
  float acc0 = 0.f, acc1 = 0.f;
  for (int i = i0; i < i1;) {
#pragma unroll
    for (int d = 0; d < kD; ++d) {
      if (i < i1) {
        if (ct != xtile) {
          xtile = ct;
          const unsigned char* xt = xs + ct * 256 + t * 16;
#pragma unroll
          for (int sp = 0; sp < 4; ++sp) {
            const uint4 v = *reinterpret_cast<const uint4*>(xt + sp * 64);
            xb[4 * sp] = v.x;
            xb[4 * sp + 1] = v.y;
            xb[4 * sp + 2] = v.z;
            xb[4 * sp + 3] = v.w;
          }
        }
        compute_item<kParts, kDq>(acc0, acc1, ring[d], xb, sums + ct * kParts, lut, lane4);
        if (i + kD < i1) {
          load_item(ring[d], lt, lg);
          advance(lt, lg, p.order, groups, p.k_tiles);
        }
        const int pg = cg;
        advance(ct, cg, p.order, groups, p.k_tiles);
        ++i;
        if (cg != pg || i == i1) {
          if (t == 0) {
            my_slots[pg * 16 + g] += acc0;
            my_slots[pg * 16 + g + 8] += acc1;
          }
          acc0 = acc1 = 0.f;
        }
      }
    }
  }
  __syncthreads();
  for (int r = rb + int(threadIdx.x); r < re; r += kWarps * 32) {
    const int j = r - rb;
    float s = 0.f;
    for (int w = 0; w < kWarps; ++w) s += slots[(w * p.g_max + (j >> 4)) * 16 + (j & 15)];
    p.y[r] = __float2bfloat16_rn(s);
  }
}

template <int kWarps, int kD, int kParts, Dq kDq>
void launch_stream(const StreamParams& p, size_t smem, cudaStream_t stream) {
  auto kernel = w4a16_gemv_stream_kernel<kWarps, kD, kParts, kDq>;
  static const bool attr = [&] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(current_device().smem_per_block_optin)));
    return true;
  }();
  (void)attr;
  kernel<<<unsigned(p.ctas), kWarps * 32, smem, stream>>>(p);
  KQ_CUDA_CHECK_LAUNCH();
}

/// (warps, ring depth): {16, 4}, {24, 2}, {24, 3}, {32, 2}.
template <int kParts, Dq kDq>
void launch_stream_config(const StreamParams& p, size_t smem, int warps, int depth, cudaStream_t stream) {
  if (warps == 16)
    launch_stream<16, 4, kParts, kDq>(p, smem, stream);
  else if (warps == 32)
    launch_stream<32, 2, kParts, kDq>(p, smem, stream);
  else if (depth == 3)
    launch_stream<24, 3, kParts, kDq>(p, smem, stream);
  else
    launch_stream<24, 2, kParts, kDq>(p, smem, stream);
}

template <Dq kDq>
void launch_stream_parts(const StreamParams& p, size_t smem, int warps, int depth, cudaStream_t stream) {
  const int parts = p.block_shift >= 7 ? 1 : (p.block_shift == 6 ? 2 : 4);
  if (parts == 1)
    launch_stream_config<1, kDq>(p, smem, warps, depth, stream);
  else if (parts == 2)
    launch_stream_config<2, kDq>(p, smem, warps, depth, stream);
  else
    launch_stream_config<4, kDq>(p, smem, warps, depth, stream);
}

}  // namespace

bool w4a16_gemv_stream_launch(const W4Weight& w, const uint16_t* x, uint16_t* y, cudaStream_t stream,
                              W4GemvTuning tuning) {
  const DeviceQuery& dev = current_device();
  int warps = tuning.warps, depth = tuning.tiles;
  if (warps != 16 && warps != 24 && warps != 32) {
    warps = 24;
    depth = 2;
  }
  const int parts = w.block >= kTileK ? 1 : kTileK / w.block;
  const bool lut = w.format == W4Format::NF4 || w.format == W4Format::FP4;
  StreamParams p{};
  p.codes = w.codes.data();
  p.scales = w.scales.data();
  p.zeros = w.format == W4Format::INT4Asym ? w.zeros.data() : nullptr;
  p.x = x;
  p.y = reinterpret_cast<__nv_bfloat16*>(y);
  p.ldq = uint32_t(w.K_pad / 2);
  p.lds = uint32_t(w.blocks_pad);
  p.block_shift = __builtin_ctz(unsigned(w.block));
  p.K = int(w.K);
  p.N = int(w.N);
  p.k_tiles = int(w.K_pad / kTileK);
  p.ctas = int(std::min<int64_t>(w.N, std::max(dev.multiprocessors, 1)));
  const int64_t rows_max = (w.N + p.ctas - 1) / p.ctas;
  p.g_max = int((rows_max + 15) / 16);
  p.order = tuning.order;
  p.x_vec = reinterpret_cast<uintptr_t>(x) % 8 == 0;
  p.base = w.format == W4Format::INT4 ? 136.0f : 128.0f;
  const std::array<float, 16> cb = w4_codebook(w.format);
  std::copy(cb.begin(), cb.end(), p.codebook);
  size_t off = lut ? size_t(kLutBytes) : 0;
  p.off_x = uint32_t(off);
  off += size_t(p.k_tiles) * 256;
  p.off_sums = uint32_t(off);
  off += lut ? 0 : size_t(p.k_tiles) * size_t(parts) * sizeof(float2);
  p.off_slots = uint32_t(off);
  off += size_t(warps) * size_t(p.g_max) * 16 * sizeof(float);
  if (off > dev.smem_per_block_optin || w.K_pad / 2 > int64_t(UINT32_MAX) || w.N > int64_t(INT32_MAX) / 2)
    return false;  // too long or too many rows for one block's shared memory: the split-K kernel
  switch (w.format) {
    case W4Format::INT4: launch_stream_parts<Dq::Int4Sym>(p, off, warps, depth, stream); break;
    case W4Format::INT4Asym: launch_stream_parts<Dq::Int4Asym>(p, off, warps, depth, stream); break;
    default: launch_stream_parts<Dq::Lut>(p, off, warps, depth, stream); break;
  }
  return true;
}

}  // namespace kq::cuda
