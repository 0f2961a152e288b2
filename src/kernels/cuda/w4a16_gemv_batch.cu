// W4A16 decode GEMV for a small batch (M = 2..16 tokens): the "batch" kernel.
//
// Why a third kernel: the split-K kernel (w4a16_kernels.cu) gives each block
// 16 weight rows, so every block reads all of x from L2: at M = 16 that is
// 4 bytes of activations per byte of codes (16 tokens x 2 bytes against half
// a byte per weight), and at batch 16 the 4-bit decode was no faster than
// BF16 (docs/GPU.md).
//
// Work split: one block per SM (grid = multiprocessors, or N for small N);
// block c owns the rows [c·N/P, (c+1)·N/P) in 16-row groups (the last one
// partial: its missing rows repeat the block's last row, no DRAM traffic),
// so every SM moves the same weight bytes. The block's warps split K into
// contiguous 128-k tile ranges and walk them once per pass of up to kGP
// groups: for each tile, the warp's x tile (all tokens, 256 bytes each, at a
// 288-byte stride) is in shared memory, read into registers once and used for the kGP
// groups' items (16 rows x 128 k, 1 KB of codes each). So x is read from L2
// once per block and pass, not once per 16 rows.
//
// Pipelining, per warp and without block barriers inside a pass: kGP register
// slots hold the codes and scales of the current tile's items; each slot then
// loads the same group's item of the next tile (or of the next pass's first
// tile): NF4/FP4 item by item, INT4 once the tile is computed (its items step
// by step, so the kGP x token-half mma chains are independent). The next x
// tile is copied into the warp's second x buffer with cp.async while the
// current one is used.
//
// Compute: mma.sync m16n8k16 BF16 with A = 16 rows x 16 k of dequantized
// codes (unscaled: codebook values, or 128 + u for INT4, as in the split-K
// kernel) and B = 16 k x 8 tokens (two mmas for M > 8); block scales and
// zero points are applied to the FP32 partial sums. For INT4 the per-token
// activation sums (to remove the 128 + zero offset) come from one ones-mma
// per tile and part, shared by the tile's kGP items.
//
// End of a pass: each warp writes its partial sums to its shared-memory slots;
// after a barrier the block sums the warps' slots in a fixed order (the
// result does not depend on timing) and writes y.
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
constexpr int kLutBytes = 256 * 256;
constexpr uint32_t kOnes = 0x3F803F80u;  // BF16x2 (1, 1)

struct BatchParams {
  const uint8_t* codes;    // [N, ldq]
  const uint16_t* scales;  // BF16 [N, lds]
  const uint16_t* zeros;   // BF16 [N, lds] (INT4Asym) or null
  const uint16_t* x;       // BF16 [M, ldx]
  __nv_bfloat16* y;        // BF16 [M, ldy]
  int64_t ldq, lds, ldx, ldy;
  int block_shift;  // log2(block)
  int K, N, M;
  int k_tiles;         // K_pad / 128
  int ctas;            // gridDim.x
  bool x_vec16;        // rows 16-byte aligned (x 16-byte aligned, ldx % 8 == 0)
  float codebook[16];  // Lut only
};

/// Codes and scales (and zero points) of one item: rows g and g + 8 of a 16-row group, one 128-k tile.
template <int kParts, Dq kDq>
struct Item {
  uint4 w0, w1;
  uint32_t s[kParts][2];
  uint32_t z[kParts][2];  // INT4Asym only
};

/// An x tile buffer holds one 128-k tile of every token: token tok's 256
/// bytes at tok · kXStride. The stride of 288 bytes puts the 8-byte reads of
/// lanes (g = 0..3, t = 0..3) of a half warp (tokens g + 8j, k = 16s + 4t) on
/// 16 different bank pairs.
constexpr int kXStride = 288;

