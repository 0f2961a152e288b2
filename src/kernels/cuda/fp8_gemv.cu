// FP8 E4M3 and INT8 W8A8 decode GEMVs through mma.sync m16n8k32 (E4M3 with
// FP32 accumulators, or S8 with exact INT32 accumulators; see fp8_gemv.hpp and
// the warp-tile mapping in gemv_common.cuh). The codes go straight from the
// 16-byte loads into the mma's A/B registers: no dequantization at all.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_info.hpp"
#include "kernels/cuda/fp8_gemv.hpp"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"

namespace kq::cuda {
namespace {

using gemv::kTileK;

struct Fp8GemvParams {
  const uint8_t* x8;   // [M, K_pad]
  const float* sx;     // [M]
  const uint8_t* w8;   // [>= N, K_pad]
  const float* sw;     // [N]
  int64_t K_pad;
  __nv_bfloat16* y;    // [M, ldy]
  int64_t ldy;
  int64_t N;
  int M;
  int k_tiles;
  int row_groups;
};

/// C[16x8] += A[16x32] · B[32x8] on 8-bit codes; the fragment layouts of the
/// E4M3 and S8 shapes are the same (PTX ISA, "mma.m16n8k32").
struct E4m3Mma {
  using Acc = float;
  __device__ static void mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                             uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
};
struct S8Mma {
  using Acc = int32_t;
  __device__ static void mma(int32_t (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                             uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
};

/// This lane's 32 bytes of rows g and g+8 and of tokens g + 8j (j < kN8: one
/// or two halves of 8 tokens), for one 128-k tile.
template <int kN8 = 1>
struct Fp8Tile {
  uint4 wg[2], wg8[2], x[kN8][2];
};

/// The weight half of load_tile: rows r0 and r1 (no kernel writes them, so
/// this may run before the PDL wait).
template <int kN8>
__device__ __forceinline__ void load_tile_w(Fp8Tile<kN8>& tl, const Fp8GemvParams& p, int kt, int64_t r0,
                                            int64_t r1, int t) {
  const int64_t kq = int64_t(kt) * kTileK + 32 * t;
  const uint8_t* a = p.w8 + r0 * p.K_pad + kq;
  const uint8_t* b = p.w8 + r1 * p.K_pad + kq;
  tl.wg[0] = gemv::ld_stream(a);
  tl.wg[1] = gemv::ld_stream(a + 16);
  tl.wg8[0] = gemv::ld_stream(b);
  tl.wg8[1] = gemv::ld_stream(b + 16);
}

/// The activation half of load_tile: tokens g + 8j (zeros past M).
template <int kN8>
__device__ __forceinline__ void load_tile_x(Fp8Tile<kN8>& tl, const Fp8GemvParams& p, int kt, int g, int t) {
  const int64_t kq = int64_t(kt) * kTileK + 32 * t;
#pragma unroll
  for (int j = 0; j < kN8; ++j) {
    if (g + 8 * j < p.M) {
      const uint4* xr = reinterpret_cast<const uint4*>(p.x8 + int64_t(g + 8 * j) * p.K_pad + kq);
      tl.x[j][0] = __ldg(xr);
      tl.x[j][1] = __ldg(xr + 1);
    } else {
      tl.x[j][0] = tl.x[j][1] = make_uint4(0, 0, 0, 0);
    }
  }
}

template <int kN8>
__device__ __forceinline__ void load_tile(Fp8Tile<kN8>& tl, const Fp8GemvParams& p, int kt, int64_t r0,
                                          int64_t r1, int g, int t) {
  load_tile_w(tl, p, kt, r0, r1, t);
  load_tile_x(tl, p, kt, g, t);
}

template <class Mma, int kN8>
__device__ __forceinline__ void compute_tile(typename Mma::Acc (&c)[kN8][4], const Fp8Tile<kN8>& tl) {
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    // Step s uses this lane's bytes 8s..8s+7: words 2s (k slots 4t..4t+3) and 2s+1 (4t+16..4t+19).
    const int u = s >> 1, w = (s & 1) * 2;
#pragma unroll
    for (int j = 0; j < kN8; ++j)
      Mma::mma(c[j], gemv::word(tl.wg[u], w), gemv::word(tl.wg8[u], w), gemv::word(tl.wg[u], w + 1),
               gemv::word(tl.wg8[u], w + 1), gemv::word(tl.x[j][u], w), gemv::word(tl.x[j][u], w + 1));
  }
}

/// Before waiting for the previous kernel (PDL): asks L2 for this block's
/// first row group's first `tiles` tiles per warp (weights are written by no
/// kernel), so DRAM is busy while the wait lasts.
template <int kWarps>
__device__ __forceinline__ void prefetch_first_tiles(const Fp8GemvParams& p, int tiles, int warp, int g, int t) {
  if (int(blockIdx.x) >= p.row_groups) return;
  const int64_t n0 = int64_t(blockIdx.x) * 16;
  const int64_t r0 = min(n0 + g, p.N - 1), r1 = min(n0 + g + 8, p.N - 1);
  for (int kt = warp; kt < p.k_tiles && kt < warp + tiles * kWarps; kt += kWarps) {
    const int64_t kq = int64_t(kt) * kTileK + 32 * t;
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p.w8 + r0 * p.K_pad + kq));
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p.w8 + r1 * p.K_pad + kq));
  }
}

