// W4A16 kernels: the decode GEMV (mma.sync m16n8k16 BF16 fed from a
// byte -> BF16x2 lookup table) and the BF16 dequantization used for prefill.
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

constexpr int kLutWords = 256 * 32;  // 256 byte values x 32 lanes (lane-private copy: bank = lane)

struct Codebook16 {
  float v[16];
};

struct W4GemvParams {
  const uint8_t* codes;          // [N, ldq]
  int64_t ldq;                   // bytes per row = K_pad / 2
  const __nv_bfloat16* scales;   // [N, lds]
  const __nv_bfloat16* zeros;    // [N, lds] or null
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
  int row_groups;                // ceil(N / 16)
  float codebook[16];
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

/// Block scales (and zeros) as BF16x2 and 32 BF16 activations of token g for
/// this lane's part of one warp tile; the codes are loaded separately, ahead.
struct W4Operands {
  uint32_t s0, s1, z0, z1;
  uint32_t x[16];
};

template <bool kZero>
__device__ __forceinline__ void load_operands(W4Operands& o, const W4GemvParams& p, int64_t kq, int64_t r0,
                                              int64_t r1, int g) {
  const int64_t blk = kq >> p.block_shift;
  const __nv_bfloat16 s0 = p.scales[r0 * p.lds + blk], s1 = p.scales[r1 * p.lds + blk];
  o.s0 = as_u32(__halves2bfloat162(s0, s0));
  o.s1 = as_u32(__halves2bfloat162(s1, s1));
  if constexpr (kZero) {
    const __nv_bfloat16 z0 = p.zeros[r0 * p.lds + blk], z1 = p.zeros[r1 * p.lds + blk];
    o.z0 = as_u32(__halves2bfloat162(z0, z0));
    o.z1 = as_u32(__halves2bfloat162(z1, z1));
  } else {
    o.z0 = o.z1 = 0;
  }
  if (g >= p.M) {
#pragma unroll
    for (int i = 0; i < 16; ++i) o.x[i] = 0;
    return;
  }
  const uint16_t* xr = p.x + int64_t(g) * p.ldx + kq;
  if (p.x_vec && kq + 32 <= p.K) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(xr) + i);
      o.x[4 * i + 0] = v.x;
      o.x[4 * i + 1] = v.y;
      o.x[4 * i + 2] = v.z;
      o.x[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const uint32_t lo = kq + 2 * i < p.K ? uint32_t(__ldg(xr + 2 * i)) : 0u;
      const uint32_t hi = kq + 2 * i + 1 < p.K ? uint32_t(__ldg(xr + 2 * i + 1)) : 0u;
      o.x[i] = lo | (hi << 16);
    }
  }
}

template <bool kZero>
__device__ __forceinline__ uint32_t dequant(const uint32_t* lut, uint32_t byte, uint32_t s, uint32_t z) {
  __nv_bfloat162 v = as_bf162(lut[byte << 5]);
  if constexpr (kZero) v = __hsub2(v, as_bf162(z));
  return as_u32(__hmul2(v, as_bf162(s)));
}

/// 8 mma steps over this lane's 32 codes of rows g (w0) and g+8 (w1).
template <bool kZero>
__device__ __forceinline__ void compute_tile(float (&c)[4], const uint4& w0, const uint4& w1, const W4Operands& o,
                                             const uint32_t* lut) {
#pragma unroll
  for (int s = 0; s < 8; ++s) {
    // k slots of step s: this lane's pairs 2s (byte 2s) and 2s+1 (byte 2s+1).
    const uint32_t q0 = gemv::word(w0, s >> 1) >> ((s & 1) * 16);
    const uint32_t q1 = gemv::word(w1, s >> 1) >> ((s & 1) * 16);
    const uint32_t a0 = dequant<kZero>(lut, q0 & 0xFFu, o.s0, o.z0);         // row g,   pair 2s
    const uint32_t a1 = dequant<kZero>(lut, q1 & 0xFFu, o.s1, o.z1);         // row g+8, pair 2s
    const uint32_t a2 = dequant<kZero>(lut, (q0 >> 8) & 0xFFu, o.s0, o.z0);  // row g,   pair 2s+1
    const uint32_t a3 = dequant<kZero>(lut, (q1 >> 8) & 0xFFu, o.s1, o.z1);  // row g+8, pair 2s+1
    mma_bf16_16816(c, a0, a1, a2, a3, o.x[2 * s], o.x[2 * s + 1]);
  }
}

