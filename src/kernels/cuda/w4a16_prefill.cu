// W4A16 prefill: the fused GEMM (4-bit tiles dequantized to BF16 in shared
// memory, mma.sync m16n8k16 on the tensor cores) and the BF16 dequantization
// of a whole weight (for the dequantize + cuBLASLt path).
//
// GEMM: y[M, N] = x[M, K] · Wᵀ, block tile 128 (m) x 128 (n) x 64 (k), 8
// warps as 2 (m) x 4 (n), warp tile 64 x 32. A 4-stage cp.async pipeline
// brings x tiles (16-byte pieces, zero-filled past M and K) and 4-bit code
// tiles (8-byte pieces: one 64-k half of a 128-k layout tile is, per row, four
// 8-byte runs) into shared memory. Each k-step the threads dequantize the next
// code tile into a BF16 tile ((codebook[q] − zero) · scale in FP32, rounded
// once to BF16, as w4_dequantize_bf16), double-buffered, while the warps run
// the mma's of the current one, so there is one barrier per k-step. Both BF16
// tiles are 128-byte rows of eight 16-byte chunks stored at chunk ^ (row % 8),
// so ldmatrix and the 16-byte dequant stores are free of bank conflicts.
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

constexpr int kBM = 128, kBN = 128, kBK = 64, kStages = 4, kThreads = 256;
constexpr int kATileBytes = kBM * kBK * 2;     // 16 KB
constexpr int kCodeTileBytes = kBN * kBK / 2;  // 4 KB
constexpr int kBTileBytes = kBN * kBK * 2;     // 16 KB
constexpr int kSmemBytes = kStages * (kATileBytes + kCodeTileBytes) + 2 * kBTileBytes + 16 * 4;

struct W4GemmParams {
  const uint16_t* x;  // BF16 [M, ldx], ldx % 8 == 0, 16-byte aligned
  int64_t ldx;
  const uint8_t* codes;  // [N, ldq]
  int64_t ldq;
  const uint16_t* scales;  // BF16 [N, lds]
  const uint16_t* zeros;   // BF16 [N, lds] or null
  const float* x_scale;    // FP32 [K] or null: dequantization only (W4Weight::x_scale)
  int64_t lds;
  int block_shift;
  uint16_t* y;  // BF16 [M, ldy]
  int64_t ldy;
  int64_t M, N, K;
  bool y_vec;  // y rows 4-byte aligned: pairs stored as one 32-bit word
  float codebook[16];
};

/// Byte offset of 16-byte chunk `c` (0..7) of row `r` in a swizzled 128-byte-row tile.
__device__ __forceinline__ uint32_t swz(int r, int c) { return uint32_t(r * 128 + ((c ^ (r & 7)) << 4)); }

/// cp.async of k-tile kb (64 k) into stage slot `slot`: x rows m0.. and code rows n0...
__device__ __forceinline__ void load_stage(const W4GemmParams& p, uint32_t a_s, uint32_t c_s, int64_t m0, int64_t n0,
                                           int kb, int tid) {
  const int64_t k0 = int64_t(kb) * kBK;
#pragma unroll
  for (int i = 0; i < kBM * 8 / kThreads; ++i) {
    const int c = tid + i * kThreads, r = c >> 3, ch = c & 7;
    const int64_t m = m0 + r, k = k0 + ch * 8;
    int bytes = 0;
    const uint16_t* src = p.x;
    if (m < p.M && k < p.K) {
      const int64_t left = (p.K - k) * 2;
      bytes = left < 16 ? int(left) : 16;
      src = p.x + m * p.ldx + k;
    }
    cp_async16(a_s + swz(r, ch), src, bytes);
  }
  // Codes: the 64-k half hh of 128-k layout tile kb/2 is, per row, the 8-byte
  // runs at byte 16t + 8hh (t = 0..3) of the tile's 64 bytes.
  const int64_t tile_off = int64_t(kb >> 1) * 64 + 8 * (kb & 1);
#pragma unroll
  for (int i = 0; i < kBN * 4 / kThreads; ++i) {
    const int c = tid + i * kThreads, r = c >> 2, t = c & 3;
    const int64_t n = min(n0 + r, p.N - 1);
    cp_async8(c_s + uint32_t(r * 32 + t * 8), p.codes + n * p.ldq + tile_off + 16 * t);
  }
}