/// Copies x's tile kt (tokens 0..ntok-1, zeros past K) into a buffer, 16 bytes
/// (8 k) per lane and copy; x_vec16: rows 16-byte aligned (cp.async, which
/// zero-fills past K), else element loads.
__device__ __forceinline__ void stage_x(const BatchParams& p, unsigned char* buf, int kt, int lane,
                                        int ntok) {
  for (int c = lane; c < ntok * 16; c += 32) {
    const int tok = c >> 4, k = kt * kTileK + (c & 15) * 8;
    unsigned char* dst = buf + tok * kXStride + (c & 15) * 16;
    const uint16_t* row = p.x + int64_t(tok) * p.ldx;
    if (p.x_vec16) {
      const int valid = max(0, min(8, p.K - k));
      cp_async16(smem_addr(dst), valid > 0 ? row + k : row, 2 * valid);
    } else {
      uint32_t e[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) e[i] = k + i < p.K ? uint32_t(__ldg(row + k + i)) : 0u;
      *reinterpret_cast<uint4*>(dst) =
          make_uint4(e[0] | e[1] << 16, e[2] | e[3] << 16, e[4] | e[5] << 16, e[6] | e[7] << 16);
    }
  }
}

/// acc += the item's scale (and, for INT4, zero-point offset) applied to the
/// unscaled sums c of one part (a scale block) of the tile: rows g (c[j][0..1])
/// and g + 8 (c[j][2..3]); o: per token, the part's Σx (INT4 only).
template <int kParts, Dq kDq, int kN8>
__device__ __forceinline__ void add_scaled(float (&acc)[kN8][4], const float (&c)[kN8][4],
                                           const Item<kParts, kDq>& it, int part,
                                           const float (&o)[kDq == Dq::Lut ? 1 : kParts][kN8][4]) {
  const float s0 = bf16_bits_to_float(it.s[part][0]), s1 = bf16_bits_to_float(it.s[part][1]);
#pragma unroll
  for (int j = 0; j < kN8; ++j) {
    if constexpr (kDq == Dq::Lut) {
      acc[j][0] = fmaf(s0, c[j][0], acc[j][0]);
      acc[j][1] = fmaf(s0, c[j][1], acc[j][1]);
      acc[j][2] = fmaf(s1, c[j][2], acc[j][2]);
      acc[j][3] = fmaf(s1, c[j][3], acc[j][3]);
    } else {
      // 128 + zero point (INT4 symmetric codes are offset binary: zero 8).
      const float b0 = kDq == Dq::Int4Sym ? 136.0f : 128.0f + bf16_bits_to_float(it.z[part][0]);
      const float b1 = kDq == Dq::Int4Sym ? 136.0f : 128.0f + bf16_bits_to_float(it.z[part][1]);
      acc[j][0] = fmaf(s0, fmaf(-b0, o[part][j][0], c[j][0]), acc[j][0]);
      acc[j][1] = fmaf(s0, fmaf(-b0, o[part][j][1], c[j][1]), acc[j][1]);
      acc[j][2] = fmaf(s1, fmaf(-b1, o[part][j][2], c[j][2]), acc[j][2]);
      acc[j][3] = fmaf(s1, fmaf(-b1, o[part][j][3], c[j][3]), acc[j][3]);
    }
  }
}

template <int kWarps, int kGP, int kN8, Dq kDq>
__host__ __device__ constexpr size_t batch_smem_bytes() {
  return (kDq == Dq::Lut ? size_t(kLutBytes) : 0) + size_t(kWarps) * 2 * (8 * kN8) * kXStride +
         size_t(kWarps) * kGP * kN8 * 4 * 32 * sizeof(float);
}

