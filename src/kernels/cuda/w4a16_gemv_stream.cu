// W4A16 decode GEMV for one token (M = 1): the "streaming" kernel (versions
// 10-13 of the tuning log in docs/GPU.md).
//
// Work split: one block per SM (grid = multiprocessors, or N for small N).
// Block c owns the rows [c·N/P, (c+1)·N/P), so every SM moves the same number
// of weight bytes whatever N is; its rows are cut into 8-row groups (the last
// one partial: its missing rows repeat the block's last row, which costs no
// DRAM traffic, only compute). An item is one group x two 128-k tiles (1 KB
// of codes): the mma's A rows 0..7 are the group's rows at the first tile,
// rows 8..15 the same rows at the second, and the B columns alternate the two
// tiles' x, so C[g][0] + C[g+8][1] is row g's sum over 256 k. The block's
// items are split into one contiguous range per warp, tile-major (consecutive
// items of a warp share their tiles, so its x registers are reused). Each warp
// streams its items through a ring of kD register slots: the loads of item
// i + kD (codes, scales, zero points) are issued right after item i is
// computed, so kD KB of codes per warp stay in flight with no barrier.
//
// Activation: x is staged once per block in shared memory in the lanes' order
// (one LDS.128 per two mma steps), zero-padded; for INT4 the per-part sums Σx
// are computed there too (so no ones-mma). Every lane feeds x (no branch, no
// zero fill), so all token columns of C hold copies of the two tile sums.
//
// Dequantization: NF4/FP4 through a lane-private byte -> BF16x2 table in
// shared memory placed at a 64 KB-aligned shared address, so one PRMT builds
// the LDS address (code byte << 8 | lane << 2 | table base) with no add; INT4
// arithmetic from interleaved nibbles (one SHF + one three-input LOP3 per pair
// of codes: 128 + u, exact in BF16). Scales and zero points are applied to the
// FP32 partial sums; INT4 removes the offset (128 + zero) with the staged sums.
//
// Partial sums: each warp adds its items' sums into its own shared-memory
// slot per (group, row); after one barrier the block adds the slots of all
// warps and writes y.
//
// Input producers folded into the staging (so no one-row kernel runs before
// the GEMV): SwiGLU (x = silu(gate) · up) or RMSNorm with the residual add
// (x = RMSNorm(resid + add) · gamma, the sum of squares computed by every block
// as model_ops' norm_reg_kernel computes it, so the staged values are the same
// bits). The residual update resid += add cannot be written while other
// blocks may still be reading resid: each block counts itself done with its
// staging on a device counter, and the last one writes it (and resets the
// counter for the next launch).
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

constexpr int kTileK = 128;
constexpr int kLutBytes = 256 * 256;  // 256 entries x 256 bytes (lanes use the first 128)

struct StreamParams {
  const uint8_t* codes;    // [N, ldq]
  const uint16_t* scales;  // BF16 [N, lds]
  const uint16_t* zeros;   // BF16 [N, lds] (INT4Asym) or null
  const uint16_t* x;       // BF16 [K] (token 0); with `up`: SwiGLU's gate
  const uint16_t* up;      // BF16 [K] or null: x is then BF16(silu(gate) · up), computed while staging
  const float* x_scale;    // FP32 [K] or null: the input is then BF16(that · x_scale) (AWQ's 1 / s)
  float* resid;            // F32 [K] or null: x is then BF16(RMSNorm(resid + add) · gamma) (x, up unused)
  const uint16_t* add;     // BF16 [K] or null (with resid): added to resid, which the last block writes back
  const float* gamma;      // F32 [K] (with resid)
  unsigned* counter;       // blocks done staging (with add): 0 between launches
  float eps;               // (with resid)
  __nv_bfloat16* y;        // BF16 [N]
  uint32_t ldq;            // code bytes per row (K_pad / 2)
  uint32_t lds;            // scales per row (blocks_pad)
  int block_shift;         // log2(block)
  int K;
  int N;
  int k_tiles;             // K_pad / 128
  int pairs;               // ceil(k_tiles / 2): an item is 8 rows x 2 tiles
  int ctas;                // gridDim.x
  int g_max;               // 8-row groups per block, at most
  bool x_vec;              // x 8-byte aligned
  uint32_t off_sums, off_slots, off_red;  // bytes after the staged x (which starts the data area)
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

/// One ring slot: this lane's codes of row g for the item's two tiles, and their scales / zero points.
template <int kParts, Dq kDq>
struct Slot {
  uint4 w0, w1;                // tile 2p, tile 2p + 1
  ScaleWords<kParts> s0, s1;
  ScaleWords<kParts> z0, z1;   // INT4Asym only
};

/// Pair from byte `i` (0..3, compile-time) of `w` through the lane's LUT column:
/// lut_lane = LUT shared address (64 KB aligned) | lane << 2, so one PRMT gives
/// the entry's address (byte << 8) with no add.
__device__ __forceinline__ uint32_t lut_pair(uint32_t lut_lane, uint32_t w, int i) {
  const uint32_t addr = __byte_perm(lut_lane, w, 0x3200u | uint32_t(4 + i) << 4);
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}

/// (bits & mask) | magic in one LOP3 (the compiler splits it when both are immediates).
__device__ __forceinline__ uint32_t and_or(uint32_t bits, uint32_t mask, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(bits), "r"(mask), "r"(magic));
  return r;
}