/// kTiles: 128-k tiles a warp loads before computing them (bytes in flight
/// per lane: 64 · kTiles of weights); 4 halves the serial load -> compute
/// trips of long rows but measured slower (fewer warps fit: registers).
template <class Mma, int kWarps, int kTiles>
__global__ void __launch_bounds__(kWarps * 32) w8_gemv_kernel(const __grid_constant__ Fp8GemvParams p) {
  using Acc = typename Mma::Acc;
  __shared__ Acc red[kWarps * 4 * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  prefetch_first_tiles<kWarps>(p, kTiles, warp, g, t);
  pdl_wait();
  for (int rg = blockIdx.x; rg < p.row_groups; rg += gridDim.x) {
    const int64_t n0 = int64_t(rg) * 16;
    const int64_t r0 = min(n0 + g, p.N - 1), r1 = min(n0 + g + 8, p.N - 1);
    Acc c[1][4] = {{0, 0, 0, 0}};
    for (int kt = warp; kt < p.k_tiles; kt += kTiles * kWarps) {
      Fp8Tile<1> tl[kTiles];
#pragma unroll
      for (int u = 0; u < kTiles; ++u)
        if (kt + u * kWarps < p.k_tiles) load_tile(tl[u], p, kt + u * kWarps, r0, r1, g, t);
#pragma unroll
      for (int u = 0; u < kTiles; ++u)
        if (kt + u * kWarps < p.k_tiles) compute_tile<Mma, 1>(c, tl[u]);
    }
    const float* sx = p.sx;
    const float* sw = p.sw;
    gemv::reduce_store<kWarps>(c[0], red, n0, p.N, p.M, p.y, p.ldy,
                               [sx, sw](int m, int64_t n) { return sx[m] * sw[n]; });
  }
}

/// The same GEMV software-pipelined across row groups: each warp walks its
/// tiles (row group rg = blockIdx.x, blockIdx.x + gridDim.x, ...; tile kt =
/// warp, warp + kWarps, ...) as one sequence through a ring of kDepth tile
/// buffers, loading tile i + kDepth - 1 (in the next row group once this
/// one's are issued) before computing tile i, so loads stay in flight during
/// every compute and every row group's reduction instead of stopping at each
/// row-group boundary. Each warp adds its tiles in the same order as
/// w8_gemv_kernel, so the results are the same.
/// kDepth 2 asks for 2 blocks per SM (64 registers at 16 warps: INT8 measured
/// faster so, FP8 slower; pipe_depth picks per type) where one token half
/// (kN8 = 1, M <= 8); two halves (M = 9..16) keep one block per SM.
template <class Mma, int kWarps, int kDepth, int kN8>
__global__ void __launch_bounds__(kWarps * 32, kDepth == 2 && kN8 == 1 ? 2 : 1)
    w8_gemv_pipe_kernel(const __grid_constant__ Fp8GemvParams p) {
  using Acc = typename Mma::Acc;
  __shared__ Acc red[kWarps * 4 * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  // Next tile of a cursor; true when it leaves its row group.
  const auto advance = [&](int& r, int& k) {
    k += kWarps;
    if (k < p.k_tiles) return false;
    k = warp;
    r += int(gridDim.x);
    return true;
  };
  int rg = blockIdx.x, kt = warp;  // the tile computed next
  int lrg = rg, lkt = kt;          // the tile loaded next
  Fp8Tile<kN8> ring[kDepth];
  // Before waiting for the previous kernel (PDL): the weights of the ring's
  // first kDepth - 1 tiles (written by no kernel) go out, so DRAM is busy
  // while the wait lasts; their activations follow the wait.
  // (It replaced an L2 prefetch of the same tiles, as w8_gemv_kernel's: with
  // the one-row kernels' early pdl_launch_dependents, the Llama-7B decode
  // measured 3-5 % faster so, FP8 / INT8 alike, H200; docs/GPU.md.)
  if (warp < p.k_tiles) {
#pragma unroll
    for (int d = 0; d + 1 < kDepth; ++d) {
      if (lrg < p.row_groups) {
        const int64_t n0 = int64_t(lrg) * 16;
        load_tile_w(ring[d], p, lkt, min(n0 + g, p.N - 1), min(n0 + g + 8, p.N - 1), t);
      }
      advance(lrg, lkt);
    }
  }
  pdl_wait();
  const float* sx = p.sx;
  const float* sw = p.sw;
  // Token half j's sums: rows m + 8j of y and of the activation scales.
  const auto store = [&](Acc(&c)[kN8][4], int64_t n0) {
#pragma unroll
    for (int j = 0; j < kN8; ++j)
      gemv::reduce_store<kWarps>(c[j], red, n0, p.N, p.M - 8 * j, p.y + int64_t(8 * j) * p.ldy, p.ldy,
                                 [sx, sw, j](int m, int64_t n) { return sx[m + 8 * j] * sw[n]; });
  };
  if (warp >= p.k_tiles) {  // no tiles (K < 128 · kWarps): zeros into every row group's reduction
    for (int r = blockIdx.x; r < p.row_groups; r += gridDim.x) {
      Acc c[kN8][4] = {};
      store(c, int64_t(r) * 16);
    }
    return;
  }
  if (int(blockIdx.x) >= p.row_groups) return;
  const auto load = [&](Fp8Tile<kN8>& tl, int r, int k) {
    const int64_t n0 = int64_t(r) * 16;
    load_tile(tl, p, k, min(n0 + g, p.N - 1), min(n0 + g + 8, p.N - 1), g, t);
  };
  int xrg = rg, xkt = kt;  // the activations of the tiles loaded before the wait
#pragma unroll
  for (int d = 0; d + 1 < kDepth; ++d) {
    if (xrg < p.row_groups) load_tile_x(ring[d], p, xkt, g, t);
    advance(xrg, xkt);
  }
  Acc c[kN8][4] = {};
  // One step on ring slot D (a compile-time index, whether or not the loop
  // below is unrolled: the ring must stay in registers); false when done.
  const auto step = [&](auto D) {
    constexpr int d = decltype(D)::value;
    if (lrg < p.row_groups) load(ring[(d + kDepth - 1) % kDepth], lrg, lkt);
    advance(lrg, lkt);
    compute_tile<Mma, kN8>(c, ring[d]);
    const int done = rg;
    if (!advance(rg, kt)) return true;
    store(c, int64_t(done) * 16);
#pragma unroll
    for (int j = 0; j < kN8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) c[j][i] = 0;
    return rg < p.row_groups;
  };
  using S0 = std::integral_constant<int, 0>;
  using S1 = std::integral_constant<int, 1>;
  using S2 = std::integral_constant<int, 2>;
  if constexpr (kDepth == 2) {
    while (step(S0{}) && step(S1{})) {
    }
  } else {
    while (step(S0{}) && step(S1{}) && step(S2{})) {
    }
  }
}

template <class Mma, int kWarps, int kDepth, int kN8 = 1>
void launch_pipe(const Fp8GemvParams& p, cudaStream_t stream) {
  auto kernel = w8_gemv_pipe_kernel<Mma, kWarps, kDepth, kN8>;
  static int blocks_per_sm = [&] {
    int b = 0;
    KQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, kWarps * 32, 0));
    return std::max(b, 1);
  }();
  const int grid = std::min(p.row_groups, blocks_per_sm * current_device().multiprocessors);
  launch_pdl(kernel, dim3(unsigned(grid)), dim3(kWarps * 32), 0, stream, p);
}

