// Decode path of causal attention over BF16 KV caches (see model_ops.hpp):
// flash-decoding (Dao et al. 2023, "Flash-Decoding for long-context
// inference"): one block per (row, kv head, group slice of up to 4 query
// heads, key split; each row's keys are split evenly by its own length, the
// plan only bounds the split); each K/V row of the split is read once for all the
// block's query heads (grouped-query attention). A block walks its key range
// in sub-chunks of 8192 / D keys whose K and V rows it first loads into
// registers, all at once: scores into shared memory (D/8 lanes per key,
// 16-byte loads, shuffle reduction), FP32 online softmax per head, then P·V
// with each lane owning 8 dims of one key slot. The first sub-chunk's rows
// that earlier steps wrote are loaded before the PDL wait, so that DRAM round
// trip overlaps the RoPE / KV-write kernel before it. With one split the
// block writes the output. With several, the splits of one (row, kv head,
// sub) are a thread-block cluster (Hopper, up to 16 blocks) when the plan
// allows it: each block leaves (m, l, unnormalized acc) in its shared memory
// and, after a cluster barrier, every block merges a share of the output
// elements by reading its peers' shared memory (distributed shared memory),
// with no workspace round trip and no second kernel. Otherwise (more splits,
// or clusters unavailable) the partial results go to the workspace and a
// combine kernel merges them. With a sliding window only the row's last
// `window` keys are split (the earlier ones are never read), and the plan is
// made for at most `window` keys per row.
#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_info.hpp"
#include "kernels/cuda/model_ops_common.cuh"
#include "kernels/cuda/model_ops_launch.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"