/// C[16x8] = A · B with zero accumulators.
__device__ __forceinline__ void mma_bf16_16816_zero(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                    uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %10, %10, %10};"
      : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(0.0f));
}

/// A operand of step s (0..7, compile-time): rows 0..7 of A from w0 (tile 2p), rows 8..15 from w1 (tile 2p + 1).
template <Dq kDq>
__device__ __forceinline__ void a_operand(uint32_t (&a)[4], const uint4& w0, const uint4& w1, int s, uint32_t lut_lane,
                                          uint32_t mask, uint32_t magic) {
  const uint32_t q0 = word(w0, s >> 1), q1 = word(w1, s >> 1);
  if constexpr (kDq == Dq::Lut) {
    // Plain packing: the step's 4 codes are bytes 2(s&1), 2(s&1)+1 of the word, low nibble first.
    const int i = 2 * (s & 1);
    a[0] = lut_pair(lut_lane, q0, i);
    a[1] = lut_pair(lut_lane, q1, i);
    a[2] = lut_pair(lut_lane, q0, i + 1);
    a[3] = lut_pair(lut_lane, q1, i + 1);
  } else {
    // Interleaved packing: code e of a word's 8 is in nibble e/2 + 4 (e % 2).
    const int sh = 8 * (s & 1);
    a[0] = and_or(q0 >> sh, mask, magic);
    a[1] = and_or(q1 >> sh, mask, magic);
    a[2] = and_or(q0 >> (sh + 4), mask, magic);
    a[3] = and_or(q1 >> (sh + 4), mask, magic);
  }
}

