// Causal attention over BF16 KV caches (see model_ops.hpp).
//
// Decode path (flash-decoding, Dao et al. 2023 "Flash-Decoding for long-context
// inference"): one block per (row, kv head, group slice of up to 4 query heads,
// key split). Each K/V row of the split is read once for all the block's query
// heads (grouped-query attention). A block walks its key range in sub-chunks of
// kSub keys: scores into shared memory (D/8 lanes per key, 16-byte loads, shuffle
// reduction), FP32 online softmax per head, then P·V with each lane owning
// 8 dims of one key slot. With one split the block writes the output; with
// several, (m, l, unnormalized acc) go to the workspace and a combine kernel
// merges them.
//
// Prefill path (FlashAttention-2, Dao 2023): one block of 4 warps per 64 query
// rows and one query head; keys/values streamed through shared memory in tiles
// of 64 (cp.async, two stages); S = Q·Kᵀ and O += P·V on the tensor cores
// (mma.sync m16n8k16 BF16, FP32 accumulate); FP32 online softmax in registers.
// Rows of one tile may belong to different sequences: the block makes one pass
// over the keys per distinct sequence (a prefill chunk has one).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_ops_common.cuh"
#include "kernels/cuda/model_ops_launch.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"

namespace kq::cuda::ops {
namespace {

constexpr int kThreads = 128;
constexpr int kSub = 256;            // decode: keys per shared-memory sub-chunk
constexpr int64_t kMinChunk = 64;    // decode: fewest keys per split
constexpr int64_t kTargetBlocks = 528;  // decode: blocks wanted (4 per SM of an H100/H200)
constexpr int kUnroll = 4;           // decode: key rows in flight per lane

__device__ __forceinline__ uint4 ldg16(const uint16_t* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

__device__ __forceinline__ void unpack8(const uint4& w, float (&f)[8]) {
  f[0] = bf_lo(w.x), f[1] = bf_hi(w.x), f[2] = bf_lo(w.y), f[3] = bf_hi(w.y);
  f[4] = bf_lo(w.z), f[5] = bf_hi(w.z), f[6] = bf_lo(w.w), f[7] = bf_hi(w.w);
}

// ---------------------------------------------------------------- decode ----
template <int D, int GB>
__global__ void __launch_bounds__(kThreads)
    attn_decode_kernel(const uint16_t* __restrict__ q, int64_t ldq, int q_heads, KVLayerView kv,
                       const int32_t* __restrict__ row_seq, const int32_t* __restrict__ row_pos, int group,
                       int subs, int64_t chunk, int splits, float scale_log2, uint16_t* __restrict__ out, int64_t ldo,
                       float* __restrict__ ws_acc, float* __restrict__ ws_ml) {
  constexpr int T = D / 8;      // lanes per key row (8 dims each)
  constexpr int KPW = 32 / T;   // key rows per warp step
  constexpr int KPB = 4 * KPW;  // key rows per block step
  __shared__ float sc[GB][kSub];
  __shared__ float s_m[GB], s_l[GB], s_alpha[GB];
  __shared__ float red[KPB][GB][D];
  pdl_wait();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int sl = lane % T, kg = warp * KPW + lane / T;
  const int per_row = kv.kv_heads * subs;
  const int64_t r = int64_t(blockIdx.x) / per_row;
  const int rem = int(int64_t(blockIdx.x) % per_row);
  const int g = rem / subs, sb = rem % subs;
  const int h0 = g * group + sb * GB;
  const int gb = min(GB, group - sb * GB);
  const int64_t len = int64_t(row_pos[r]) + 1;
  const int seq = row_seq[r];
  const int64_t kbeg = int64_t(blockIdx.y) * chunk;
  const int64_t kend = min(len, kbeg + chunk);

  float qf[GB][8];
#pragma unroll
  for (int j = 0; j < GB; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e)
      qf[j][e] = j < gb ? bf(q[r * ldq + int64_t(h0 + j) * D + sl * 8 + e]) * scale_log2 : 0.0f;
  if (threadIdx.x < GB) {
    s_m[threadIdx.x] = -INFINITY;
    s_l[threadIdx.x] = 0.0f;
    s_alpha[threadIdx.x] = 1.0f;
  }
  const uint16_t* kbase = kv.k[seq] + int64_t(g) * kv.capacity * D + sl * 8;
  const uint16_t* vbase = kv.v[seq] + int64_t(g) * kv.capacity * D + sl * 8;
  float acc[GB][8];
#pragma unroll
  for (int j = 0; j < GB; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0.0f;
  __syncthreads();

  for (int64_t c0 = kbeg; c0 < kend; c0 += kSub) {
    const int cn = int(min(int64_t(kSub), kend - c0));
    // Scores (already in log2 units): all lanes of a warp run the same trip count for the shuffles.
    for (int i0 = warp * KPW; i0 < cn; i0 += KPB * kUnroll) {
      uint4 raw[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = i0 + u * KPB + lane / T;
        raw[u] = i < cn ? ldg16(kbase + (c0 + i) * D) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        float kf[8];
        unpack8(raw[u], kf);
        float s[GB];
#pragma unroll
        for (int j = 0; j < GB; ++j) {
          s[j] = 0.0f;
#pragma unroll
          for (int e = 0; e < 8; ++e) s[j] = fmaf(qf[j][e], kf[e], s[j]);
        }
#pragma unroll
        for (int o = T / 2; o > 0; o >>= 1)
#pragma unroll
          for (int j = 0; j < GB; ++j) s[j] += __shfl_xor_sync(0xffffffffu, s[j], o);
        const int i = i0 + u * KPB + lane / T;
        if (sl == 0 && i < cn)
#pragma unroll
          for (int j = 0; j < GB; ++j) sc[j][i] = s[j];
      }
    }
    __syncthreads();
    if (warp < gb) {  // warp j: online-softmax update of head j
      float mx = -INFINITY;
      for (int i = lane; i < cn; i += 32) mx = fmaxf(mx, sc[warp][i]);
      mx = warp_max(mx);
      const float m_old = s_m[warp];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
      for (int i = lane; i < cn; i += 32) {
        const float p = exp2f(sc[warp][i] - m_new);
        sc[warp][i] = p;
        sum += p;
      }
      sum = warp_sum(sum);
      __syncwarp();  // every lane has read s_m[warp] before lane 0 replaces it (shuffles order no memory)
      if (lane == 0) {
        const float a = exp2f(m_old - m_new);
        s_alpha[warp] = a;
        s_l[warp] = s_l[warp] * a + sum;
        s_m[warp] = m_new;
      }
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < GB; ++j) {
      const float a = j < gb ? s_alpha[j] : 1.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[j][e] *= a;
    }
    for (int i0 = kg; i0 < cn; i0 += KPB * kUnroll) {
      uint4 raw[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = i0 + u * KPB;
        raw[u] = i < cn ? ldg16(vbase + (c0 + i) * D) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int i = i0 + u * KPB;
        if (i < cn) {
          float vf[8];
          unpack8(raw[u], vf);
#pragma unroll
          for (int j = 0; j < GB; ++j) {
            const float p = j < gb ? sc[j][i] : 0.0f;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[j][e] = fmaf(p, vf[e], acc[j][e]);
          }
        }
      }
    }
    __syncthreads();  // sc is overwritten by the next sub-chunk
  }

#pragma unroll
  for (int j = 0; j < GB; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e) red[kg][j][sl * 8 + e] = acc[j][e];
  __syncthreads();
  for (int idx = threadIdx.x; idx < gb * D; idx += kThreads) {
    const int j = idx / D, dd = idx % D;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < KPB; ++k) s += red[k][j][dd];
    const int h = h0 + j;
    if (splits == 1) {
      const float l = s_l[j];
      out[r * ldo + int64_t(h) * D + dd] = to_bf(l > 0.0f ? s / l : 0.0f);
    } else {
      const int64_t slot = (r * q_heads + h) * splits + blockIdx.y;
      ws_acc[slot * D + dd] = s;
      if (dd == 0) {
        ws_ml[slot * 2] = s_m[j];
        ws_ml[slot * 2 + 1] = s_l[j];
      }
    }
  }
}

/// One block per (row, query head): merges the splits' partial softmax results.
__global__ void __launch_bounds__(kThreads)
    attn_combine_kernel(int q_heads, int head_dim, int splits, const float* __restrict__ ws_acc,
                        const float* __restrict__ ws_ml, uint16_t* __restrict__ out, int64_t ldo) {
  pdl_wait();
  const int64_t rh = blockIdx.x;
  const int64_t r = rh / q_heads, h = rh % q_heads;
  const float* ml = ws_ml + rh * splits * 2;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s)
    if (ml[2 * s + 1] > 0.0f) M = fmaxf(M, ml[2 * s]);
  float L = 0.0f;
  for (int s = 0; s < splits; ++s)
    if (ml[2 * s + 1] > 0.0f) L += exp2f(ml[2 * s] - M) * ml[2 * s + 1];
  const float inv = L > 0.0f ? 1.0f / L : 0.0f;
  for (int dd = threadIdx.x; dd < head_dim; dd += kThreads) {
    float a = 0.0f;
    for (int s = 0; s < splits; ++s)
      if (ml[2 * s + 1] > 0.0f) a += exp2f(ml[2 * s] - M) * ws_acc[(rh * splits + s) * head_dim + dd];
    out[r * ldo + h * head_dim + dd] = to_bf(a * inv);
  }
}

template <int D, int GB>
void decode_launch_t(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv, const int32_t* row_seq,
                     const int32_t* row_pos, int64_t n, const DecodePlan& p, float scale_log2, uint16_t* out,
                     int64_t ldo, float* ws_acc, float* ws_ml, cudaStream_t stream) {
  const dim3 grid(unsigned(n * kv.kv_heads * p.subs), unsigned(p.splits));
  launch_pdl(attn_decode_kernel<D, GB>, grid, dim3(kThreads), 0, stream, q, ldq, q_heads, kv, row_seq,
             row_pos, p.group, p.subs, p.chunk, p.splits, scale_log2, out, ldo, ws_acc, ws_ml);
}

template <int D>
void decode_launch_d(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv, const int32_t* row_seq,
                     const int32_t* row_pos, int64_t n, const DecodePlan& p, float scale_log2, uint16_t* out,
                     int64_t ldo, float* ws_acc, float* ws_ml, cudaStream_t stream) {
  switch (p.heads_per_block) {
    case 1: decode_launch_t<D, 1>(q, ldq, q_heads, kv, row_seq, row_pos, n, p, scale_log2, out, ldo, ws_acc, ws_ml, stream); break;
    case 2: decode_launch_t<D, 2>(q, ldq, q_heads, kv, row_seq, row_pos, n, p, scale_log2, out, ldo, ws_acc, ws_ml, stream); break;
    default: decode_launch_t<D, 4>(q, ldq, q_heads, kv, row_seq, row_pos, n, p, scale_log2, out, ldo, ws_acc, ws_ml, stream); break;
  }
}

// --------------------------------------------------------------- prefill ----
constexpr int kPRows = 64;  // query rows per block (16 per warp)
constexpr int kPKeys = 64;  // keys per shared-memory tile

template <int D>
__host__ __device__ constexpr int prefill_stride() { return D + 8; }  // BF16 per smem row: +16 bytes against bank conflicts
template <int D>
constexpr size_t prefill_smem_bytes() { return size_t(2) * 2 * kPKeys * prefill_stride<D>() * sizeof(uint16_t); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const unsigned s = unsigned(__cvta_generic_to_shared(dst));
  const int n = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/// c += a · b on the tensor cores: m16n8k16, BF16 inputs, FP32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attn_prefill_kernel(const uint16_t* __restrict__ q, int64_t ldq, int q_heads, KVLayerView kv,
                        const int32_t* __restrict__ row_seq, const int32_t* __restrict__ row_pos, int64_t n,
                        float scale_log2, uint16_t* __restrict__ out, int64_t ldo) {
  constexpr int S = prefill_stride<D>();
  constexpr int KT = D / 16;  // k-steps of Q·Kᵀ
  constexpr int NT = D / 8;   // n-tiles of O
  constexpr int CPR = D / 8;  // 16-byte chunks per K/V row
  extern __shared__ __align__(16) uint16_t smem[];
  __shared__ int s_seq[kPRows], s_pos[kPRows];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t r0 = int64_t(blockIdx.x) * kPRows;
  const int h = blockIdx.y;
  const int kvh = h / (q_heads / kv.kv_heads);
  for (int i = threadIdx.x; i < kPRows; i += kThreads) {
    const int64_t rr = r0 + i;
    s_seq[i] = rr < n ? row_seq[rr] : -1;
    s_pos[i] = rr < n ? row_pos[rr] : -1;
  }
  __syncthreads();
  const int lr0 = warp * 16 + g, lr1 = lr0 + 8;
  const int seq0 = s_seq[lr0], seq1 = s_seq[lr1], pos0 = s_pos[lr0], pos1 = s_pos[lr1];

  uint32_t qa[KT][4];
  {
    const uint16_t* q0 = q + (r0 + lr0) * ldq + int64_t(h) * D;
    const uint16_t* q1 = q + (r0 + lr1) * ldq + int64_t(h) * D;
    const bool v0 = seq0 >= 0, v1 = seq1 >= 0;
#pragma unroll
    for (int kk = 0; kk < KT; ++kk) {
      const int c = kk * 16 + 2 * t;
      qa[kk][0] = v0 ? uint32_t(q0[c]) | (uint32_t(q0[c + 1]) << 16) : 0u;
      qa[kk][1] = v1 ? uint32_t(q1[c]) | (uint32_t(q1[c + 1]) << 16) : 0u;
      qa[kk][2] = v0 ? uint32_t(q0[c + 8]) | (uint32_t(q0[c + 9]) << 16) : 0u;
      qa[kk][3] = v1 ? uint32_t(q1[c + 8]) | (uint32_t(q1[c + 9]) << 16) : 0u;
    }
  }
  float o[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  uint64_t done = 0;
  for (;;) {
    // Next sequence of the tile (every thread computes the same from shared memory).
    int s = -1, kend = 0, wmax = -1;
    for (int i = 0; i < kPRows; ++i) {
      const int si = s_seq[i];
      if (((done >> i) & 1u) || si < 0) continue;
      if (s < 0) s = si;
      if (si == s) {
        kend = max(kend, s_pos[i] + 1);
        done |= uint64_t(1) << i;
        if ((i >> 4) == warp) wmax = max(wmax, s_pos[i]);
      }
    }
    if (s < 0) break;
    const uint16_t* kb = kv.k[s] + int64_t(kvh) * kv.capacity * D;
    const uint16_t* vb = kv.v[s] + int64_t(kvh) * kv.capacity * D;
    const int ntiles = (kend + kPKeys - 1) / kPKeys;
    auto load_tile = [&](int tile, int stage) {
      uint16_t* ks = smem + stage * (2 * kPKeys * S);
      uint16_t* vs = ks + kPKeys * S;
      const int k0 = tile * kPKeys;
      for (int idx = threadIdx.x; idx < kPKeys * CPR; idx += kThreads) {
        const int key = idx / CPR, c = idx % CPR;
        const bool valid = k0 + key < kend;
        const int64_t off = valid ? int64_t(k0 + key) * D + c * 8 : 0;
        cp_async16(ks + key * S + c * 8, kb + off, valid);
        cp_async16(vs + key * S + c * 8, vb + off, valid);
      }
      cp_async_commit();
    };
    load_tile(0, 0);
    for (int tile = 0; tile < ntiles; ++tile) {
      if (tile + 1 < ntiles) {
        load_tile(tile + 1, (tile + 1) & 1);
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
      const int k0 = tile * kPKeys;
      if (k0 <= wmax) {  // warp-uniform causal skip
        const uint16_t* ks = smem + (tile & 1) * (2 * kPKeys * S);
        const uint16_t* vs = ks + kPKeys * S;
        float sacc[kPKeys / 8][4];
#pragma unroll
        for (int j = 0; j < kPKeys / 8; ++j) {
          sacc[j][0] = sacc[j][1] = sacc[j][2] = sacc[j][3] = 0.0f;
#pragma unroll
          for (int kk = 0; kk < KT; ++kk) {
            const uint16_t* kr = ks + (j * 8 + g) * S + kk * 16 + 2 * t;
            mma_bf16(sacc[j], qa[kk], *reinterpret_cast<const uint32_t*>(kr),
                     *reinterpret_cast<const uint32_t*>(kr + 8));
          }
        }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < kPKeys / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = k0 + j * 8 + 2 * t + (e & 1);
            const bool ok = e < 2 ? (seq0 == s && key <= pos0) : (seq1 == s && key <= pos1);
            const float v = ok ? sacc[j][e] * scale_log2 : -INFINITY;
            sacc[j][e] = v;
            if (e < 2) mx0 = fmaxf(mx0, v);
            else mx1 = fmaxf(mx1, v);
          }
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
          mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
          mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float b0 = mn0 == -INFINITY ? 0.0f : mn0, b1 = mn1 == -INFINITY ? 0.0f : mn1;
        const float a0 = exp2f(m0 - b0), a1 = exp2f(m1 - b1);
        m0 = mn0;
        m1 = mn1;
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int j = 0; j < kPKeys / 8; ++j) {
          sacc[j][0] = exp2f(sacc[j][0] - b0);
          sacc[j][1] = exp2f(sacc[j][1] - b0);
          sacc[j][2] = exp2f(sacc[j][2] - b1);
          sacc[j][3] = exp2f(sacc[j][3] - b1);
          ps0 += sacc[j][0] + sacc[j][1];
          ps1 += sacc[j][2] + sacc[j][3];
        }
        l0 = l0 * a0 + ps0;
        l1 = l1 * a1 + ps1;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          o[j][0] *= a0;
          o[j][1] *= a0;
          o[j][2] *= a1;
          o[j][3] *= a1;
        }
#pragma unroll
        for (int kk = 0; kk < kPKeys / 16; ++kk) {
          const uint32_t pa[4] = {pack_bf2(sacc[2 * kk][0], sacc[2 * kk][1]), pack_bf2(sacc[2 * kk][2], sacc[2 * kk][3]),
                                  pack_bf2(sacc[2 * kk + 1][0], sacc[2 * kk + 1][1]),
                                  pack_bf2(sacc[2 * kk + 1][2], sacc[2 * kk + 1][3])};
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            const uint16_t* vr = vs + (kk * 16 + 2 * t) * S + j * 8 + g;
            const uint32_t vb0 = uint32_t(vr[0]) | (uint32_t(vr[S]) << 16);
            const uint32_t vb1 = uint32_t(vr[8 * S]) | (uint32_t(vr[9 * S]) << 16);
            mma_bf16(o[j], pa, vb0, vb1);
          }
        }
      }
      __syncthreads();  // the stage is refilled next iteration
    }
  }

#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float i0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, i1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  uint16_t* o0 = out + (r0 + lr0) * ldo + int64_t(h) * D + 2 * t;
  uint16_t* o1 = out + (r0 + lr1) * ldo + int64_t(h) * D + 2 * t;
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    if (seq0 >= 0) {
      o0[j * 8] = to_bf(o[j][0] * i0);
      o0[j * 8 + 1] = to_bf(o[j][1] * i0);
    }
    if (seq1 >= 0) {
      o1[j * 8] = to_bf(o[j][2] * i1);
      o1[j * 8 + 1] = to_bf(o[j][3] * i1);
    }
  }
}