template <int kWarps, int kGP, int kParts, Dq kDq, int kN8>
__global__ void __launch_bounds__(kWarps * 32, 1)
    w4a16_gemv_batch_kernel(const __grid_constant__ BatchParams p) {
  constexpr int kTok = 8 * kN8;
  constexpr int kXBytes = kTok * kXStride;
  constexpr int kSteps = 8 / kParts;
  constexpr int kSlot = kN8 * 4 * 32;  // floats per (warp, group) slot
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t lane4 = uint32_t(lane) << 2;
  const char* lut = reinterpret_cast<const char*>(smem);
  unsigned char* xbuf = smem + (kDq == Dq::Lut ? kLutBytes : 0) + warp * 2 * kXBytes;
  float* slots = reinterpret_cast<float*>(smem + (kDq == Dq::Lut ? kLutBytes : 0) + kWarps * 2 * kXBytes);

  const int rb = int(uint64_t(blockIdx.x) * uint64_t(p.N) / uint64_t(p.ctas));
  const int re = int(uint64_t(blockIdx.x + 1) * uint64_t(p.N) / uint64_t(p.ctas));
  const int groups = (re - rb + 15) >> 4;
  const int passes = (groups + kGP - 1) / kGP;
  const int kt_begin = warp * p.k_tiles / kWarps, kt_end = (warp + 1) * p.k_tiles / kWarps;
  const int ntiles = kt_end - kt_begin;
  const int ntok = min(p.M, kTok);

  auto load_item = [&](Item<kParts, kDq>& it, int grp, int kt) {
    const int64_t r0 = min(rb + 16 * grp + g, re - 1), r1 = min(rb + 16 * grp + g + 8, re - 1);
    const uint8_t* q = p.codes + int64_t(kt) * (kTileK / 2) + 16 * t;
    it.w0 = ld_stream16(q + r0 * p.ldq);
    it.w1 = ld_stream16(q + r1 * p.ldq);
    const int64_t blk = (int64_t(kt) * kTileK) >> p.block_shift;
#pragma unroll
    for (int part = 0; part < kParts; ++part) {
      it.s[part][0] = ld_u16(p.scales + r0 * p.lds + blk + part);
      it.s[part][1] = ld_u16(p.scales + r1 * p.lds + blk + part);
      if constexpr (kDq == Dq::Int4Asym) {
        it.z[part][0] = ld_u16(p.zeros + r0 * p.lds + blk + part);
        it.z[part][1] = ld_u16(p.zeros + r1 * p.lds + blk + part);
      }
    }
  };

  // The first tile's loads go out before anything else (weights are never
  // written, so before the PDL wait too).
  Item<kParts, kDq> ring[kGP];
  if (ntiles > 0) {
#pragma unroll
    for (int gi = 0; gi < kGP; ++gi)
      if (gi < groups) load_item(ring[gi], gi, kt_begin);
  }
  pdl_wait();
  if constexpr (kDq == Dq::Lut) fill_lut<kWarps * 32>(smem, p.codebook);
  // Tokens past M: zero rows in both buffers (their outputs are dropped; zeros keep the mma inputs defined).
  for (int i = lane; i < (kTok - ntok) * 2 * 16; i += 32) {
    const int b = i / ((kTok - ntok) * 16), r = i % ((kTok - ntok) * 16);
    *reinterpret_cast<uint4*>(xbuf + b * kXBytes + (ntok + r / 16) * kXStride + (r % 16) * 16) =
        make_uint4(0, 0, 0, 0);
  }
  if (ntiles > 0) stage_x(p, xbuf, kt_begin, lane, ntok);
  cp_async_commit();
  __syncthreads();  // the LUT

  int q = 0;  // this warp's step (pass, tile) counter: x buffer q & 1
  for (int pass = 0; pass < passes; ++pass) {
    float acc[kGP][kN8][4];
#pragma unroll
    for (int gi = 0; gi < kGP; ++gi)
#pragma unroll
      for (int j = 0; j < kN8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[gi][j][i] = 0.f;
    for (int kt = kt_begin; kt < kt_end; ++kt, ++q) {
      // The next step's tile: the next one of this pass, or this warp's first of the next pass.
      const bool last_tile = kt + 1 == kt_end;
      const int next_pass = last_tile ? pass + 1 : pass;
      const int next_kt = last_tile ? kt_begin : kt + 1;
      const bool has_next = next_pass < passes;
      if (has_next) stage_x(p, xbuf + ((q + 1) & 1) * kXBytes, next_kt, lane, ntok);
      cp_async_commit();
      cp_async_wait<1>();
      __syncwarp();
      const unsigned char* xc = xbuf + (q & 1) * kXBytes;
      uint32_t xr[kN8][16];
#pragma unroll
      for (int j = 0; j < kN8; ++j)
#pragma unroll
        for (int st = 0; st < 8; ++st) {
          const uint2 v = *reinterpret_cast<const uint2*>(xc + (g + 8 * j) * kXStride + 32 * st + 8 * t);
          xr[j][2 * st] = v.x;
          xr[j][2 * st + 1] = v.y;
        }
      __syncwarp();  // every lane has read this buffer before the next step's copy refills it
      // INT4: per token and part, Σx over the part's k (a ones-mma), shared by the kGP items.
      float o[kDq == Dq::Lut ? 1 : kParts][kN8][4];
      if constexpr (kDq != Dq::Lut) {
#pragma unroll
        for (int part = 0; part < kParts; ++part)
#pragma unroll
          for (int j = 0; j < kN8; ++j) {
#pragma unroll
            for (int i = 0; i < 4; ++i) o[part][j][i] = 0.f;
#pragma unroll
            for (int ss = 0; ss < kSteps; ++ss) {
              const int s = part * kSteps + ss;
              mma_bf16_16816(o[part][j], kOnes, kOnes, kOnes, kOnes, xr[j][2 * s], xr[j][2 * s + 1]);
            }
          }
      }
      const int gp = min(kGP, groups - pass * kGP);
      if constexpr (kDq == Dq::Lut) {
        // NF4 / FP4: item by item, each slot refilled as soon as its item is
        // done (interleaving the groups, as INT4 does below, measured slower
        // here: three items' table lookups in flight).
#pragma unroll
        for (int gi = 0; gi < kGP; ++gi) {
          if (gi < gp) {
#pragma unroll
            for (int part = 0; part < kParts; ++part) {
              float c[kN8][4] = {};
#pragma unroll
              for (int ss = 0; ss < kSteps; ++ss) {
                const int s = part * kSteps + ss;
                uint32_t a[4];
                a_operand_16rows<kDq>(a, ring[gi].w0, ring[gi].w1, s, lut, lane4);
#pragma unroll
                for (int j = 0; j < kN8; ++j)
                  mma_bf16_16816(c[j], a[0], a[1], a[2], a[3], xr[j][2 * s], xr[j][2 * s + 1]);
              }
              add_scaled<kParts, kDq, kN8>(acc[gi], c, ring[gi], part, o);
            }
            const int next_grp = next_pass * kGP + gi;
            if (has_next && next_grp < groups) load_item(ring[gi], next_grp, next_kt);
          }
        }
      } else {
        // INT4: the kGP items step by step (independent mma chains, one per item and token half).
#pragma unroll
        for (int part = 0; part < kParts; ++part) {
          float c[kGP][kN8][4] = {};
#pragma unroll
          for (int ss = 0; ss < kSteps; ++ss) {
            const int s = part * kSteps + ss;
#pragma unroll
            for (int gi = 0; gi < kGP; ++gi) {
              if (gi < gp) {
                uint32_t a[4];
                a_operand_16rows<kDq>(a, ring[gi].w0, ring[gi].w1, s, lut, lane4);
#pragma unroll
                for (int j = 0; j < kN8; ++j)
                  mma_bf16_16816(c[gi][j], a[0], a[1], a[2], a[3], xr[j][2 * s], xr[j][2 * s + 1]);
              }
            }
          }
#pragma unroll
          for (int gi = 0; gi < kGP; ++gi)
            if (gi < gp) add_scaled<kParts, kDq, kN8>(acc[gi], c[gi], ring[gi], part, o);
        }
        // Refill the slots with the next step's items (groups past the last: nothing; their sums are never
        // written).
        if (has_next) {
#pragma unroll
          for (int gi = 0; gi < kGP; ++gi) {
            const int next_grp = next_pass * kGP + gi;
            if (next_grp < groups) load_item(ring[gi], next_grp, next_kt);
          }
        }
      }
    }
    // Sum the warps' partial sums (fixed order) and write the pass's rows.
    float* my = slots + warp * kGP * kSlot;
#pragma unroll
    for (int gi = 0; gi < kGP; ++gi)
#pragma unroll
      for (int j = 0; j < kN8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) my[(gi * kN8 + j) * 128 + i * 32 + lane] = acc[gi][j][i];
    __syncthreads();
    const int gp = min(kGP, groups - pass * kGP);
    for (int e = threadIdx.x; e < gp * kSlot; e += kWarps * 32) {
      float s = 0.f;
#pragma unroll 4
      for (int w = 0; w < kWarps; ++w) s += slots[w * kGP * kSlot + e];
      const int ln = e & 31, i = (e >> 5) & 3, j = (e >> 7) % kN8, gi = e / kSlot;
      const int m = 8 * j + 2 * (ln & 3) + (i & 1);
      const int row = rb + 16 * (pass * kGP + gi) + (ln >> 2) + (i >> 1) * 8;
      if (m < p.M && row < re) p.y[int64_t(m) * p.ldy + row] = __float2bfloat16_rn(s);
    }
    if (pass + 1 < passes) __syncthreads();  // the slots are rewritten by the next pass
  }
  cp_async_wait<0>();
}

template <int kWarps, int kGP, int kParts, Dq kDq, int kN8>
bool launch_batch(const BatchParams& p, cudaStream_t stream) {
  constexpr size_t smem = batch_smem_bytes<kWarps, kGP, kN8, kDq>();
  if (smem > current_device().smem_per_block_optin) return false;
  auto kernel = w4a16_gemv_batch_kernel<kWarps, kGP, kParts, kDq, kN8>;
  static const bool attr = [&] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    return true;
  }();
  (void)attr;
  launch_pdl(kernel, dim3(unsigned(p.ctas)), dim3(kWarps * 32), smem, stream, p);
  return true;
}