/// Σ_k x·w of one item (row g, tiles 2p and 2p + 1), scales and zero points applied.
/// A rows 0..7 hold tile 2p and rows 8..15 tile 2p + 1 of the group's 8 rows;
/// the lanes with even g feed x of tile 2p, odd g of tile 2p + 1, so C[g][0]
/// (c[0]) is row g's tile 2p and C[g + 8][1] (c[3]) its tile 2p + 1.
/// xb: this lane's B operands (step s: xb[2s], xb[2s+1]); sums: per tile and part (Σx, base·Σx).
template <int kParts, Dq kDq>
__device__ __forceinline__ float compute_item(const Slot<kParts, kDq>& sl, const uint32_t (&xb)[16],
                                              const float2* sums0, const float2* sums1, uint32_t lut_lane,
                                              uint32_t mask, uint32_t magic) {
  constexpr int kSteps = 8 / kParts;
  // Two independent mma chains: even / odd steps for kParts = 1, else one per part.
  float c[kParts == 1 ? 2 : kParts][4];
#pragma unroll
  for (int ss = 0; ss < kSteps; ++ss) {
#pragma unroll
    for (int part = 0; part < kParts; ++part) {
      const int s = part * kSteps + ss;
      const int ch = kParts == 1 ? (ss & 1) : part;
      uint32_t a[4];
      a_operand<kDq>(a, sl.w0, sl.w1, s, lut_lane, mask, magic);
      if (kParts == 1 ? ss < 2 : ss == 0)
        mma_bf16_16816_zero(c[ch], a[0], a[1], a[2], a[3], xb[2 * s], xb[2 * s + 1]);
      else
        mma_bf16_16816(c[ch], a[0], a[1], a[2], a[3], xb[2 * s], xb[2 * s + 1]);
    }
  }
  if constexpr (kParts == 1) {
    c[0][0] += c[1][0];
    c[0][3] += c[1][3];
  }
  float sum = 0.f;
#pragma unroll
  for (int part = 0; part < kParts; ++part) {
    const float s0 = part_value<kParts>(sl.s0, part), s1 = part_value<kParts>(sl.s1, part);
    const float v0 = c[part][0], v1 = c[part][3];
    if constexpr (kDq == Dq::Lut) {
      sum = fmaf(s0, v0, sum);
      sum = fmaf(s1, v1, sum);
    } else {
      const float2 x0 = sums0[part], x1 = sums1[part];
      if constexpr (kDq == Dq::Int4Sym) {
        sum = fmaf(s0, v0 - x0.y, sum);
        sum = fmaf(s1, v1 - x1.y, sum);
      } else {
        const float z0 = part_value<kParts>(sl.z0, part), z1 = part_value<kParts>(sl.z1, part);
        sum = fmaf(s0, fmaf(-z0, x0.x, v0 - x0.y), sum);
        sum = fmaf(s1, fmaf(-z1, x1.x, v1 - x1.y), sum);
      }
    }
  }
  return sum;
}

/// Byte offset of x element k in the staged layout: 256-k pairs of tiles; in a
/// pair, the 16-byte chunk (step pair sp, tile parity h, lane t) holds
/// k = 128 (2 pp + h) + 16 (2 sp + j) + 4 t + i at 512 pp + 128 sp + 64 h + 16 t + 8 j + 2 i,
/// so the lanes (h = g & 1, t) of one LDS.128 read 128 contiguous bytes.
__device__ __forceinline__ uint32_t x_offset(int tile, int lane) {
  const int s = lane >> 2, t = lane & 3;
  return uint32_t((tile >> 1) * 512 + (s >> 1) * 128 + (tile & 1) * 64 + t * 16 + (s & 1) * 8);
}

/// BF16 elements k..k+3 of v (0 past K) in the low halves of e[0..3]; vec: v 8-byte aligned.
__device__ __forceinline__ void load4(const uint16_t* v, int k, int K, bool vec, uint32_t (&e)[4]) {
  if (vec && k + 4 <= K) {
    const uint2 w = __ldg(reinterpret_cast<const uint2*>(v + k));
    e[0] = w.x & 0xFFFFu;
    e[1] = w.x >> 16;
    e[2] = w.y & 0xFFFFu;
    e[3] = w.y >> 16;
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) e[i] = k + i < K ? uint32_t(__ldg(v + k + i)) : 0u;
  }
}

/// Threads of model_ops' norm_reg_kernel: the RMSNorm's sum of squares is
/// split over this many threads as there (thread t: quads t, t + 512, ...).
constexpr int kNormThreads = 512;

/// resid[k..k+3] + add[k..k+3] (add: when given), as model_ops' RMSNorm adds them; k % 4 == 0, k + 4 <= K.
__device__ __forceinline__ float4 resid_plus_add(const StreamParams& p, int k) {
  float4 a = *reinterpret_cast<const float4*>(p.resid + k);
  if (p.add) {
    const uint2 b = *reinterpret_cast<const uint2*>(p.add + k);
    a.x += __uint_as_float(b.x << 16);
    a.y += __uint_as_float(b.x & 0xFFFF0000u);
    a.z += __uint_as_float(b.y << 16);
    a.w += __uint_as_float(b.y & 0xFFFF0000u);
  }
  return a;
}