template <int D>
void prefill_launch_d(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv, const int32_t* row_seq,
                      const int32_t* row_pos, int64_t n, float scale_log2, uint16_t* out, int64_t ldo,
                      cudaStream_t stream) {
  constexpr size_t bytes = prefill_smem_bytes<D>();
  static const bool configured = [] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(bytes)));
    return true;
  }();
  (void)configured;
  const dim3 grid(unsigned((n + kPRows - 1) / kPRows), unsigned(q_heads));
  attn_prefill_kernel<D><<<grid, kThreads, bytes, stream>>>(q, ldq, q_heads, kv, row_seq, row_pos, n, scale_log2, out,
                                                           ldo);
  KQ_CUDA_CHECK_LAUNCH();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

DecodePlan decode_plan(int64_t n, int q_heads, int kv_heads, int64_t max_len) {
  DecodePlan p;
  p.group = q_heads / kv_heads;
  p.heads_per_block = p.group == 1 ? 1 : (p.group == 2 ? 2 : 4);
  p.subs = int(ceil_div(p.group, p.heads_per_block));
  const int64_t base = n * kv_heads * p.subs;
  const int64_t max_splits = std::max<int64_t>(1, ceil_div(max_len, kMinChunk));
  const int64_t splits = std::clamp<int64_t>(ceil_div(kTargetBlocks, base), 1, max_splits);
  p.chunk = ceil_div(ceil_div(max_len, splits), 16) * 16;
  p.splits = int(ceil_div(max_len, p.chunk));
  return p;
}