/// Scales (and zero points) of this thread's row for k-tile kb: kSc = 2 for
/// block 32 (k-steps 0-1 and 2-3 of the tile), else 1.
template <int kSc, Dq kDq>
__device__ __forceinline__ void load_scales(float (&s)[kSc], float (&z)[kSc], const W4GemmParams& p, int64_t n, int kb) {
  const int64_t b0 = (int64_t(kb) * kBK) >> p.block_shift;
#pragma unroll
  for (int j = 0; j < kSc; ++j) {
    s[j] = bf16_bits_to_float(ld_u16(p.scales + n * p.lds + b0 + j));
    z[j] = kDq == Dq::Int4Asym ? bf16_bits_to_float(ld_u16(p.zeros + n * p.lds + b0 + j)) : 0.0f;
  }
}

/// Dequantizes this thread's 16 code bytes (row r, lanes t = 2h, 2h+1 of the
/// layout) into 4 chunks of 8 BF16: k = 16 s + 8 h + (0..7), s = 0..3.
template <int kSc, Dq kDq>
__device__ __forceinline__ void dequant_tile(const char* codes_s, char* b_s, const float* cb, const float (&sc)[kSc],
                                             const float (&zc)[kSc], int r, int h) {
  const uint4 q = *reinterpret_cast<const uint4*>(codes_s + r * 32 + 16 * h);
  const uint32_t words[2][2] = {{q.x, q.y}, {q.z, q.w}};  // [tt][word]: lane t = 2h + tt
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    const float scale = sc[kSc == 2 ? (s >> 1) : 0], zero = zc[kSc == 2 ? (s >> 1) : 0];
    uint32_t out[4];
#pragma unroll
    for (int tt = 0; tt < 2; ++tt) {
      const uint32_t w = words[tt][s >> 1];
      uint32_t u[4];  // codes of k = 16s + 4(2h + tt) + i
      if constexpr (kDq == Dq::Lut) {
        // Plain packing: positions 4s + i are byte 2(s&1) (i = 0, 1) and 2(s&1)+1 (i = 2, 3).
        const uint32_t b = w >> (16 * (s & 1));
        u[0] = b & 15u;
        u[1] = (b >> 4) & 15u;
        u[2] = (b >> 8) & 15u;
        u[3] = (b >> 12) & 15u;
      } else {
        // Interleaved: position e = 4(s&1) + i of the word is nibble e/2 + 4(e%2).
        const uint32_t b = w >> (8 * (s & 1));
        u[0] = b & 15u;
        u[1] = (b >> 16) & 15u;
        u[2] = (b >> 4) & 15u;
        u[3] = (b >> 20) & 15u;
      }
      float v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = (cb[u[i]] - zero) * scale;
      out[2 * tt] = pack_bf16x2(v[0], v[1]);
      out[2 * tt + 1] = pack_bf16x2(v[2], v[3]);
    }
    *reinterpret_cast<uint4*>(b_s + swz(r, 2 * s + h)) = make_uint4(out[0], out[1], out[2], out[3]);
  }
}

