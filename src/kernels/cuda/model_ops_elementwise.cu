// Element-wise model ops: embeddings, residual add, rotary embedding, KV-cache
// writes, SwiGLU, GELU (tanh) and dtype conversions. Memory-bound; rows on
// blockIdx.y, columns on a grid-stride loop over x, so every access of a warp
// is contiguous.
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_ops_common.cuh"
#include "kernels/cuda/model_ops_launch.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"

namespace kq::cuda::ops {
namespace {

constexpr int kThreads = 256;

/// 2-D launch: grid.y = rows (chunked by 65535), grid.x covers the columns.
struct RowGrid {
  dim3 grid;
  RowGrid(int64_t rows, int64_t cols) {
    const int64_t bx = (cols + kThreads - 1) / kThreads;
    grid = dim3(unsigned(bx < 1 ? 1 : (bx > 1024 ? 1024 : bx)), unsigned(rows > 65535 ? 65535 : rows));
  }
};

#define KQ_ROWS_LOOP(n, cols)                                                         \
  for (int64_t r = blockIdx.y; r < (n); r += gridDim.y)                               \
    for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < (cols);      \
         c += int64_t(gridDim.x) * blockDim.x)

__global__ void embed_kernel(const uint16_t* __restrict__ table, const uint16_t* __restrict__ pos_table,
                             const int32_t* __restrict__ tokens, const int32_t* __restrict__ row_pos, int64_t n,
                             int64_t d, float* __restrict__ x) {
  pdl_launch_dependents();
  pdl_wait();
  KQ_ROWS_LOOP(n, d) {
    float v = bf(table[int64_t(tokens[r]) * d + c]);
    if (pos_table) v += bf(pos_table[int64_t(row_pos[r]) * d + c]);
    x[r * d + c] = v;
  }
}

__global__ void add_residual_kernel(float* __restrict__ x, const uint16_t* __restrict__ add, int64_t ld_add,
                                    int64_t n, int64_t d) {
  pdl_launch_dependents();
  pdl_wait();
  KQ_ROWS_LOOP(n, d) x[r * d + c] += bf(add[r * ld_add + c]);
}

/// grid.y = rows; thread (x) = (head, i) pair index over (q_heads + k_heads) * half; half = rotary_dim / 2 (the
/// dimensions from rotary_dim on are left as they are).
__global__ void rope_kernel(uint16_t* __restrict__ q, int64_t ldq, int q_heads, uint16_t* __restrict__ k,
                            int64_t ldk, int k_heads, int head_dim, int rotary_dim, const float* __restrict__ cos_t,
                            const float* __restrict__ sin_t, const int32_t* __restrict__ row_pos, int64_t n) {
  pdl_launch_dependents();
  pdl_wait();
  const int half = rotary_dim / 2;
  const int64_t pairs = int64_t(q_heads + k_heads) * half;
  KQ_ROWS_LOOP(n, pairs) {
    const int head = int(c / half), i = int(c % half);
    uint16_t* base = head < q_heads ? q + r * ldq + int64_t(head) * head_dim
                                    : k + r * ldk + int64_t(head - q_heads) * head_dim;
    const int64_t p = row_pos[r];
    const float cs = cos_t[p * half + i], sn = sin_t[p * half + i];
    const float a = bf(base[i]), b = bf(base[i + half]);
    base[i] = to_bf(a * cs - b * sn);
    base[i + half] = to_bf(b * cs + a * sn);
  }
}

/// grid.y = rows; columns = kv_heads * head_dim (keys then values handled by the same thread).
__global__ void store_kv_kernel(const uint16_t* __restrict__ k, int64_t ldk, const uint16_t* __restrict__ v,
                                int64_t ldv, KVLayerView kv, const int32_t* __restrict__ row_seq,
                                const int32_t* __restrict__ row_pos, int64_t n) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t cols = int64_t(kv.kv_heads) * kv.head_dim;
  KQ_ROWS_LOOP(n, cols) {
    const int64_t h = c / kv.head_dim, i = c % kv.head_dim;
    const int s = row_seq[r];
    const int64_t off = (h * kv.capacity + row_pos[r]) * kv.head_dim + i;
    kv.k[s][off] = k[r * ldk + c];
    kv.v[s][off] = v[r * ldv + c];
  }
}