size_t decode_workspace_floats(int64_t n, int q_heads, int head_dim, const DecodePlan& p) {
  return p.splits > 1 ? size_t(n) * size_t(q_heads) * size_t(p.splits) * size_t(head_dim + 2) : 0;
}

size_t decode_workspace_bound_floats(int64_t n, int q_heads, int head_dim, int64_t capacity) {
  // Every plan has n·kv_heads·subs >= ceil(n·q_heads / 4) blocks per split, and
  // rounding the chunk up never adds splits.
  const int64_t base = std::max<int64_t>(1, ceil_div(n * q_heads, 4));
  const int64_t max_splits = std::max<int64_t>(1, ceil_div(capacity, kMinChunk));
  const int64_t splits = std::clamp<int64_t>(ceil_div(kTargetBlocks, base), 1, max_splits);
  return splits > 1 ? size_t(n) * size_t(q_heads) * size_t(splits) * size_t(head_dim + 2) : 0;
}

void attention_decode_launch(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                             const int32_t* row_seq, const int32_t* row_pos, int64_t n, const DecodePlan& plan,
                             float scale, uint16_t* out, int64_t ldo, float* workspace, cudaStream_t stream) {
  const float scale_log2 = scale * 1.4426950408889634f;
  float* ws_acc = workspace;
  float* ws_ml = plan.splits > 1 ? workspace + size_t(n) * q_heads * plan.splits * kv.head_dim : nullptr;
  switch (kv.head_dim) {
    case 32: decode_launch_d<32>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, scale_log2, out, ldo, ws_acc, ws_ml, stream); break;
    case 64: decode_launch_d<64>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, scale_log2, out, ldo, ws_acc, ws_ml, stream); break;
    case 128: decode_launch_d<128>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, scale_log2, out, ldo, ws_acc, ws_ml, stream); break;
    default: decode_launch_d<256>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, scale_log2, out, ldo, ws_acc, ws_ml, stream); break;
  }
  if (plan.splits > 1) {
    launch_pdl(attn_combine_kernel, dim3(unsigned(n * q_heads)), dim3(kThreads), 0, stream, q_heads,
               kv.head_dim, plan.splits, static_cast<const float*>(ws_acc), static_cast<const float*>(ws_ml),
               out, ldo);
  }
}

void attention_prefill_launch(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                              const int32_t* row_seq, const int32_t* row_pos, int64_t n, float scale, uint16_t* out,
                              int64_t ldo, cudaStream_t stream) {
  const float scale_log2 = scale * 1.4426950408889634f;
  if (kv.head_dim == 64)
    prefill_launch_d<64>(q, ldq, q_heads, kv, row_seq, row_pos, n, scale_log2, out, ldo, stream);
  else
    prefill_launch_d<128>(q, ldq, q_heads, kv, row_seq, row_pos, n, scale_log2, out, ldo, stream);
}

}  // namespace kq::cuda::ops
