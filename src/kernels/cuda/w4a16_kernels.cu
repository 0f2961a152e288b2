// W4A16 kernels: the decode GEMV (mma.sync m16n8k16 BF16, see
// gemv_common.cuh for the warp tile) and the BF16 dequantization for prefill.
//
// Dequantization to BF16x2 pairs (two consecutive k of one row):
//  * NF4 / FP4 (codebooks): a byte -> BF16x2 lookup table in shared memory,
//    one copy per lane (entry stride 256 bytes, lane l reads word l, so the 32
//    lanes always hit 32 different banks). One PRMT builds the byte address
//    (code byte << 8 | lane << 2) and one LDS fetches the pair.
//  * INT4 (arithmetic): codes are stored interleaved (w4a16.hpp), so one
//    LOP3 turns two 4-bit codes u into the BF16 pair (128 + u) — exponent of
//    128, u in the low mantissa bits — and a subtraction of (128 + zero) is exact.
// Both then multiply by the block scale (one BF16 rounding) before the mma.
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
  bool x_vec;                    // rows 16-byte aligned and ldx % 8 == 0
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

__device__ __forceinline__ __nv_bfloat162 as_bf162(uint32_t u) { return *reinterpret_cast<__nv_bfloat162*>(&u); }
__device__ __forceinline__ uint32_t as_u32(__nv_bfloat162 v) { return *reinterpret_cast<uint32_t*>(&v); }

__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// The BF16x2 scale (and, for INT4, bias 128 + zero) of one row's block.
template <Dq kDq>
__device__ __forceinline__ void load_scale(uint32_t& s, uint32_t& b, const W4GemvParams& p, int64_t row,
                                           int64_t blk) {
  const __nv_bfloat16 sv = p.scales[row * p.lds + blk];
  s = as_u32(__halves2bfloat162(sv, sv));
  if constexpr (kDq == Dq::Int4Asym) {
    const __nv_bfloat16 z = __hadd(p.zeros[row * p.lds + blk], __float2bfloat16_rn(128.0f));  // exact: z <= 15
    b = as_u32(__halves2bfloat162(z, z));
  } else if constexpr (kDq == Dq::Int4Sym) {
    b = 0x43084308u;  // BF16x2 (136, 136): stored codes are q ^ 8, value = u - 8
  } else {
    b = 0;
  }
}