/// (warps, groups per pass): {16, 3}, {12, 3}, {8, 4}; 0 = {16, 3} for M <= 8, {12, 3} above.
template <int kParts, Dq kDq, int kN8>
bool launch_batch_config(const BatchParams& p, int warps, cudaStream_t stream) {
  if (warps == 0) warps = kN8 == 1 ? 16 : 12;
  if (warps == 16) return launch_batch<16, 3, kParts, kDq, kN8>(p, stream);
  if (warps == 8) return launch_batch<8, 4, kParts, kDq, kN8>(p, stream);
  return launch_batch<12, 3, kParts, kDq, kN8>(p, stream);
}

template <Dq kDq>
bool launch_batch_parts(const BatchParams& p, int warps, cudaStream_t stream) {
  const int parts = p.block_shift >= 7 ? 1 : (p.block_shift == 6 ? 2 : 4);
  auto go = [&](auto parts_c) {
    constexpr int kP = decltype(parts_c)::value;
    return p.M > 8 ? launch_batch_config<kP, kDq, 2>(p, warps, stream)
                   : launch_batch_config<kP, kDq, 1>(p, warps, stream);
  };
  if (parts == 1) return go(std::integral_constant<int, 1>{});
  if (parts == 2) return go(std::integral_constant<int, 2>{});
  return go(std::integral_constant<int, 4>{});
}

}  // namespace