/// 1 / RMS of resid + add (p.resid set), every thread of the block getting the
/// value model_ops' norm_reg_kernel computes: the same per-thread sums over the
/// same quads, the same shuffle tree, the same order (the warps past
/// kNormThreads add zeros). red: kWarps floats of shared memory.
template <int kWarps>
__device__ __forceinline__ float rms_inv(const StreamParams& p, float* red, int warp, int lane) {
  static_assert(kWarps * 32 >= kNormThreads, "the norm needs kNormThreads threads");
  const int nv = p.K / 4;
  float sum = 0.0f;
  for (int i = int(threadIdx.x); i < nv && threadIdx.x < kNormThreads; i += kNormThreads) {
    const float4 a = resid_plus_add(p, 4 * i);
    sum += a.x * a.x;
    sum += a.y * a.y;
    sum += a.z * a.z;
    sum += a.w * a.w;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, o);
  if (lane == 0) red[warp] = sum;
  __syncthreads();
  float v = lane < kWarps ? red[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return rsqrtf(v / float(p.K) + p.eps);
}

/// BF16 bits of the normed input at k..k+3 (0 past K): (resid + add) · inv · gamma,
/// rounded as model_ops' RMSNorm rounds its output.
__device__ __forceinline__ void load4_normed(const StreamParams& p, int k, float inv, uint32_t (&e)[4]) {
  if (k + 4 <= p.K) {
    const float4 a = resid_plus_add(p, k);
    const float4 w = *reinterpret_cast<const float4*>(p.gamma + k);
    e[0] = __bfloat16_as_ushort(__float2bfloat16_rn(a.x * inv * w.x));
    e[1] = __bfloat16_as_ushort(__float2bfloat16_rn(a.y * inv * w.y));
    e[2] = __bfloat16_as_ushort(__float2bfloat16_rn(a.z * inv * w.z));
    e[3] = __bfloat16_as_ushort(__float2bfloat16_rn(a.w * inv * w.w));
  } else {
    e[0] = e[1] = e[2] = e[3] = 0u;  // K % 4 == 0: a quad is all in or all out
  }
}

/// Block prologue: stages x (zero past K, 2 * pairs tiles) in the x_offset
/// layout and, for INT4, the per-part sums (Σx, base·Σx); fills the LUT
/// (NF4/FP4); zeroes the slots; ends with a barrier.
template <int kWarps, int kParts, Dq kDq>
__device__ __forceinline__ void stage_block(const StreamParams& p, unsigned char* lut, unsigned char* xs, float2* sums,
                                            float* slots, float* red, int warp, int lane) {
  const float inv = p.resid ? rms_inv<kWarps>(p, red, warp, lane) : 0.0f;
  // Stage x (zero past K, 2 * pairs tiles) and, for INT4, the per-part sums Σx.
  for (int kt = warp; kt < 2 * p.pairs; kt += kWarps) {
    const int k = kt * kTileK + 4 * lane;
    uint32_t e[4];
    if (p.resid)
      load4_normed(p, k, inv, e);
    else
      load4(p.x, k, p.K, p.x_vec, e);
    if (p.up) {
      // The SwiGLU, exactly as model_ops' swiglu kernel rounds it (silu(0) · u = 0 past K).
      uint32_t u[4];
      load4(p.up, k, p.K, p.x_vec, u);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float g = bf16_bits_to_float(e[i]);
        e[i] = __bfloat16_as_ushort(__float2bfloat16_rn(g / (1.0f + expf(-g)) * bf16_bits_to_float(u[i])));
      }
    }
    if (p.x_scale) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (k + i < p.K)
          e[i] = __bfloat16_as_ushort(__float2bfloat16_rn(bf16_bits_to_float(e[i]) * __ldg(p.x_scale + k + i)));
    }
    *reinterpret_cast<uint2*>(xs + x_offset(kt, lane)) = make_uint2(e[0] | e[1] << 16, e[2] | e[3] << 16);
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
    fill_lut<kWarps * 32>(lut, p.codebook);
  }
  for (int i = threadIdx.x; i < kWarps * p.g_max * 8; i += kWarps * 32) slots[i] = 0.f;
  __syncthreads();
}