/// rope_kernel and store_kv_kernel in one pass: columns [0, qp) rotate q
/// pairs, [qp, qp + kp) rotate k pairs (written back to k and to the cache),
/// [qp + kp, qp + kp + kr) copy k's dimensions past rotary_dim into the cache,
/// the rest copy v into the cache. Same arithmetic as the two kernels.
__global__ void rope_store_kv_kernel(uint16_t* __restrict__ q, int64_t ldq, int q_heads, uint16_t* __restrict__ k,
                                     int64_t ldk, const uint16_t* __restrict__ v, int64_t ldv, KVLayerView kv,
                                     int rotary_dim, const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                                     const int32_t* __restrict__ row_seq, const int32_t* __restrict__ row_pos,
                                     int64_t n) {
  pdl_launch_dependents();
  pdl_wait();
  const int hd = kv.head_dim, half = rotary_dim / 2, rest = hd - rotary_dim;
  const int64_t qp = int64_t(q_heads) * half, kp = int64_t(kv.kv_heads) * half;
  const int64_t kr = int64_t(kv.kv_heads) * rest;
  const int64_t cols = qp + kp + kr + int64_t(kv.kv_heads) * hd;
  KQ_ROWS_LOOP(n, cols) {
    const int64_t p = row_pos[r];
    if (c < qp + kp) {
      const bool is_q = c < qp;
      const int64_t j = is_q ? c : c - qp;
      const int head = int(j / half), i = int(j % half);
      uint16_t* base = is_q ? q + r * ldq + int64_t(head) * hd : k + r * ldk + int64_t(head) * hd;
      const float cs = cos_t[p * half + i], sn = sin_t[p * half + i];
      const float a = bf(base[i]), b = bf(base[i + half]);
      const uint16_t ra = to_bf(a * cs - b * sn), rb = to_bf(b * cs + a * sn);
      base[i] = ra;
      base[i + half] = rb;
      if (!is_q) {
        uint16_t* dst = kv.k[row_seq[r]] + (int64_t(head) * kv.capacity + p) * hd;
        dst[i] = ra;
        dst[i + half] = rb;
      }
    } else if (c < qp + kp + kr) {  // unrotated key dimensions (rotary_dim < head_dim)
      const int64_t j = c - qp - kp, h = j / rest, i = rotary_dim + j % rest;
      kv.k[row_seq[r]][(h * kv.capacity + p) * hd + i] = k[r * ldk + h * hd + i];
    } else {
      const int64_t j = c - qp - kp - kr, h = j / hd, i = j % hd;
      kv.v[row_seq[r]][(h * kv.capacity + p) * hd + i] = v[r * ldv + j];
    }
  }
}

__global__ void swiglu_kernel(const uint16_t* gate, int64_t ld_gate, const uint16_t* __restrict__ up, int64_t ld_up,
                              uint16_t* out, int64_t ld_out, int64_t n, int64_t f) {
  pdl_launch_dependents();
  pdl_wait();
  // out may alias gate (same element read then written by one thread): no __restrict__ on them.
  KQ_ROWS_LOOP(n, f) {
    const float g = bf(gate[r * ld_gate + c]);
    const float u = bf(up[r * ld_up + c]);
    out[r * ld_out + c] = to_bf(g / (1.0f + expf(-g)) * u);
  }
}

/// GELU, tanh approximation (GPT-2's gelu_new, gelu_pytorch_tanh), in F32.
__device__ __forceinline__ float gelu_tanh(float v) {
  return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));  // sqrt(2/pi)
}

__global__ void gelu_tanh_kernel(uint16_t* __restrict__ x, int64_t ld, int64_t n, int64_t f) {
  pdl_launch_dependents();
  pdl_wait();
  KQ_ROWS_LOOP(n, f) {
    x[r * ld + c] = to_bf(gelu_tanh(bf(x[r * ld + c])));
  }
}

/// out = BF16(GELU(gate) · up); kExact: the erf form, else the tanh approximation (as gelu_tanh_kernel).
template <bool kExact>
__global__ void geglu_kernel(const uint16_t* gate, int64_t ld_gate, const uint16_t* __restrict__ up, int64_t ld_up,
                             uint16_t* out, int64_t ld_out, int64_t n, int64_t f) {
  pdl_launch_dependents();
  pdl_wait();
  // out may alias gate (same element read then written by one thread): no __restrict__ on them.
  KQ_ROWS_LOOP(n, f) {
    const float g = bf(gate[r * ld_gate + c]);
    const float u = bf(up[r * ld_up + c]);
    const float a = kExact ? 0.5f * g * (1.0f + erff(g * 0.7071067811865476f))  // 1 / sqrt(2)
                           : gelu_tanh(g);
    out[r * ld_out + c] = to_bf(a * u);
  }
}

__global__ void scale_kernel(float* __restrict__ x, float s, int64_t count) {
  pdl_launch_dependents();
  pdl_wait();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ in, uint16_t* __restrict__ out, int64_t count) {
  pdl_launch_dependents();
  pdl_wait();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = to_bf(in[i]);
}

__global__ void bf16_to_f32_kernel(const uint16_t* __restrict__ in, float* __restrict__ out, int64_t count) {
  pdl_launch_dependents();
  pdl_wait();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = bf(in[i]);
}

}  // namespace