/// Tile buffers of the pipelined W8 GEMV (w8_gemv_pipe_kernel): 3 for FP8
/// and INT8. Measured on the H200 (Llama-7B decode b=1, same call): FP8 3
/// (352.0 tok/s vs 336.9 with 2; 331.3 with w8_gemv_kernel in an earlier
/// call); INT8 took 2 (whose kernel fits 2 blocks per SM: 357.4 vs 351.9 with
/// 3) until the first tiles' weights were loaded before the PDL wait and the
/// one-row kernels triggered early (stop 12): then 3 measured 373.5 / 372.3
/// vs 361.3 / 361.2 tok/s with 2 (FP8 unchanged, 369.0 / 367.3 vs 369.3 /
/// 369.4). KQ_W8_GEMV_PIPE=2 or 3 forces one for both, 0 selects
/// w8_gemv_kernel (A/B runs).
template <class Mma>
int pipe_depth() {
  static const int depth = [] {
    const char* e = std::getenv("KQ_W8_GEMV_PIPE");
    const int fallback = 3;
    const int v = e ? std::atoi(e) : fallback;
    return v == 0 || v == 2 || v == 3 ? v : fallback;
  }();
  return depth;
}

template <class Mma, int kWarps, int kTiles>
void launch(const Fp8GemvParams& p, cudaStream_t stream) {
  static int blocks_per_sm = [] {
    int b = 0;
    KQ_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, w8_gemv_kernel<Mma, kWarps, kTiles>, kWarps * 32, 0));
    return std::max(b, 1);
  }();
  const int grid = std::min(p.row_groups, blocks_per_sm * current_device().multiprocessors);
  launch_pdl(w8_gemv_kernel<Mma, kWarps, kTiles>, dim3(unsigned(grid)), dim3(kWarps * 32), 0, stream, p);
}