/// After the staging barrier (every read of resid done): thread 0 counts the
/// block and notes in red[0] whether it was the last one (then resets the
/// counter). Only with a residual add.
__device__ __forceinline__ void count_staged(const StreamParams& p, float* red) {
  if (threadIdx.x == 0) {
    __threadfence();
    const bool last = atomicAdd(p.counter, 1u) == unsigned(p.ctas) - 1u;
    if (last) {
      atomicExch(p.counter, 0u);
      __threadfence();
    }
    red[0] = last ? 1.0f : 0.0f;
  }
}

/// The last block writes resid += add (as model_ops' RMSNorm does).
__device__ __forceinline__ void write_residual(const StreamParams& p, int threads) {
  for (int i = int(threadIdx.x); i < p.K / 4; i += threads) {
    *reinterpret_cast<float4*>(p.resid + 4 * i) = resid_plus_add(p, 4 * i);
  }
}

template <int kWarps, int kD, int kParts, Dq kDq>
__global__ void __launch_bounds__(kWarps * 32, 1) w4a16_gemv_stream_kernel(const __grid_constant__ StreamParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  // Shared layout: [LUT, 64 KB aligned in the shared window (Lut only)] [x] [sums] [slots].
  const uint32_t smem_base = smem_addr(smem);
  const uint32_t lut_addr = kDq == Dq::Lut ? (smem_base + 0xFFFFu) & ~0xFFFFu : smem_base;
  unsigned char* data = smem + (lut_addr - smem_base) + (kDq == Dq::Lut ? kLutBytes : 0);
  unsigned char* xs = data;
  float2* sums = reinterpret_cast<float2*>(data + p.off_sums);
  float* slots = reinterpret_cast<float*>(data + p.off_slots);  // [kWarps][g_max][8]
  float* red = reinterpret_cast<float*>(data + p.off_red);       // [kWarps]: the RMSNorm's sums, the last-block flag
  const uint32_t lut_lane = lut_addr | uint32_t(lane) << 2;
  uint32_t mask = 0x000F000Fu, magic = 0x43004300u;  // INT4: (128 + u_lo, 128 + u_hi) from nibbles 0 and 4
  asm volatile("" : "+r"(mask), "+r"(magic));      // keep both in registers for the 3-input LOP3

  // This block's rows [rb, re), its 8-row groups, and this warp's items [i0, i1),
  // tile-major: item i = (pair i / groups, group i % groups).
  // 32-bit unsigned arithmetic throughout (the host checks N * ctas and 32 * items < 2^32).
  const int rb = int(blockIdx.x * uint32_t(p.N) / uint32_t(p.ctas));
  const int re = int((blockIdx.x + 1) * uint32_t(p.N) / uint32_t(p.ctas));
  const int groups = (re - rb + 7) >> 3;
  const uint32_t items = uint32_t(groups * p.pairs);
  const int i0 = int(uint32_t(warp) * items / kWarps), i1 = int(uint32_t(warp + 1) * items / kWarps);
  const int pair0 = int(uint32_t(i0) / uint32_t(groups)), grp0 = i0 - pair0 * groups;

  const int row_g = rb + g, row_last = re - 1;
  const int kt_last = p.k_tiles - 1;
  const int tile_sh = p.block_shift > 7 ? p.block_shift - 7 : 0;  // tiles per scale block: 1 << tile_sh
  const uint32_t blks_per_tile = p.block_shift >= 7 ? 1u : 1u << (7 - p.block_shift);

  // Load side: per pair, the two tiles' code and scale base pointers; per item, one row.
  const uint8_t *qb0 = nullptr, *qb1 = nullptr;
  const uint16_t *sb0 = nullptr, *sb1 = nullptr, *zb0 = nullptr, *zb1 = nullptr;
  auto set_pair = [&](int pr) {
    const int kt0 = 2 * pr, kt1 = min(2 * pr + 1, kt_last);
    qb0 = p.codes + 16 * t + uint32_t(kt0) * (kTileK / 2);
    qb1 = p.codes + 16 * t + uint32_t(kt1) * (kTileK / 2);
    const uint32_t b0 = (uint32_t(kt0) >> tile_sh) * blks_per_tile, b1 = (uint32_t(kt1) >> tile_sh) * blks_per_tile;
    sb0 = p.scales + b0;
    sb1 = p.scales + b1;
    if constexpr (kDq == Dq::Int4Asym) {
      zb0 = p.zeros + b0;
      zb1 = p.zeros + b1;
    }
  };
  auto load_item = [&](Slot<kParts, kDq>& sl, int grp) {
    const uint32_t r = uint32_t(min(row_g + 8 * grp, row_last));
    sl.w0 = ld_stream16(qb0 + size_t(r) * p.ldq);
    sl.w1 = ld_stream16(qb1 + size_t(r) * p.ldq);
    sl.s0 = ld_scales<kParts>(sb0 + size_t(r) * p.lds);
    sl.s1 = ld_scales<kParts>(sb1 + size_t(r) * p.lds);
    if constexpr (kDq == Dq::Int4Asym) {
      sl.z0 = ld_scales<kParts>(zb0 + size_t(r) * p.lds);
      sl.z1 = ld_scales<kParts>(zb1 + size_t(r) * p.lds);
    }
  };

  // The ring's first kD items go out before anything else.
  Slot<kParts, kDq> ring[kD];
  int lp = pair0, lg = grp0;
  set_pair(lp);
#pragma unroll
  for (int d = 0; d < kD; ++d)
    if (i0 + d < i1) {
      load_item(ring[d], lg);
      if (++lg == groups) {
        lg = 0;
        set_pair(++lp);
      }
    }

  // x is the previous kernel's output (PDL: the weight loads above may overlap it).
  pdl_wait();
  stage_block<kWarps, kParts, kDq>(p, smem + (lut_addr - smem_base), xs, sums, slots, red, warp, lane);
  const bool add_residual = p.resid && p.add;
  if (add_residual) count_staged(p, red);

  float* my_slots = slots + warp * p.g_max * 8 + g;
  const unsigned char* x_lane = xs + (g & 1) * 64 + t * 16;
  int cp = pair0, cg = grp0, xpair = -1;
  uint32_t xb[16];
  for (int i = i0; i < i1;) {
#pragma unroll
    for (int d = 0; d < kD; ++d) {
      if (i < i1) {
        if (cp != xpair) {
          xpair = cp;
#pragma unroll
          for (int sp = 0; sp < 4; ++sp) {
            const uint4 v = *reinterpret_cast<const uint4*>(x_lane + cp * 512 + sp * 128);
            xb[4 * sp] = v.x;
            xb[4 * sp + 1] = v.y;
            xb[4 * sp + 2] = v.z;
            xb[4 * sp + 3] = v.w;
          }
        }
        const float v = compute_item<kParts, kDq>(ring[d], xb, sums + 2 * cp * kParts, sums + (2 * cp + 1) * kParts,
                                                  lut_lane, mask, magic);
        if (i + kD < i1) {
          load_item(ring[d], lg);
          if (++lg == groups) {
            lg = 0;
            set_pair(++lp);
          }
        }
        if (t == 0) my_slots[cg * 8] += v;
        if (++cg == groups) {
          cg = 0;
          ++cp;
        }
        ++i;
      }
    }
  }
  __syncthreads();
  for (int r = rb + int(threadIdx.x); r < re; r += kWarps * 32) {
    const int j = r - rb;
    float s = 0.f;
    for (int w = 0; w < kWarps; ++w) s += slots[(w * p.g_max + (j >> 3)) * 8 + (j & 7)];
    p.y[r] = __float2bfloat16_rn(s);
  }
  if (add_residual && red[0] != 0.0f) write_residual(p, kWarps * 32);
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
  launch_pdl(kernel, dim3(unsigned(p.ctas)), dim3(kWarps * 32), smem, stream, p);
}