template <int kSc, Dq kDq>
__global__ void __launch_bounds__(kThreads, 2) w4a16_gemm_kernel(const __grid_constant__ W4GemmParams p) {
  extern __shared__ __align__(128) char smem[];
  char* a_tiles = smem;                                    // [kStages][128 rows][128 B]
  char* c_tiles = a_tiles + kStages * kATileBytes;         // [kStages][128 rows][32 B]
  char* b_tiles = c_tiles + kStages * kCodeTileBytes;      // [2][128 rows][128 B]
  float* cb = reinterpret_cast<float*>(b_tiles + 2 * kBTileBytes);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t n0 = int64_t(blockIdx.x) * kBN, m0 = int64_t(blockIdx.y) * kBM;
  if (tid < 16) cb[tid] = p.codebook[tid];
  const uint32_t a_base = smem_addr(a_tiles), c_base = smem_addr(c_tiles), b_base = smem_addr(b_tiles);
  const int nkb = int((p.K + kBK - 1) / kBK);

  // Dequantization role: row dr, half dh of the tile's code bytes.
  const int dr = tid >> 1, dh = tid & 1;
  const int64_t dn = min(n0 + dr, p.N - 1);
  float sc[kSc], zc[kSc];

#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < nkb) load_stage(p, a_base + st * kATileBytes, c_base + st * kCodeTileBytes, m0, n0, st, tid);
    cp_async_commit();
  }
  load_scales<kSc, kDq>(sc, zc, p, dn, 0);
  cp_async_wait<kStages - 2>();
  __syncthreads();
  dequant_tile<kSc, kDq>(c_tiles, b_tiles, cb, sc, zc, dr, dh);
  if (nkb > 1) load_scales<kSc, kDq>(sc, zc, p, dn, 1);

  // Warp tile: rows wm .. wm+63, columns wn .. wn+31.
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
  float acc[4][4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

  for (int kb = 0; kb < nkb; ++kb) {
    cp_async_wait<kStages - 3>();  // stage kb + 1 has landed
    __syncthreads();               // ... for everyone; B tile kb is complete; mma's of kb - 1 are done
    {
      const int st = kb + kStages - 1, slot = st % kStages;
      if (st < nkb) load_stage(p, a_base + slot * kATileBytes, c_base + slot * kCodeTileBytes, m0, n0, st, tid);
      cp_async_commit();
    }
    if (kb + 1 < nkb) {
      dequant_tile<kSc, kDq>(c_tiles + ((kb + 1) % kStages) * kCodeTileBytes,
                             b_tiles + ((kb + 1) & 1) * kBTileBytes, cb, sc, zc, dr, dh);
      if (kb + 2 < nkb) load_scales<kSc, kDq>(sc, zc, p, dn, kb + 2);
    }
    const uint32_t a_s = a_base + (kb % kStages) * kATileBytes, b_s = b_base + (kb & 1) * kBTileBytes;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      uint32_t af[4][4], bf[2][4];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        const int r = wm + mi * 16 + (lane & 15);
        ldmatrix_x4(af[mi], a_s + swz(r, 2 * ks + (lane >> 4)));
      }
#pragma unroll
      for (int nj = 0; nj < 2; ++nj) {
        const int r = wn + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldmatrix_x4(bf[nj], b_s + swz(r, 2 * ks + ((lane >> 3) & 1)));
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
          mma_bf16_16816(acc[mi][ni], af[mi][0], af[mi][1], af[mi][2], af[mi][3], bf[ni >> 1][2 * (ni & 1)],
                         bf[ni >> 1][2 * (ni & 1) + 1]);
    }
  }
  cp_async_wait<0>();

  // Epilogue: c0, c1 at (row g, columns 2t, 2t+1), c2, c3 at row g + 8.
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t m = m0 + wm + mi * 16 + g + 8 * half;
      if (m >= p.M) continue;
      uint16_t* yr = p.y + m * p.ldy;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const int64_t n = n0 + wn + ni * 8 + 2 * t;
        const uint32_t v = pack_bf16x2(acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
        if (p.y_vec && n + 1 < p.N) {
          *reinterpret_cast<uint32_t*>(yr + n) = v;
        } else {
          if (n < p.N) yr[n] = uint16_t(v & 0xFFFFu);
          if (n + 1 < p.N) yr[n + 1] = uint16_t(v >> 16);
        }
      }
    }
}

template <int kSc, Dq kDq>
void launch_gemm(const W4GemmParams& p, cudaStream_t stream) {
  auto kernel = w4a16_gemm_kernel<kSc, kDq>;
  static const bool attr = [&] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
    return true;
  }();
  (void)attr;
  const dim3 grid(unsigned((p.N + kBN - 1) / kBN), unsigned((p.M + kBM - 1) / kBM));
  kernel<<<grid, kThreads, kSmemBytes, stream>>>(p);
  KQ_CUDA_CHECK_LAUNCH();
}

template <Dq kDq>
void launch_gemm_sc(const W4GemmParams& p, cudaStream_t stream) {
  if (p.block_shift == 5)
    launch_gemm<2, kDq>(p, stream);
  else
    launch_gemm<1, kDq>(p, stream);
}