/// Tiles in flight per warp: 2. KQ_FP8_GEMV_TILES=4 selects 4 where a warp
/// has at least 3 tiles of a row group (A/B runs): measured slower on the H200
/// in the Llama-7B decode (FP8 290 vs 309 tok/s, INT8 305 vs 314; docs/GPU.md).
int tiles_for(int k_tiles, int warps) {
  static const int forced = [] {
    const char* e = std::getenv("KQ_FP8_GEMV_TILES");
    return e ? std::atoi(e) : 0;
  }();
  return forced == 4 && k_tiles >= 3 * warps ? 4 : 2;
}

template <class Mma, int kWarps>
void launch_w(const Fp8GemvParams& p, cudaStream_t stream) {
  if (p.M > 8)  // two token halves: the pipelined kernel, 2 tile buffers (registers)
    launch_pipe<Mma, kWarps, 2, 2>(p, stream);
  else if (pipe_depth<Mma>() == 2)
    launch_pipe<Mma, kWarps, 2>(p, stream);
  else if (pipe_depth<Mma>() == 3)
    launch_pipe<Mma, kWarps, 3>(p, stream);
  else if (tiles_for(p.k_tiles, kWarps) == 4)
    launch<Mma, kWarps, 4>(p, stream);
  else
    launch<Mma, kWarps, 2>(p, stream);
}

template <class Mma>
void w8_gemv(const uint8_t* x8, const float* scale_x, const uint8_t* w8, const float* scale_w, int64_t K_pad,
             uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream) {
  Fp8GemvParams p{};
  p.x8 = x8;
  p.sx = scale_x;
  p.w8 = w8;
  p.sw = scale_w;
  p.K_pad = K_pad;
  p.y = reinterpret_cast<__nv_bfloat16*>(y);
  p.ldy = ldy;
  p.N = N;
  p.M = int(M);
  p.k_tiles = int(K_pad / kTileK);
  p.row_groups = int((N + 15) / 16);
  const int sms = current_device().multiprocessors;
  const int64_t want = (int64_t(sms) * 32 + p.row_groups - 1) / p.row_groups;
  int warps = want <= 4 ? 4 : (want <= 8 ? 8 : 16);
  while (warps > 4 && p.k_tiles < 2 * warps) warps /= 2;
  if (warps == 16)
    launch_w<Mma, 16>(p, stream);
  else if (warps == 8)
    launch_w<Mma, 8>(p, stream);
  else
    launch_w<Mma, 4>(p, stream);
}

}  // namespace

void fp8_gemv(const uint8_t* x8, const float* scale_x, const uint8_t* w8, const float* scale_w, int64_t K_pad,
              uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream) {
  w8_gemv<E4m3Mma>(x8, scale_x, w8, scale_w, K_pad, y, ldy, M, N, stream);
}

void int8_gemv(const int8_t* x8, const float* scale_x, const int8_t* w8, const float* scale_w, int64_t K_pad,
               uint16_t* y, int64_t ldy, int64_t M, int64_t N, cudaStream_t stream) {
  w8_gemv<S8Mma>(reinterpret_cast<const uint8_t*>(x8), scale_x, reinterpret_cast<const uint8_t*>(w8), scale_w, K_pad,
                 y, ldy, M, N, stream);
}

}  // namespace kq::cuda