/// (warps, ring depth): {16, 4}, {20, 3}, {24, 2}, {24, 3}, {32, 2}.
template <int kParts, Dq kDq>
void launch_stream_config(const StreamParams& p, size_t smem, int warps, int depth, cudaStream_t stream) {
  if (warps == 16)
    launch_stream<16, 4, kParts, kDq>(p, smem, stream);
  else if (warps == 32)
    launch_stream<32, 2, kParts, kDq>(p, smem, stream);
  else if (warps == 20)
    launch_stream<20, 3, kParts, kDq>(p, smem, stream);
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
                              W4GemvTuning tuning, const uint16_t* up, const float* x_scale,
                              const W4RmsNormInput* norm) {
  const DeviceQuery& dev = current_device();
  int warps = tuning.warps, depth = tuning.tiles;
  if (warps != 16 && warps != 20 && warps != 24 && warps != 32) {
    warps = 24;
    depth = 2;
  }
  const int parts = w.block >= kTileK ? 1 : kTileK / w.block;
  const bool lut = w.format != W4Format::INT4 && w.format != W4Format::INT4Asym;  // the codebook formats

  StreamParams p{};
  p.codes = w.codes.data();
  p.scales = w.scales.data();
  p.zeros = w.format == W4Format::INT4Asym ? w.zeros.data() : nullptr;
  p.x = x;
  p.up = up;
  p.x_scale = x_scale;
  p.y = reinterpret_cast<__nv_bfloat16*>(y);
  p.ldq = uint32_t(w.K_pad / 2);
  p.lds = uint32_t(w.blocks_pad);
  p.block_shift = __builtin_ctz(unsigned(w.block));
  p.K = int(w.K);
  p.N = int(w.N);
  p.k_tiles = int(w.K_pad / kTileK);
  p.pairs = (p.k_tiles + 1) / 2;
  p.ctas = int(std::min<int64_t>(w.N, std::max(dev.multiprocessors, 1)));
  const int64_t rows_max = (w.N + p.ctas - 1) / p.ctas;
  p.g_max = int((rows_max + 7) / 8);
  p.x_vec = reinterpret_cast<uintptr_t>(x) % 8 == 0 && (!up || reinterpret_cast<uintptr_t>(up) % 8 == 0);
  if (norm) {
    // The vector path of model_ops' norm_reg_kernel (whose sums rms_inv reproduces) and 32-bit element indices.
    const auto aligned = [](const void* q, uintptr_t a) { return reinterpret_cast<uintptr_t>(q) % a == 0; };
    if (w.K % 4 != 0 || w.K > 8 * 4 * kNormThreads || !aligned(norm->residual, 16) || !aligned(norm->weight, 16) ||
        (norm->add && (!aligned(norm->add, 8) || !norm->counter)) || warps * 32 < kNormThreads)
      return false;
    p.x = nullptr;
    p.up = nullptr;
    p.resid = norm->residual;
    p.add = norm->add;
    p.gamma = norm->weight;
    p.counter = norm->counter;
    p.eps = norm->eps;
  }
  p.base = w.format == W4Format::INT4 ? 136.0f : 128.0f;
  const std::array<float, 16> cb = w4_codebook(w.format);
  std::copy(cb.begin(), cb.end(), p.codebook);
  // Data area: x (2 * pairs tiles of 256 bytes), sums (INT4), slots; the LUT
  // (NF4/FP4) goes first at a 64 KB-aligned shared address: up to 64 KB of padding.
  size_t off = size_t(p.pairs) * 512;
  p.off_sums = uint32_t(off);
  off += lut ? 0 : size_t(p.pairs) * 2 * size_t(parts) * sizeof(float2);
  p.off_slots = uint32_t(off);
  off += size_t(warps) * size_t(p.g_max) * 8 * sizeof(float);
  p.off_red = uint32_t(off);
  off += size_t(warps) * sizeof(float);
  if (lut) off += 2 * size_t(kLutBytes);
  const int64_t items_max = int64_t(p.g_max) * p.pairs;
  if (off > dev.smem_per_block_optin || w.N * p.ctas >= (int64_t(1) << 32) || 32 * items_max >= (int64_t(1) << 32) ||
      int64_t(p.ldq) * w.N >= (int64_t(1) << 32) || w.blocks_pad * w.N * 2 >= (int64_t(1) << 32))
    return false;  // shared memory or 32-bit index arithmetic too small: the split-K kernel
  switch (w.format) {
    case W4Format::INT4: launch_stream_parts<Dq::Int4Sym>(p, off, warps, depth, stream); break;
    case W4Format::INT4Asym: launch_stream_parts<Dq::Int4Asym>(p, off, warps, depth, stream); break;
    default: launch_stream_parts<Dq::Lut>(p, off, warps, depth, stream); break;
  }
  return true;
}

}  // namespace kq::cuda
