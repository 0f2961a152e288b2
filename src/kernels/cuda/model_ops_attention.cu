// Causal attention over BF16 KV caches (see model_ops.hpp): the prefill path;
// the decode path is model_ops_attention_decode.cu.
//
// Prefill path (FlashAttention-2, Dao 2023): one block of 4 warps per 64 query
// rows and one query head; keys/values streamed through shared memory in tiles
// of 64 (cp.async, two stages); S = Q·Kᵀ and O += P·V on the tensor cores
// (mma.sync m16n8k16 BF16, FP32 accumulate); FP32 online softmax in registers.
// Rows of one tile may belong to different sequences: the block makes one pass
// over the keys per distinct sequence (a prefill chunk has one). With a sliding
// window the pass starts at the tile of keys holding the earliest row's first
// visible key; a warp skips the tiles before its rows' windows, and the keys
// before a row's window in a tile it runs are masked.
#include <cuda_bf16.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_ops_common.cuh"
#include "kernels/cuda/model_ops_launch.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"

namespace kq::cuda::ops {
namespace {

constexpr int kThreads = 128;

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
                        int window, ScoreMap sm, uint16_t* __restrict__ out, int64_t ldo) {
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
    // kmin / wmin: the earliest position of the tile's / this warp's rows of the sequence.
    int s = -1, kend = 0, wmax = -1, kmin = INT_MAX, wmin = INT_MAX;
    for (int i = 0; i < kPRows; ++i) {
      const int si = s_seq[i];
      if (((done >> i) & 1u) || si < 0) continue;
      if (s < 0) s = si;
      if (si == s) {
        kend = max(kend, s_pos[i] + 1);
        kmin = min(kmin, s_pos[i]);
        done |= uint64_t(1) << i;
        if ((i >> 4) == warp) {
          wmax = max(wmax, s_pos[i]);
          wmin = min(wmin, s_pos[i]);
        }
      }
    }
    if (s < 0) break;
    // The first key any row sees (0 without a window), and this warp's rows' earliest one.
    const int kfirst = window > 0 ? max(0, kmin - window + 1) : 0;
    const int wfirst = window > 0 && wmax >= 0 ? max(0, wmin - window + 1) : 0;
    const uint16_t* kb = kv.k[s] + int64_t(kvh) * kv.capacity * D;
    const uint16_t* vb = kv.v[s] + int64_t(kvh) * kv.capacity * D;
    const int tile0 = kfirst / kPKeys, ntiles = (kend + kPKeys - 1) / kPKeys;
    auto load_tile = [&](int tile, int stage) {
      uint16_t* ks = smem + stage * (2 * kPKeys * S);
      uint16_t* vs = ks + kPKeys * S;
      const int k0 = tile * kPKeys;
      for (int idx = threadIdx.x; idx < kPKeys * CPR; idx += kThreads) {
        const int key = idx / CPR, c = idx % CPR;
        // Keys past the sequence and before every row's window are zero-filled, never read: a masked key's
        // probability is 0, and 0 x V must stay 0 (the rows before the window are not the pass's to read).
        const bool valid = k0 + key < kend && k0 + key >= kfirst;
        const int64_t off = valid ? int64_t(k0 + key) * D + c * 8 : 0;
        cp_async16(ks + key * S + c * 8, kb + off, valid);
        cp_async16(vs + key * S + c * 8, vb + off, valid);
      }
      cp_async_commit();
    };
    load_tile(tile0, tile0 & 1);
    for (int tile = tile0; tile < ntiles; ++tile) {
      if (tile + 1 < ntiles) {
        load_tile(tile + 1, (tile + 1) & 1);
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();
      const int k0 = tile * kPKeys;
      if (k0 <= wmax && k0 + kPKeys > wfirst) {  // warp-uniform causal and window skip
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
            // Causal, and inside the row's window: pos - window < key (window 0: none).
            const bool ok = e < 2 ? (seq0 == s && key <= pos0 && (window == 0 || key > pos0 - window))
                                  : (seq1 == s && key <= pos1 && (window == 0 || key > pos1 - window));
            const float v = ok ? (sm.cap_mul != 0.0f ? tanhf(sacc[j][e] * sm.mul) * sm.cap_mul : sacc[j][e] * sm.mul)
                                 : -INFINITY;
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
                      const int32_t* row_pos, int64_t n, int window, ScoreMap sm, uint16_t* out,
                      int64_t ldo, cudaStream_t stream) {
  constexpr size_t bytes = prefill_smem_bytes<D>();
  static const bool configured = [] {
    KQ_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(bytes)));
    return true;
  }();
  (void)configured;
  const dim3 grid(unsigned((n + kPRows - 1) / kPRows), unsigned(q_heads));
  attn_prefill_kernel<D><<<grid, kThreads, bytes, stream>>>(q, ldq, q_heads, kv, row_seq, row_pos, n, window,
                                                           sm, out, ldo);
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_prefill_launch(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                              const int32_t* row_seq, const int32_t* row_pos, int64_t n, int window, ScoreMap sm,
                              uint16_t* out, int64_t ldo, cudaStream_t stream) {
  if (kv.head_dim == 64)
    prefill_launch_d<64>(q, ldq, q_heads, kv, row_seq, row_pos, n, window, sm, out, ldo, stream);
  else if (kv.head_dim == 256)  // Gemma's: 255 registers, a few spilled (FlashAttention-2 keeps O in registers)
    prefill_launch_d<256>(q, ldq, q_heads, kv, row_seq, row_pos, n, window, sm, out, ldo, stream);
  else
    prefill_launch_d<128>(q, ldq, q_heads, kv, row_seq, row_pos, n, window, sm, out, ldo, stream);
}

}  // namespace kq::cuda::ops