/// 32 BF16 activations of token g at this lane's k = kq .. kq+31 (zeros past K or for g >= M).
__device__ __forceinline__ void load_x(uint32_t (&x)[16], const W4GemvParams& p, int64_t kq, int g) {
  if (g >= p.M) {
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = 0;
    return;
  }
  const uint16_t* xr = p.x + int64_t(g) * p.ldx + kq;
  if (p.x_vec && kq + 32 <= p.K) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xr) + i);
      x[4 * i + 0] = v.x;
      x[4 * i + 1] = v.y;
      x[4 * i + 2] = v.z;
      x[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const uint32_t lo = kq + 2 * i < p.K ? uint32_t(__ldg(xr + 2 * i)) : 0u;
      const uint32_t hi = kq + 2 * i + 1 < p.K ? uint32_t(__ldg(xr + 2 * i + 1)) : 0u;
      x[i] = lo | (hi << 16);
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

template <Dq kDq>
__device__ __forceinline__ uint32_t scale_pair(uint32_t v, uint32_t s, uint32_t b) {
  __nv_bfloat162 r = as_bf162(v);
  if constexpr (kDq != Dq::Lut) r = __hsub2(r, as_bf162(b));
  return as_u32(__hmul2(r, as_bf162(s)));
}

/// 8 mma steps over this lane's 32 codes of rows g (w0) and g+8 (w1). Step s
/// covers this lane's k = 4s .. 4s+3: pairs (4s, 4s+1) -> A regs 0/1 and
/// (4s+2, 4s+3) -> A regs 2/3, matching x words 2s and 2s+1.
template <Dq kDq>
__device__ __forceinline__ void compute_tile(float (&c)[4], const uint4& w0, const uint4& w1, uint32_t s0,
                                             uint32_t s1, uint32_t b0, uint32_t b1, const uint32_t (&x)[16],
                                             const char* lut, uint32_t lane4) {
#pragma unroll
  for (int s = 0; s < 8; ++s) {
    const uint32_t q0 = gemv::word(w0, s >> 1), q1 = gemv::word(w1, s >> 1);
    uint32_t a0, a1, a2, a3;
    if constexpr (kDq == Dq::Lut) {
      // Plain packing: byte j of a row holds k = 2j (low nibble) and 2j+1.
      const int i = 2 * (s & 1);
      a0 = lut_pair(lut, lane4, q0, i);
      a1 = lut_pair(lut, lane4, q1, i);
      a2 = lut_pair(lut, lane4, q0, i + 1);
      a3 = lut_pair(lut, lane4, q1, i + 1);
    } else {
      // Interleaved packing: nibble j of a word holds k = 2j, nibble j+4 holds 2j+1.
      const int sh = 8 * (s & 1);
      a0 = int4_pair(q0 >> sh);
      a1 = int4_pair(q1 >> sh);
      a2 = int4_pair(q0 >> (sh + 4));
      a3 = int4_pair(q1 >> (sh + 4));
    }
    a0 = scale_pair<kDq>(a0, s0, b0);
    a1 = scale_pair<kDq>(a1, s1, b1);
    a2 = scale_pair<kDq>(a2, s0, b0);
    a3 = scale_pair<kDq>(a3, s1, b1);
    mma_bf16_16816(c, a0, a1, a2, a3, x[2 * s], x[2 * s + 1]);
  }
}

constexpr size_t smem_bytes(int warps, Dq dq) {
  return size_t(warps) * 4 * 32 * sizeof(float) + (dq == Dq::Lut ? size_t(kLutBytes) : 0);
}

/// What one chunk of kUnroll tiles needs from memory that is far away (codes
/// and block scales): loaded one chunk ahead of its use.
template <int kUnroll>
struct Stage {
  uint4 w[kUnroll][2];
  uint32_t s[kUnroll][2], b[kUnroll][2];
};

/// Where a warp is in its sequence of work items: row group `rg` (16 rows),
/// chunk `c` of its tiles in that group.
struct Cursor {
  int rg, c;
};

/// The warp's state: its place in the grid and the accumulators.
template <int kWarps, int kUnroll, Dq kDq>
struct Walker {
  const W4GemvParams& p;
  const char* lut;
  float* red;
  int warp, g, t, groups, chunks;  // chunks per group for this warp
  uint32_t lane4;
  float c[4];

  __device__ __forceinline__ int64_t row(int rg, int h) const {
    return min(int64_t(rg) * 16 + 8 * h + g, p.N - 1);
  }
  __device__ __forceinline__ int tile(int chunk, int u) const { return warp + (chunk * kUnroll + u) * kWarps; }

  __device__ __forceinline__ void load(Stage<kUnroll>& st, Cursor at) const {
    const int64_t r0 = row(at.rg, 0), r1 = row(at.rg, 1);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int kt = tile(at.c, u);
      if (kt < p.k_tiles) {
        const int64_t kq = int64_t(kt) * kTileK + 32 * t;
        st.w[u][0] = gemv::ld_stream(p.codes + r0 * p.ldq + kq / 2);
        st.w[u][1] = gemv::ld_stream(p.codes + r1 * p.ldq + kq / 2);
        const int64_t blk = kq >> p.block_shift;
        load_scale<kDq>(st.s[u][0], st.b[u][0], p, r0, blk);
        load_scale<kDq>(st.s[u][1], st.b[u][1], p, r1, blk);
      }
    }
  }

  __device__ __forceinline__ void compute(const Stage<kUnroll>& st, Cursor at) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int kt = tile(at.c, u);
      if (kt < p.k_tiles) {
        uint32_t x[16];
        load_x(x, p, int64_t(kt) * kTileK + 32 * t, g);
        compute_tile<kDq>(c, st.w[u][0], st.w[u][1], st.s[u][0], st.s[u][1], st.b[u][0], st.b[u][1], x, lut,
                          lane4);
      }
    }
  }

  __device__ __forceinline__ Cursor next(Cursor at) const {
    return at.c + 1 < chunks ? Cursor{at.rg, at.c + 1} : Cursor{at.rg + int(gridDim.x), 0};
  }

  /// One work item: prefetch the next into `nxt`, compute `cur`, and finish the
  /// row group when this was its last chunk. Returns the next cursor.
  __device__ __forceinline__ Cursor step(Stage<kUnroll>& cur, Stage<kUnroll>& nxt, Cursor at) {
    const Cursor nx = next(at);
    if (nx.rg < groups) load(nxt, nx);
    compute(cur, at);
    if (nx.c == 0) {
      gemv::reduce_store<kWarps>(c, red, int64_t(at.rg) * 16, p.N, p.M, p.y, p.ldy,
                                 [](int, int64_t) { return 1.0f; });
#pragma unroll
      for (int i = 0; i < 4; ++i) c[i] = 0.f;
    }
    return nx;
  }
};