void embed_rows_launch(const uint16_t* table, const uint16_t* pos_table, const int32_t* tokens,
                       const int32_t* row_pos, int64_t n, int64_t d, float* x, cudaStream_t stream) {
  const RowGrid g(n, d);
  launch_pdl(embed_kernel, g.grid, dim3(kThreads), 0, stream, table, pos_table, tokens, row_pos, n, d, x);
  KQ_CUDA_CHECK_LAUNCH();
}

void add_residual_launch(float* x, const uint16_t* add, int64_t ld_add, int64_t n, int64_t d, cudaStream_t stream) {
  const RowGrid g(n, d);
  launch_pdl(add_residual_kernel, g.grid, dim3(kThreads), 0, stream, x, add, ld_add, n, d);
  KQ_CUDA_CHECK_LAUNCH();
}

void rope_launch(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
                 int rotary_dim, const float* cos, const float* sin, const int32_t* row_pos, int64_t n,
                 cudaStream_t stream) {
  const RowGrid g(n, int64_t(q_heads + k_heads) * (rotary_dim / 2));
  launch_pdl(rope_kernel, g.grid, dim3(kThreads), 0, stream, q, ldq, q_heads, k, ldk, k_heads, head_dim,
             rotary_dim, cos, sin, row_pos, n);
  KQ_CUDA_CHECK_LAUNCH();
}

void store_kv_launch(const uint16_t* k, int64_t ldk, const uint16_t* v, int64_t ldv, const KVLayerView& kv,
                     const int32_t* row_seq, const int32_t* row_pos, int64_t n, cudaStream_t stream) {
  const RowGrid g(n, int64_t(kv.kv_heads) * kv.head_dim);
  launch_pdl(store_kv_kernel, g.grid, dim3(kThreads), 0, stream, k, ldk, v, ldv, kv, row_seq, row_pos, n);
  KQ_CUDA_CHECK_LAUNCH();
}

void rope_store_kv_launch(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, const uint16_t* v,
                          int64_t ldv, const KVLayerView& kv, int rotary_dim, const float* cos, const float* sin,
                          const int32_t* row_seq, const int32_t* row_pos, int64_t n, cudaStream_t stream) {
  const int64_t cols = int64_t(q_heads + kv.kv_heads) * (rotary_dim / 2) +
                       int64_t(kv.kv_heads) * (kv.head_dim - rotary_dim) + int64_t(kv.kv_heads) * kv.head_dim;
  const RowGrid g(n, cols);
  launch_pdl(rope_store_kv_kernel, g.grid, dim3(kThreads), 0, stream, q, ldq, q_heads, k, ldk, v, ldv, kv,
             rotary_dim, cos, sin, row_seq, row_pos, n);
  KQ_CUDA_CHECK_LAUNCH();
}

void swiglu_launch(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
                   int64_t ld_out, int64_t n, int64_t f, cudaStream_t stream) {
  const RowGrid g(n, f);
  launch_pdl(swiglu_kernel, g.grid, dim3(kThreads), 0, stream, gate, ld_gate, up, ld_up, out, ld_out, n, f);
  KQ_CUDA_CHECK_LAUNCH();
}

void gelu_tanh_launch(uint16_t* x, int64_t ld, int64_t n, int64_t f, cudaStream_t stream) {
  const RowGrid g(n, f);
  launch_pdl(gelu_tanh_kernel, g.grid, dim3(kThreads), 0, stream, x, ld, n, f);
  KQ_CUDA_CHECK_LAUNCH();
}

void geglu_launch(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
                  int64_t ld_out, int64_t n, int64_t f, bool exact, cudaStream_t stream) {
  const RowGrid g(n, f);
  launch_pdl(exact ? geglu_kernel<true> : geglu_kernel<false>, g.grid, dim3(kThreads), 0, stream, gate, ld_gate, up,
             ld_up, out, ld_out, n, f);
  KQ_CUDA_CHECK_LAUNCH();
}

void scale_rows_launch(float* x, float s, int64_t count, cudaStream_t stream) {
  launch_pdl(scale_kernel, grid_for(count, kThreads, 4096), dim3(kThreads), 0, stream, x, s, count);
  KQ_CUDA_CHECK_LAUNCH();
}

void f32_to_bf16_launch(const float* in, uint16_t* out, int64_t count, cudaStream_t stream) {
  launch_pdl(f32_to_bf16_kernel, grid_for(count, kThreads, 4096), dim3(kThreads), 0, stream, in, out, count);
  KQ_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32_launch(const uint16_t* in, float* out, int64_t count, cudaStream_t stream) {
  launch_pdl(bf16_to_f32_kernel, grid_for(count, kThreads, 4096), dim3(kThreads), 0, stream, in, out, count);
  KQ_CUDA_CHECK_LAUNCH();
}

}  // namespace kq::cuda::ops
