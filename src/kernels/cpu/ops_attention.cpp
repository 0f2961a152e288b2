#include "kernels/cpu/ops_attention.hpp"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops_threads.hpp"
#include "kernels/cpu/ops_vec.hpp"

namespace kq::cpu {
namespace {

constexpr int64_t kGemmMinRows = 8;  // fewer query rows: the direct (decode) path
constexpr int64_t kRowBlock = 64;    // query rows per GEMM block in prefill

/// The first key position a query at position `pos` sees: pos − window + 1 (at least 0), or 0 without a
/// window (window 0).
int64_t first_key(int64_t pos, int64_t window) { return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0; }

/// Gemma 2's tanh soft-capping of n scaled scores in place: s = cap · tanh(s / cap) (transformers'
/// Gemma2 eager_attention_forward: divide, tanh, multiply, in that order). cap > 0.
void softcap_scores(float* s, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) s[i] = cap * std::tanh(s[i] / cap);
}

// Decode path: one task per (query token i, KV head g). Every cached K and V
// row of head g in the query's window is loaded once and used for all `group` query heads.
void attention_direct(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k_cache,
                      const float* v_cache, int64_t capacity, const AttentionDims& dims, float scale,
                      float* out, int64_t out_stride, float* scratch, int threads, int64_t window,
                      float softcap) {
  const int64_t hd = dims.head_dim;
  const int64_t group = dims.num_heads / dims.num_kv_heads;
  const int64_t max_keys = pos0 + n;
  const int64_t tasks = n * dims.num_kv_heads;
  const int nt = int(std::min<int64_t>(threads, tasks));
  const VecKernels& k = vec_kernels();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float* scores = scratch + int64_t(omp_get_thread_num()) * group * max_keys;  // [group, keys]
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t i = task / dims.num_kv_heads;
      const int64_t g = task % dims.num_kv_heads;
      const int64_t t0 = first_key(pos0 + i, window);
      const int64_t keys = pos0 + i + 1 - t0;  // positions t0 .. pos0+i
      const float* K = k_cache + (g * capacity + t0) * hd;
      const float* V = v_cache + (g * capacity + t0) * hd;
      const float* qg = q + i * q_stride + g * group * hd;  // the group's query heads are adjacent
      float* og = out + i * out_stride + g * group * hd;
      for (int64_t t = 0; t < keys; ++t)
        for (int64_t h = 0; h < group; ++h) scores[h * keys + t] = scale * k.dot(qg + h * hd, K + t * hd, hd);
      if (softcap > 0) softcap_scores(scores, group * keys, softcap);
      for (int64_t h = 0; h < group; ++h) k.softmax(scores + h * keys, keys);
      std::fill(og, og + group * hd, 0.0f);
      for (int64_t t = 0; t < keys; ++t)
        for (int64_t h = 0; h < group; ++h) k.axpy(scores[h * keys + t], V + t * hd, og + h * hd, hd);
    }
  }
}

// Prefill path: per (query head, block of <= 64 query rows), S = scale·Q·Kᵀ and
// O = P·V as two sgemm calls over the keys visible to some row of the block:
// from the first row's first key (its window's start) to the last row's position.
void attention_gemm(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k_cache,
                    const float* v_cache, int64_t capacity, const AttentionDims& dims, float scale,
                    float* out, int64_t out_stride, float* scratch, int threads, int64_t window, float softcap) {
  const int64_t hd = dims.head_dim;
  const int64_t group = dims.num_heads / dims.num_kv_heads;
  const int64_t max_keys = pos0 + n;
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  const int64_t tasks = dims.num_heads * blocks;
  const int nt = int(std::min<int64_t>(threads, tasks));
  OmpThreadsScope single(nt > 1 ? 0 : 1);  // a serial region: keep oneDNN on this thread too
  const VecKernels& k = vec_kernels();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    // [rows, keys]; the per-thread stride is the one attention_scratch_floats
    // sizes (rows <= min(n, kRowBlock)), never more than the caller provided.
    float* S = scratch + int64_t(omp_get_thread_num()) * std::max(group, std::min(n, kRowBlock)) * max_keys;
    // Later blocks see more keys: hand them out dynamically, largest first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = blocks - 1 - task / dims.num_heads;
      const int64_t h = task % dims.num_heads;
      const int64_t g = h / group;
      const int64_t i0 = b * kRowBlock;
      const int64_t rows = std::min(kRowBlock, n - i0);
      const int64_t kbeg = first_key(pos0 + i0, window);  // the block's first row sees the earliest keys
      const int64_t keys = pos0 + i0 + rows - kbeg;        // positions kbeg .. the block's last row
      const float* K = k_cache + (g * capacity + kbeg) * hd;
      const float* V = v_cache + (g * capacity + kbeg) * hd;
      const float* Q = q + i0 * q_stride + h * hd;
      float* O = out + i0 * out_stride + h * hd;
      // Inside a parallel region oneDNN runs each sgemm on the calling thread.
      dnnl_sgemm('N', 'T', rows, keys, hd, scale, Q, q_stride, K, hd, 0.0f, S, keys);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = S + r * keys;
        const int64_t lo = first_key(pos0 + i0 + r, window) - kbeg;  // columns [lo, hi) are visible
        const int64_t hi = pos0 + i0 + r + 1 - kbeg;
        std::fill(row, row + lo, 0.0f);  // before the window
        if (softcap > 0) softcap_scores(row + lo, hi - lo, softcap);  // the visible scores only
        k.softmax(row + lo, hi - lo);
        std::fill(row + hi, row + keys, 0.0f);  // causal mask
      }
      dnnl_sgemm('N', 'N', rows, hd, keys, 1.0f, S, keys, V, hd, 0.0f, O, out_stride);
    }
  }
}

}  // namespace

int64_t attention_scratch_floats(const AttentionDims& dims, int64_t max_rows, int64_t max_keys, int threads) {
  const int64_t group = dims.num_heads / dims.num_kv_heads;
  const int64_t per_thread = std::max(group, std::min(max_rows, kRowBlock)) * max_keys;
  return per_thread * std::max(threads, 1);
}

void causal_attention(const float* q, int64_t q_stride, int64_t n, int64_t pos0, const float* k_cache,
                      const float* v_cache, int64_t capacity, const AttentionDims& dims, float scale,
                      float* out, int64_t out_stride, float* scratch, int threads, int64_t window,
                      float softcap) {
  if (n < kGemmMinRows)
    attention_direct(q, q_stride, n, pos0, k_cache, v_cache, capacity, dims, scale, out, out_stride, scratch,
                     threads, window, softcap);
  else
    attention_gemm(q, q_stride, n, pos0, k_cache, v_cache, capacity, dims, scale, out, out_stride, scratch,
                   threads, window, softcap);
}

}  // namespace kq::cpu