/// Codes of k = 128 tile + 16 s + 4 t + (0..3) in the 16 code bytes `q` of lane run t (s = 0..7, compile-time).
template <Dq kDq>
__device__ __forceinline__ void run_codes(const uint4& q, int s, uint32_t (&u)[4]) {
  const uint32_t w = word(q, s >> 1);
  if constexpr (kDq == Dq::Lut) {
    // Plain packing: the step's 4 codes are bytes 2(s&1), 2(s&1)+1 of the word, low nibble first.
    const uint32_t b = w >> (16 * (s & 1));
    u[0] = b & 15u, u[1] = (b >> 4) & 15u, u[2] = (b >> 8) & 15u, u[3] = (b >> 12) & 15u;
  } else {
    // Interleaved: position e = 4(s&1) + i of the word is nibble e/2 + 4(e%2).
    const uint32_t b = w >> (8 * (s & 1));
    u[0] = b & 15u, u[1] = (b >> 16) & 15u, u[2] = (b >> 4) & 15u, u[3] = (b >> 20) & 15u;
  }
}

/// Dequantization, one warp per (row, segment of 8 layout tiles = 1024 k):
/// lane l reads the 16 code bytes of tile 8·seg + l/4, lane run t = l % 4
/// (k = 128 tile + 16 s + 4 t + 0..3, s = 0..7: one coalesced 512-byte load
/// per warp), and the lanes t = 2h, 2h + 1 swap halves with one shuffle per
/// pair of steps, so that every lane stores whole 16-byte runs of 8 BF16
/// (k = 128 tile + 16 s + 8 h + 0..7). `warps` = N · segs; `vec`: out 16-byte
/// aligned and ldo % 8 == 0. Occupancy decides its speed: at most 40
/// registers (6 blocks of 8 warps per SM) with two steps' values live at a
/// time; all eight at once took 48-70 registers and was slower than the old
/// 8-byte-store kernel for INT4 with zero points. (A resident grid whose warps
/// keep the next item's loads in flight measured no faster.)
template <Dq kDq>
__global__ void __launch_bounds__(256, 6) w4_dequant_kernel(const __grid_constant__ W4GemmParams p,
                                                         uint16_t* __restrict__ out, int64_t ldo, bool vec,
                                                         int segs, int64_t warps, int k_tiles) {
  __shared__ float cb[16];  // indexed by code: from shared memory, not the parameter space
  if (threadIdx.x < 16) cb[threadIdx.x] = p.codebook[threadIdx.x];
  __syncthreads();
  const int lane = int(threadIdx.x & 31), t = lane & 3;
  // Steps of 16 k per scale block (blocks of 32..256 k; a tile holds 8 steps).
  const int sps = p.block_shift >= 7 ? 8 : 1 << (p.block_shift - 4);
  // Whole warps take each (row, segment), so the shuffles below always see full warps.
  for (int64_t gw = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5); gw < warps;
       gw += int64_t(gridDim.x) * (blockDim.x / 32)) {
    const int64_t n = gw / segs;
    const int kt = (int(gw - n * segs) << 3) + (lane >> 2);
    const bool have = kt < k_tiles;
    const uint4 q = have ? ld_stream16(p.codes + n * p.ldq + int64_t(kt) * 64 + 16 * t) : make_uint4(0, 0, 0, 0);
    const uint16_t* srow = p.scales + n * p.lds;
    const uint16_t* zrow = kDq == Dq::Int4Asym ? p.zeros + n * p.lds : nullptr;
    // Step s's 4 values (k = 128 kt + 16 s + 4 t + 0..3) as BF16, for s = 0, 1, ..., 7 in order (the
    // scale and zero point are reloaded at each block's first step).
    float scale = 0.0f, zero = 0.0f;
    const auto piece_of = [&](int s) {
      const int k = kt * 128 + 16 * s + 4 * t;
      if (have && (s & (sps - 1)) == 0) {
        const int64_t blk = int64_t(kt * 128 + 16 * s) >> p.block_shift;
        scale = bf16_bits_to_float(ld_u16(srow + blk));
        if constexpr (kDq == Dq::Int4Asym) zero = bf16_bits_to_float(ld_u16(zrow + blk));
      }
      uint32_t u[4];
      run_codes<kDq>(q, s, u);
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) v[e] = (cb[u[e]] - zero) * scale;
      if (p.x_scale && k < p.K) {
        if (k + 4 <= p.K) {  // k is a multiple of 4: one aligned 16-byte load
          const float4 xs = __ldg(reinterpret_cast<const float4*>(p.x_scale + k));
          v[0] *= xs.x, v[1] *= xs.y, v[2] *= xs.z, v[3] *= xs.w;
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e) v[e] *= k + e < p.K ? __ldg(p.x_scale + k + e) : 0.0f;
        }
      }
      return make_uint2(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]));
    };
    // Lane t = 2h stores run (s = 2j, h), lane 2h + 1 run (2j + 1, h); each gets the other half from its
    // partner. Two steps at a time: few registers, so many warps per SM keep loads in flight.
    const bool odd = t & 1;
    uint16_t* orow = out + n * ldo;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint2 p0 = piece_of(2 * j), p1 = piece_of(2 * j + 1);
      const uint2 send = odd ? p0 : p1;
      uint2 recv;
      recv.x = __shfl_xor_sync(0xFFFFFFFFu, send.x, 1);
      recv.y = __shfl_xor_sync(0xFFFFFFFFu, send.y, 1);
      const uint4 run = odd ? make_uint4(recv.x, recv.y, p1.x, p1.y) : make_uint4(p0.x, p0.y, recv.x, recv.y);
      const int k0 = kt * 128 + 16 * (2 * j + int(odd)) + 8 * (t >> 1);
      if (vec && k0 + 8 <= p.K) {
        *reinterpret_cast<uint4*>(orow + k0) = run;
      } else if (k0 < p.K) {
        const uint32_t w[4] = {run.x, run.y, run.z, run.w};
        for (int e = 0; e < 8 && k0 + e < p.K; ++e) orow[k0 + e] = uint16_t(w[e >> 1] >> (16 * (e & 1)));
      }
    }
  }
}