/// kWarps warps split K of each 16-row group; each warp first issues the code
/// loads of kUnroll tiles (32 bytes per lane each), then dequantizes and
/// multiplies them. A persistent grid walks the row groups.
template <int kWarps, int kUnroll, bool kZero>
__global__ void __launch_bounds__(kWarps * 32) w4a16_gemv_kernel(const __grid_constant__ W4GemvParams p) {
  extern __shared__ uint32_t smem[];
  uint32_t* lut_all = smem;                                 // [256][32]
  float* red = reinterpret_cast<float*>(smem + kLutWords);  // [kWarps][4][32]
  for (int i = threadIdx.x; i < kLutWords; i += kWarps * 32) {
    const int b = i >> 5;
    lut_all[i] = pack_bf16x2(p.codebook[b & 15], p.codebook[b >> 4]);
  }
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t* lut = lut_all + lane;
  for (int rg = blockIdx.x; rg < p.row_groups; rg += gridDim.x) {
    const int64_t n0 = int64_t(rg) * 16;
    const int64_t r0 = min(n0 + g, p.N - 1), r1 = min(n0 + g + 8, p.N - 1);
    const uint8_t* q0 = p.codes + r0 * p.ldq + 16 * t;
    const uint8_t* q1 = p.codes + r1 * p.ldq + 16 * t;
    float c[4] = {0.f, 0.f, 0.f, 0.f};
    for (int kt0 = warp; kt0 < p.k_tiles; kt0 += kUnroll * kWarps) {
      uint4 w0[kUnroll], w1[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int kt = kt0 + u * kWarps;
        if (kt < p.k_tiles) {
          w0[u] = gemv::ld_stream(q0 + int64_t(kt) * (kTileK / 2));
          w1[u] = gemv::ld_stream(q1 + int64_t(kt) * (kTileK / 2));
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int kt = kt0 + u * kWarps;
        if (kt < p.k_tiles) {
          W4Operands o;
          load_operands<kZero>(o, p, int64_t(kt) * kTileK + 32 * t, r0, r1, g);
          compute_tile<kZero>(c, w0[u], w1[u], o, lut);
        }
      }
    }
    gemv::reduce_store<kWarps>(c, red, n0, p.N, p.M, p.y, p.ldy, [](int, int64_t) { return 1.0f; });
  }
}

template <int kWarps, int kUnroll, bool kZero>
void launch_gemv(const W4GemvParams& p, cudaStream_t stream) {
  auto kernel = w4a16_gemv_kernel<kWarps, kUnroll, kZero>;
  const size_t smem = size_t(kLutWords) * 4 + size_t(kWarps) * 4 * 32 * 4;
  static const int blocks_per_sm = [&] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    int b = 0;
    KQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, kWarps * 32, smem));
    return std::max(b, 1);
  }();
  const int grid = std::min(p.row_groups, blocks_per_sm * current_device().multiprocessors);
  kernel<<<grid, kWarps * 32, smem, stream>>>(p);
  KQ_CUDA_CHECK_LAUNCH();
}

template <int kUnroll, bool kZero>
void launch_gemv_warps(const W4GemvParams& p, int warps, cudaStream_t stream) {
  if (warps == 16)
    launch_gemv<16, kUnroll, kZero>(p, stream);
  else if (warps == 8)
    launch_gemv<8, kUnroll, kZero>(p, stream);
  else
    launch_gemv<4, kUnroll, kZero>(p, stream);
}

template <bool kZero>
void launch_gemv_tuned(const W4GemvParams& p, W4GemvTuning tuning, cudaStream_t stream) {
  int warps = tuning.warps;
  if (warps != 4 && warps != 8 && warps != 16) {
    // Split K over enough warps to keep ~32 warps per SM busy, with at least
    // one full unrolled step per warp.
    const int sms = current_device().multiprocessors;
    const int64_t want = (int64_t(sms) * 32 + p.row_groups - 1) / p.row_groups;
    warps = want <= 4 ? 4 : (want <= 8 ? 8 : 16);
    while (warps > 4 && p.k_tiles < 2 * warps) warps /= 2;
  }
  if (tuning.unroll == 4)
    launch_gemv_warps<4, kZero>(p, warps, stream);
  else
    launch_gemv_warps<2, kZero>(p, warps, stream);
}

__global__ void w4_dequant_kernel(const uint8_t* __restrict__ codes, int64_t ldq, const __nv_bfloat16* __restrict__ scales,
                                  const __nv_bfloat16* __restrict__ zeros, int64_t lds, int block_shift, int64_t K,
                                  int64_t N, __nv_bfloat16* __restrict__ out, int64_t ldo, Codebook16 cb) {
  const int64_t bytes_per_row = (K + 1) / 2;
  const int64_t total = N * bytes_per_row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / bytes_per_row, j = i - n * bytes_per_row;
    const uint32_t b = codes[n * ldq + j];
    const int64_t k = 2 * j;
    const int64_t blk = k >> block_shift;  // k and k+1 share a block (blocks are even)
    const float s = __bfloat162float(scales[n * lds + blk]);
    const float z = zeros ? __bfloat162float(zeros[n * lds + blk]) : 0.0f;
    out[n * ldo + k] = __float2bfloat16_rn((cb.v[b & 15u] - z) * s);
    if (k + 1 < K) out[n * ldo + k + 1] = __float2bfloat16_rn((cb.v[b >> 4] - z) * s);
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
  p.row_groups = int((w.N + 15) / 16);
  const std::array<float, 16> cb = w4_codebook(w.format);
  std::copy(cb.begin(), cb.end(), p.codebook);
  if (p.zeros)
    launch_gemv_tuned<true>(p, tuning, stream);
  else
    launch_gemv_tuned<false>(p, tuning, stream);
}

void w4_dequantize_launch(const W4Weight& w, uint16_t* out, int64_t ldo, cudaStream_t stream) {
  Codebook16 cb{};
  const std::array<float, 16> v = w4_codebook(w.format);
  std::copy(v.begin(), v.end(), cb.v);
  const int64_t total = w.N * ((w.K + 1) / 2);
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t(current_device().multiprocessors) * 16);
  w4_dequant_kernel<<<unsigned(blocks), threads, 0, stream>>>(
      w.codes.data(), w.K_pad / 2, reinterpret_cast<const __nv_bfloat16*>(w.scales.data()),
      w.format == W4Format::INT4Asym ? reinterpret_cast<const __nv_bfloat16*>(w.zeros.data()) : nullptr,
      w.blocks_pad, __builtin_ctz(unsigned(w.block)), w.K, w.N, reinterpret_cast<__nv_bfloat16*>(out), ldo, cb);
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace kq::cuda