bool w4a16_gemv_batch_launch(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                             int64_t ldy, cudaStream_t stream, W4GemvTuning tuning) {
  if (M < 1 || M > 16 || w.N >= (int64_t(1) << 31) || w.K >= (int64_t(1) << 31)) return false;
  const DeviceQuery& dev = current_device();
  BatchParams p{};
  p.codes = w.codes.data();
  p.scales = w.scales.data();
  p.zeros = w.format == W4Format::INT4Asym ? w.zeros.data() : nullptr;
  p.x = x;
  p.y = reinterpret_cast<__nv_bfloat16*>(y);
  p.ldq = w.K_pad / 2;
  p.lds = w.blocks_pad;
  p.ldx = ldx;
  p.ldy = ldy;
  p.block_shift = __builtin_ctz(unsigned(w.block));
  p.K = int(w.K);
  p.N = int(w.N);
  p.M = int(M);
  p.k_tiles = int(w.K_pad / kTileK);
  p.ctas = int(std::min<int64_t>(w.N, std::max(dev.multiprocessors, 1)));
  p.x_vec16 = ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const std::array<float, 16> cb = w4_codebook(w.format);
  std::copy(cb.begin(), cb.end(), p.codebook);
  const int warps = tuning.warps == 8 || tuning.warps == 12 || tuning.warps == 16 ? tuning.warps : 0;
  switch (w.format) {
    case W4Format::INT4:
      return launch_batch_parts<Dq::Int4Sym>(p, warps, stream);
    case W4Format::INT4Asym:
      return launch_batch_parts<Dq::Int4Asym>(p, warps, stream);
    default:
      return launch_batch_parts<Dq::Lut>(p, warps, stream);
  }
}

}  // namespace kq::cuda