/// kWarps warps split the 128-k tiles of each 16-row group (warp w takes tiles
/// w, w + kWarps, ...) in chunks of kUnroll tiles; a persistent grid walks the
/// row groups. Each warp streams its chunks with one chunk of codes and scales
/// in flight while it dequantizes and multiplies the previous one, across row
/// groups too, so a memory latency is paid once per warp, not once per chunk.
template <int kWarps, int kUnroll, Dq kDq>
__global__ void __launch_bounds__(kWarps * 32) w4a16_gemv_kernel(const __grid_constant__ W4GemvParams p) {
  extern __shared__ __align__(16) uint32_t smem[];
  float* red = reinterpret_cast<float*>(smem);                     // [kWarps][4][32]
  char* lut = reinterpret_cast<char*>(smem + kWarps * 4 * 32);     // [256][256 bytes]
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
  const int tiles = warp < p.k_tiles ? (p.k_tiles - warp + kWarps - 1) / kWarps : 0;
  Walker<kWarps, kUnroll, kDq> wk{p,         lut,      red, warp, lane >> 2, lane & 3, int((p.N + 15) / 16),
                                  (tiles + kUnroll - 1) / kUnroll, uint32_t(lane) << 2, {0.f, 0.f, 0.f, 0.f}};
  if (wk.chunks == 0) {  // no tiles: still take part in every row group's reduction
    for (int rg = blockIdx.x; rg < wk.groups; rg += gridDim.x)
      gemv::reduce_store<kWarps>(wk.c, red, int64_t(rg) * 16, p.N, p.M, p.y, p.ldy, [](int, int64_t) { return 1.0f; });
    return;
  }
  Stage<kUnroll> a, b;
  Cursor at{int(blockIdx.x), 0};
  if (at.rg < wk.groups) wk.load(a, at);
  while (at.rg < wk.groups) {
    at = wk.step(a, b, at);
    if (at.rg >= wk.groups) break;
    at = wk.step(b, a, at);
  }
}

template <int kWarps, int kUnroll, Dq kDq>
void launch_gemv(const W4GemvParams& p, cudaStream_t stream) {
  auto kernel = w4a16_gemv_kernel<kWarps, kUnroll, kDq>;
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

template <int kUnroll, Dq kDq>
void launch_gemv_warps(const W4GemvParams& p, int warps, cudaStream_t stream) {
  if (warps == 16)
    launch_gemv<16, kUnroll, kDq>(p, stream);
  else if (warps == 8)
    launch_gemv<8, kUnroll, kDq>(p, stream);
  else
    launch_gemv<4, kUnroll, kDq>(p, stream);
}

template <Dq kDq>
void launch_gemv_tuned(const W4GemvParams& p, W4GemvTuning tuning, cudaStream_t stream) {
  const int unroll = tuning.unroll == 4 ? 4 : 2;
  int warps = tuning.warps;
  if (warps != 4 && warps != 8 && warps != 16) {
    // Enough warps per row group to keep ~32 warps per SM busy, each with at
    // least two chunks to stream.
    const int sms = current_device().multiprocessors;
    const int64_t groups = (p.N + 15) / 16;
    const int64_t want = (int64_t(sms) * 32 + groups - 1) / groups;
    warps = want <= 4 ? 4 : (want <= 8 ? 8 : 16);
    while (warps > 4 && p.k_tiles < 2 * unroll * warps) warps /= 2;
  }
  if (unroll == 4)
    launch_gemv_warps<4, kDq>(p, warps, stream);
  else
    launch_gemv_warps<2, kDq>(p, warps, stream);
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
    uint32_t u;
    if constexpr (kDq == Dq::Lut) {
      u = (row[k >> 1] >> (4 * (k & 1))) & 15u;
    } else {
      const int e = int(k & 7), nib = (e >> 1) + (e & 1) * 4;
      u = (row[(k >> 3) * 4 + (nib >> 1)] >> (4 * (nib & 1))) & 15u;
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
  p.x_vec = ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
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