W4GemmParams weight_params(const W4Weight& w) {
  W4GemmParams p{};
  p.codes = w.codes.data();
  p.ldq = w.K_pad / 2;
  p.scales = w.scales.data();
  p.zeros = w.format == W4Format::INT4Asym ? w.zeros.data() : nullptr;
  p.lds = w.blocks_pad;
  p.block_shift = __builtin_ctz(unsigned(w.block));
  p.N = w.N;
  p.K = w.K;
  const std::array<float, 16> cb = w4_codebook(w.format);
  std::copy(cb.begin(), cb.end(), p.codebook);
  return p;
}

}  // namespace

void w4a16_gemm_launch(const W4Weight& w, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y, int64_t ldy,
                       cudaStream_t stream) {
  W4GemmParams p = weight_params(w);
  p.x = x;
  p.ldx = ldx;
  p.y = y;
  p.ldy = ldy;
  p.M = M;
  p.y_vec = ldy % 2 == 0 && reinterpret_cast<uintptr_t>(y) % 4 == 0;
  switch (w.format) {
    case W4Format::INT4: launch_gemm_sc<Dq::Int4Sym>(p, stream); break;
    case W4Format::INT4Asym: launch_gemm_sc<Dq::Int4Asym>(p, stream); break;
    default: launch_gemm_sc<Dq::Lut>(p, stream); break;
  }
}

void w4_dequantize_launch(const W4Weight& w, uint16_t* out, int64_t ldo, cudaStream_t stream) {
  W4GemmParams p = weight_params(w);
  p.x_scale = w.x_scale.empty() ? nullptr : w.x_scale.data();
  const bool vec = ldo % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const int k_tiles = int(w.K_pad / 128);
  const int segs = (k_tiles + 7) / 8;
  const int64_t warps = w.N * segs;
  const int threads = 256;
  // One warp per item (the loop in the kernel only serves grids past 2^20 blocks).
  const int64_t blocks = std::min<int64_t>((warps + threads / 32 - 1) / (threads / 32), int64_t(1) << 20);
  const unsigned g = unsigned(blocks);
  switch (w.format) {
    case W4Format::INT4:
      w4_dequant_kernel<Dq::Int4Sym><<<g, threads, 0, stream>>>(p, out, ldo, vec, segs, warps, k_tiles);
      break;
    case W4Format::INT4Asym:
      w4_dequant_kernel<Dq::Int4Asym><<<g, threads, 0, stream>>>(p, out, ldo, vec, segs, warps, k_tiles);
      break;
    default: w4_dequant_kernel<Dq::Lut><<<g, threads, 0, stream>>>(p, out, ldo, vec, segs, warps, k_tiles); break;
  }
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace kq::cuda