namespace kq::cuda::ops {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kMinChunk = 64;       // fewest keys per split
constexpr int64_t kTargetBlocks = 512;  // blocks wanted (~4 per SM of an H100/H200)
constexpr int kMaxClusterSplits = 16;   // Hopper's largest (non-portable) cluster

__device__ __forceinline__ uint4 ldg16(const uint16_t* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

__device__ __forceinline__ void unpack8(const uint4& w, float (&f)[8]) {
  f[0] = bf_lo(w.x), f[1] = bf_hi(w.x), f[2] = bf_lo(w.y), f[3] = bf_hi(w.y);
  f[4] = bf_lo(w.z), f[5] = bf_hi(w.z), f[6] = bf_lo(w.w), f[7] = bf_hi(w.w);
}

/// Keys per decode sub-chunk: 8 rows per thread of K and of V (a block steps
/// over 4 · 32 / (D / 8) keys), held in registers for the whole sub-chunk, so
/// a sub-chunk costs one memory round trip: 256 keys at D = 32, 128 at 64,
/// 64 at 128, 32 at 256.
template <int D>
__host__ __device__ constexpr int decode_sub_keys() {
  return 8 * 4 * (32 / (D / 8));
}

template <int D, int GB, bool kCluster>
__global__ void __launch_bounds__(kThreads)
    attn_decode_kernel(const uint16_t* __restrict__ q, int64_t ldq, int q_heads, KVLayerView kv,
                       const int32_t* __restrict__ row_seq, const int32_t* __restrict__ row_pos, int64_t n,
                       int group, int subs, int64_t chunk, int splits, int window, ScoreMap sm,
                       uint16_t* __restrict__ out, int64_t ldo, float* __restrict__ ws_acc,
                       float* __restrict__ ws_ml) {
  constexpr int T = D / 8;      // lanes per key row (8 dims each)
  constexpr int KPW = 32 / T;   // key rows per warp step
  constexpr int KPB = 4 * KPW;  // key rows per block step
  constexpr int kSubK = decode_sub_keys<D>();
  constexpr int R = kSubK / KPB;  // K and V rows per thread per sub-chunk
  __shared__ float sc[GB][kSubK];
  __shared__ float s_m[GB], s_l[GB], s_alpha[GB];
  __shared__ float red[KPB][GB][D];
  __shared__ float part[kCluster ? GB : 1][kCluster ? D : 1];  // this split's unnormalized output

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int sl = lane % T, kg = warp * KPW + lane / T;  // this thread's key rows: kg, kg + KPB, ...
  const int per_row = kv.kv_heads * subs;
  const int64_t r = int64_t(blockIdx.x) / per_row;
  const int rem = int(int64_t(blockIdx.x) % per_row);
  const int g = rem / subs, sb = rem % subs;
  const int h0 = g * group + sb * GB;
  const int gb = min(GB, group - sb * GB);
  // Positions and sequence ids are step inputs uploaded before the step's
  // kernels, so they may be read before the PDL wait.
  const int64_t len = int64_t(row_pos[r]) + 1;
  const int seq = row_seq[r];
  // The row's keys are [first, len): all of them, or the last `window` (sliding window; transformers'
  // sliding_window_causal mask: key p visible when row_pos - window < p).
  const int64_t first = window > 0 ? max(int64_t(0), len - window) : 0;
  // This row's keys split evenly over the splits (multiples of 16 keys, at
  // least kMinChunk): the plan's chunk serves the longest row the launch
  // allows (a decode step's graph is captured for the cache capacity), so a
  // shorter row would leave its keys to the first few splits, each walking
  // several sub-chunks.
  const int64_t span = len - first;
  const int64_t row_chunk = min(chunk, max(kMinChunk, ((span + splits - 1) / splits + 15) / 16 * 16));
  const int64_t kbeg = first + int64_t(blockIdx.y) * row_chunk;
  const int64_t kend = min(len, kbeg + row_chunk);
  const uint16_t* kbase = kv.k[seq] + int64_t(g) * kv.capacity * D + sl * 8;
  const uint16_t* vbase = kv.v[seq] + int64_t(g) * kv.capacity * D + sl * 8;

  // K and V rows [c0, c0 + cn) ∩ [lo, hi) of a sub-chunk into registers.
  uint4 kr[R], vr[R];
  const auto load_rows = [&](int64_t c0, int cn, int64_t lo, int64_t hi) {
#pragma unroll
    for (int u = 0; u < R; ++u) {
      const int i = u * KPB + kg;
      const int64_t pos = c0 + i;
      if (i < cn && pos >= lo && pos < hi) {
        kr[u] = ldg16(kbase + pos * D);
        vr[u] = ldg16(vbase + pos * D);
      }
    }
  };
#pragma unroll
  for (int u = 0; u < R; ++u) kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
  // Before the wait: the first sub-chunk's rows that earlier steps wrote. This
  // step's kernels write at most n positions per sequence, the newest ones
  // (>= len - n for this row's keys), so rows below len - n are final.
  const int cn0 = int(min(int64_t(kSubK), kend - kbeg));
  load_rows(kbeg, cn0, 0, len - n);
  pdl_launch_dependents();
  pdl_wait();
  load_rows(kbeg, cn0, len - n, kend);  // the rows this step's K/V write produced

  float qf[GB][8];
#pragma unroll
  for (int j = 0; j < GB; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e)
      qf[j][e] = j < gb ? bf(q[r * ldq + int64_t(h0 + j) * D + sl * 8 + e]) * sm.mul : 0.0f;
  if (threadIdx.x < GB) {
    s_m[threadIdx.x] = -INFINITY;
    s_l[threadIdx.x] = 0.0f;
    s_alpha[threadIdx.x] = 1.0f;
  }
  float acc[GB][8];
#pragma unroll
  for (int j = 0; j < GB; ++j)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[j][e] = 0.0f;
  __syncthreads();

  for (int64_t c0 = kbeg; c0 < kend; c0 += kSubK) {
    const int cn = int(min(int64_t(kSubK), kend - c0));
    if (c0 != kbeg) load_rows(c0, cn, 0, kend);
      // Scores (in log2 units: q holds sm.mul, softcapping applied here); every lane takes part in the shuffles.
#pragma unroll
    for (int u = 0; u < R; ++u) {
      float kf[8];
      unpack8(kr[u], kf);
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
      const int i = u * KPB + kg;
      if (sl == 0 && i < cn)
#pragma unroll
        for (int j = 0; j < GB; ++j) sc[j][i] = sm.cap_mul != 0.0f ? tanhf(s[j]) * sm.cap_mul : s[j];
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
#pragma unroll
    for (int u = 0; u < R; ++u) {
      const int i = u * KPB + kg;
      if (i < cn) {
        float vf[8];
        unpack8(vr[u], vf);
#pragma unroll
        for (int j = 0; j < GB; ++j) {
          const float p = j < gb ? sc[j][i] : 0.0f;
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[j][e] = fmaf(p, vf[e], acc[j][e]);
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
    if constexpr (kCluster) {
      part[j][dd] = s;
    } else if (splits == 1) {
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
  if constexpr (kCluster) {
    // The cluster is this block's `splits` key splits (cluster dims 1 x splits);
    // block y merges output elements y, y + splits, ... from every peer's
    // shared memory. Empty splits (l = 0) carry m = -inf and are skipped.
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();  // every split's part, s_m and s_l are written
    for (int idx = int(threadIdx.x) * splits + int(blockIdx.y); idx < gb * D; idx += kThreads * splits) {
      const int j = idx / D, dd = idx % D;
      float m[kMaxClusterSplits], l[kMaxClusterSplits], a[kMaxClusterSplits];
#pragma unroll
      for (int sp = 0; sp < kMaxClusterSplits; ++sp)
        if (sp < splits) {
          m[sp] = *cluster.map_shared_rank(&s_m[j], unsigned(sp));
          l[sp] = *cluster.map_shared_rank(&s_l[j], unsigned(sp));
          a[sp] = *cluster.map_shared_rank(&part[j][dd], unsigned(sp));
        }
      float M = -INFINITY;
#pragma unroll
      for (int sp = 0; sp < kMaxClusterSplits; ++sp)
        if (sp < splits && l[sp] > 0.0f) M = fmaxf(M, m[sp]);
      float L = 0.0f, acc_o = 0.0f;
#pragma unroll
      for (int sp = 0; sp < kMaxClusterSplits; ++sp)
        if (sp < splits && l[sp] > 0.0f) {
          const float w = exp2f(m[sp] - M);
          L = fmaf(w, l[sp], L);
          acc_o = fmaf(w, a[sp], acc_o);
        }
      out[r * ldo + int64_t(h0 + j) * D + dd] = to_bf(L > 0.0f ? acc_o / L : 0.0f);
    }
    cluster.sync();  // no block leaves while a peer may still read its shared memory
  }
}

/// One block per (row, query head): merges the splits' partial softmax results.
__global__ void __launch_bounds__(kThreads)
    attn_combine_kernel(int q_heads, int head_dim, int splits, const float* __restrict__ ws_acc,
                        const float* __restrict__ ws_ml, uint16_t* __restrict__ out, int64_t ldo) {
  pdl_launch_dependents();
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
void decode_launch_t(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                     const int32_t* row_seq, const int32_t* row_pos, int64_t n, const DecodePlan& p,
                     int window, ScoreMap sm, uint16_t* out, int64_t ldo, float* ws_acc, float* ws_ml,
                     cudaStream_t stream) {
  const dim3 grid(unsigned(n * kv.kv_heads * p.subs), unsigned(p.splits));
  if (p.cluster) {
    auto kernel = attn_decode_kernel<D, GB, true>;
    static const bool attr = [&] {  // clusters of more than 8 blocks are opt-in
      KQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
      return true;
    }();
    (void)attr;
    launch_pdl_cluster(kernel, grid, dim3(1, unsigned(p.splits)), dim3(kThreads), 0, stream, q, ldq, q_heads,
                       kv, row_seq, row_pos, n, p.group, p.subs, p.chunk, p.splits, window, sm, out,
                       ldo, ws_acc, ws_ml);
  } else {
    launch_pdl(attn_decode_kernel<D, GB, false>, grid, dim3(kThreads), 0, stream, q, ldq, q_heads, kv,
               row_seq, row_pos, n, p.group, p.subs, p.chunk, p.splits, window, sm, out, ldo, ws_acc,
               ws_ml);
  }
}

template <int D>
void decode_launch_d(const uint16_t* q, int64_t ldq, int q_heads, const KVLayerView& kv,
                     const int32_t* row_seq, const int32_t* row_pos, int64_t n, const DecodePlan& p,
                     int window, ScoreMap sm, uint16_t* out, int64_t ldo, float* ws_acc, float* ws_ml,
                     cudaStream_t stream) {
  switch (p.heads_per_block) {
    case 1:
      decode_launch_t<D, 1>(q, ldq, q_heads, kv, row_seq, row_pos, n, p, window, sm, out, ldo, ws_acc,
                            ws_ml, stream);
      break;
    case 2:
      decode_launch_t<D, 2>(q, ldq, q_heads, kv, row_seq, row_pos, n, p, window, sm, out, ldo, ws_acc,
                            ws_ml, stream);
      break;
    default:
      decode_launch_t<D, 4>(q, ldq, q_heads, kv, row_seq, row_pos, n, p, window, sm, out, ldo, ws_acc,
                            ws_ml, stream);
      break;
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

int decode_cluster_limit() {
  static const int limit = [] {
    const char* env = std::getenv("KQ_ATTN_CLUSTER");
    if (env && std::strcmp(env, "0") == 0) return 0;
    try {  // no device or driver: no clusters (the caller's checks and launch report the rest)
      const DeviceQuery& dev = current_device();
      return dev.found && dev.cc_major >= 9 ? kMaxClusterSplits : 0;
    } catch (const std::exception&) {
      return 0;
    }
  }();
  return limit;
}

DecodePlan decode_plan(int64_t n, int q_heads, int kv_heads, int64_t max_len, int max_cluster) {
  DecodePlan p;
  p.group = q_heads / kv_heads;
  p.heads_per_block = p.group == 1 ? 1 : (p.group == 2 ? 2 : 4);
  p.subs = int(ceil_div(p.group, p.heads_per_block));
  const int64_t base = n * kv_heads * p.subs;
  const int64_t max_splits = std::max<int64_t>(1, ceil_div(max_len, kMinChunk));
  int64_t splits = std::clamp<int64_t>(ceil_div(kTargetBlocks, base), 1, max_splits);
  // Where clusters run, no more splits than one cluster holds: merging on chip
  // beats more, smaller splits merged through the workspace by a second kernel
  // (H200, b1 GQA-4 at 512 keys of a 4096-position cache: docs/GPU.md, stop 14).
  if (max_cluster > 1) splits = std::min<int64_t>(splits, std::min(max_cluster, kMaxClusterSplits));
  p.chunk = ceil_div(ceil_div(max_len, splits), 16) * 16;
  p.splits = int(ceil_div(max_len, p.chunk));
  p.cluster = p.splits > 1 && p.splits <= std::min(max_cluster, kMaxClusterSplits);
  return p;
}

size_t decode_workspace_floats(int64_t n, int q_heads, int head_dim, const DecodePlan& p) {
  return p.splits > 1 && !p.cluster ? size_t(n) * size_t(q_heads) * size_t(p.splits) * size_t(head_dim + 2)
                                    : 0;
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
                             const int32_t* row_seq, const int32_t* row_pos, int64_t n,
                             const DecodePlan& plan, int window, ScoreMap sm, uint16_t* out, int64_t ldo,
                             float* workspace, cudaStream_t stream) {
  float* ws_acc = workspace;
  float* ws_ml = plan.splits > 1 && !plan.cluster
                     ? workspace + size_t(n) * q_heads * plan.splits * kv.head_dim
                     : nullptr;
  switch (kv.head_dim) {
    case 32:
      decode_launch_d<32>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, window, sm, out, ldo,
                          ws_acc, ws_ml, stream);
      break;
    case 64:
      decode_launch_d<64>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, window, sm, out, ldo,
                          ws_acc, ws_ml, stream);
      break;
    case 128:
      decode_launch_d<128>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, window, sm, out, ldo,
                           ws_acc, ws_ml, stream);
      break;
    default:
      decode_launch_d<256>(q, ldq, q_heads, kv, row_seq, row_pos, n, plan, window, sm, out, ldo,
                           ws_acc, ws_ml, stream);
      break;
  }
  if (plan.splits > 1 && !plan.cluster) {
    launch_pdl(attn_combine_kernel, dim3(unsigned(n * q_heads)), dim3(kThreads), 0, stream, q_heads,
               kv.head_dim, plan.splits, static_cast<const float*>(ws_acc), static_cast<const float*>(ws_ml),
               out, ldo);
  }
}

}  // namespace kq::cuda::ops
