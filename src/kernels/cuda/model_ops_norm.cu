// RMSNorm and LayerNorm with the fused residual add: one block per row.
// Rows of up to 16384 elements on the vector path are held in registers
// (norm_reg_kernel); longer or unaligned rows loop (norm_kernel). Vector
// width 4 (float4 for the F32 residual, 8-byte BF16 quads) when every
// pointer and row stride allows it, else scalar. The row is read from global
// memory once per pass; each thread reads back only the elements it wrote, so
// the passes need no barrier besides the reductions'.
#include <type_traits>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_ops_common.cuh"
#include "kernels/cuda/model_ops_launch.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"
#include "kernels/cuda/w8a8_codec.cuh"

namespace kq::cuda::ops {
namespace {

constexpr int kNormThreads = 256;

template <int V>
struct Vec;
template <>
struct Vec<1> {
  float v[1];
  __device__ static Vec load_f32(const float* p) { return Vec{{*p}}; }
  __device__ void store_f32(float* p) const { *p = v[0]; }
  __device__ static Vec load_bf16(const uint16_t* p) { return Vec{{bf(*p)}}; }
  __device__ void store_bf16(uint16_t* p) const { *p = to_bf(v[0]); }
};
template <>
struct Vec<4> {
  float v[4];
  __device__ static Vec load_f32(const float* p) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    return Vec{{a.x, a.y, a.z, a.w}};
  }
  __device__ void store_f32(float* p) const { *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]); }
  __device__ static Vec load_bf16(const uint16_t* p) {
    const uint2 a = *reinterpret_cast<const uint2*>(p);
    return Vec{{bf_lo(a.x), bf_hi(a.x), bf_lo(a.y), bf_hi(a.y)}};
  }
  __device__ void store_bf16(uint16_t* p) const {
    *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf2(v[0], v[1]), pack_bf2(v[2], v[3]));
  }
};

/// One block per row r: x[r] += add[r] (if add), then out[r] = norm(x[r]).
/// kLayer: LayerNorm with gamma = weight and beta; else RMSNorm with weight.
template <int V, bool kLayer>
__global__ void __launch_bounds__(kNormThreads)
    norm_kernel(float* __restrict__ x, const uint16_t* __restrict__ add, int64_t ld_add,
                const float* __restrict__ weight, const float* __restrict__ beta, float eps,
                uint16_t* __restrict__ out, int64_t ld_out, int64_t d) {
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  const int64_t r = blockIdx.x;
  float* xr = x + r * d;
  const int64_t nv = d / V;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < nv; i += kNormThreads) {
    Vec<V> a = Vec<V>::load_f32(xr + i * V);
    if (add) {
      const Vec<V> b = Vec<V>::load_bf16(add + r * ld_add + i * V);
#pragma unroll
      for (int j = 0; j < V; ++j) a.v[j] += b.v[j];
      a.store_f32(xr + i * V);
    }
#pragma unroll
    for (int j = 0; j < V; ++j) sum += kLayer ? a.v[j] : a.v[j] * a.v[j];
  }
  sum = block_sum<kNormThreads>(sum, red);
  float mean = 0.0f, inv;
  if (kLayer) {
    mean = sum / float(d);
    float var = 0.0f;
    for (int64_t i = threadIdx.x; i < nv; i += kNormThreads) {
      const Vec<V> a = Vec<V>::load_f32(xr + i * V);
#pragma unroll
      for (int j = 0; j < V; ++j) var += (a.v[j] - mean) * (a.v[j] - mean);
    }
    var = block_sum<kNormThreads>(var, red);
    inv = rsqrtf(var / float(d) + eps);
  } else {
    inv = rsqrtf(sum / float(d) + eps);
  }
  for (int64_t i = threadIdx.x; i < nv; i += kNormThreads) {
    Vec<V> a = Vec<V>::load_f32(xr + i * V);
    const Vec<V> w = Vec<V>::load_f32(weight + i * V);
    Vec<V> b{};
    if (kLayer) b = Vec<V>::load_f32(beta + i * V);
#pragma unroll
    for (int j = 0; j < V; ++j) a.v[j] = kLayer ? (a.v[j] - mean) * inv * w.v[j] + b.v[j] : a.v[j] * inv * w.v[j];
    a.store_bf16(out + r * ld_out + i * V);
  }
}

constexpr int kRegThreads = 512;

/// The same with the row held in registers (vector path, d <= kIt·4·512):
/// every load of the row (x, add, weight, beta) is issued before the first
/// use, so a row costs about one memory latency instead of one per loop trip
/// (a decode step's norms are one row each: 5 us -> ~2.5 us as measured by
/// Nsight Compute on the H200). Codec (Fp8Codec / Int8Codec, or void): also
/// quantizes the BF16 output row per token into q [n, ldq] (zero past d) and
/// scale [n], as quantize_rows_fp8 / _int8 would from `out`.
template <int kIt, bool kLayer, class Codec = void>
__global__ void __launch_bounds__(kRegThreads)
    norm_reg_kernel(float* __restrict__ x, const uint16_t* __restrict__ add, int64_t ld_add,
                    const float* __restrict__ weight, const float* __restrict__ beta, float eps,
                    uint16_t* __restrict__ out, int64_t ld_out, int64_t d, uint8_t* __restrict__ q,
                    int64_t ldq, float* __restrict__ scale) {
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  const int64_t r = blockIdx.x;
  float* xr = x + r * d;
  const int nv = int(d / 4);
  Vec<4> a[kIt], b[kIt], w[kIt], be[kIt];
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kRegThreads;
    if (i < nv) {
      a[j] = Vec<4>::load_f32(xr + i * 4);
      if (add) b[j] = Vec<4>::load_bf16(add + r * ld_add + i * 4);
      w[j] = Vec<4>::load_f32(weight + i * 4);
      if (kLayer) be[j] = Vec<4>::load_f32(beta + i * 4);
    }
  }
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kRegThreads;
    if (i < nv) {
      if (add) {
#pragma unroll
        for (int e = 0; e < 4; ++e) a[j].v[e] += b[j].v[e];
        a[j].store_f32(xr + i * 4);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) sum += kLayer ? a[j].v[e] : a[j].v[e] * a[j].v[e];
    }
  }
  sum = block_sum<kRegThreads>(sum, red);
  float mean = 0.0f, inv;
  if (kLayer) {
    mean = sum / float(d);
    float var = 0.0f;
#pragma unroll
    for (int j = 0; j < kIt; ++j)
      if (int(threadIdx.x) + j * kRegThreads < nv)
#pragma unroll
        for (int e = 0; e < 4; ++e) var += (a[j].v[e] - mean) * (a[j].v[e] - mean);
    var = block_sum<kRegThreads>(var, red);
    inv = rsqrtf(var / float(d) + eps);
  } else {
    inv = rsqrtf(sum / float(d) + eps);
  }
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kRegThreads;
    if (i < nv) {
#pragma unroll
      for (int e = 0; e < 4; ++e)
        a[j].v[e] = kLayer ? (a[j].v[e] - mean) * inv * w[j].v[e] + be[j].v[e] : a[j].v[e] * inv * w[j].v[e];
      a[j].store_bf16(out + r * ld_out + i * 4);
    }
  }
  if constexpr (!std::is_void_v<Codec>) {
    // Per-token quantization of the BF16 values just stored (rounded the same way).
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < kIt; ++j)
      if (int(threadIdx.x) + j * kRegThreads < nv)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          a[j].v[e] = bf(to_bf(a[j].v[e]));
          amax = fmaxf(amax, fabsf(a[j].v[e]));
        }
    const float s = row_scale<Codec>(block_max<kRegThreads>(amax, red));
    uint8_t* qr = q + r * ldq;
#pragma unroll
    for (int j = 0; j < kIt; ++j) {
      const int i = int(threadIdx.x) + j * kRegThreads;
      if (i < nv) {
        uint32_t packed = 0;
#pragma unroll
        for (int e = 0; e < 4; ++e) packed |= code_byte<Codec>(a[j].v[e], s) << (8 * e);
        reinterpret_cast<uint32_t*>(qr)[i] = packed;
      }
    }
    for (int i = nv + int(threadIdx.x); i < int(ldq / 4); i += kRegThreads)
      reinterpret_cast<uint32_t*>(qr)[i] = 0;
    if (threadIdx.x == 0) scale[r] = s;
  }
}

template <int kIt, bool kLayer, class Codec = void>
void launch_reg(float* x, const uint16_t* add, int64_t ld_add, const float* weight, const float* beta,
                float eps, uint16_t* out, int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream,
                uint8_t* q = nullptr, int64_t ldq = 0, float* scale = nullptr) {
  launch_pdl(norm_reg_kernel<kIt, kLayer, Codec>, dim3(unsigned(n)), dim3(kRegThreads), 0, stream, x, add,
             ld_add, weight, beta, eps, out, ld_out, d, q, ldq, scale);
}

template <class Codec>
void launch_rms_quant(float* x, const uint16_t* add, int64_t ld_add, const float* weight, float eps,
                      uint16_t* out, int64_t ld_out, int64_t n, int64_t d, uint8_t* q, int64_t ldq,
                      float* scale, cudaStream_t stream) {
  constexpr int64_t kRow = 4 * kRegThreads;
  if (d <= kRow)
    launch_reg<1, false, Codec>(x, add, ld_add, weight, nullptr, eps, out, ld_out, n, d, stream, q, ldq,
                                scale);
  else if (d <= 2 * kRow)
    launch_reg<2, false, Codec>(x, add, ld_add, weight, nullptr, eps, out, ld_out, n, d, stream, q, ldq,
                                scale);
  else if (d <= 4 * kRow)
    launch_reg<4, false, Codec>(x, add, ld_add, weight, nullptr, eps, out, ld_out, n, d, stream, q, ldq,
                                scale);
  else
    launch_reg<8, false, Codec>(x, add, ld_add, weight, nullptr, eps, out, ld_out, n, d, stream, q, ldq,
                                scale);
}

template <bool kLayer>
void launch(bool vec, float* x, const uint16_t* add, int64_t ld_add, const float* weight, const float* beta,
            float eps, uint16_t* out, int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream) {
  // One launch covers at most 2^31 - 1 rows (far above any chunk).
  constexpr int64_t kRow = 4 * kRegThreads;  // elements per register slot
  if (vec && d <= 8 * kRow) {
    if (d <= kRow)
      launch_reg<1, kLayer>(x, add, ld_add, weight, beta, eps, out, ld_out, n, d, stream);
    else if (d <= 2 * kRow)
      launch_reg<2, kLayer>(x, add, ld_add, weight, beta, eps, out, ld_out, n, d, stream);
    else if (d <= 4 * kRow)
      launch_reg<4, kLayer>(x, add, ld_add, weight, beta, eps, out, ld_out, n, d, stream);
    else
      launch_reg<8, kLayer>(x, add, ld_add, weight, beta, eps, out, ld_out, n, d, stream);
    return;
  }
  launch_pdl(vec ? norm_kernel<4, kLayer> : norm_kernel<1, kLayer>, dim3(unsigned(n)), dim3(kNormThreads), 0,
             stream, x, add, ld_add, weight, beta, eps, out, ld_out, d);
}

bool aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }

bool vector_path(float* x, const uint16_t* add, int64_t ld_add, const float* weight, const float* beta,
                 const uint16_t* out, int64_t ld_out, int64_t d) {
  return d % 4 == 0 && aligned(x, 16) && aligned(weight, 16) && (!beta || aligned(beta, 16)) &&
         aligned(out, 8) && ld_out % 4 == 0 && (!add || (aligned(add, 8) && ld_add % 4 == 0));
}

/// Head vectors of up to 256 values (head_dim <= 2 · 32 · kMaxHeadPairs).
constexpr int kMaxHeadPairs = 4;

/// Per-head RMSNorm of the head vector at `v` (hd values, hd even, <= 256) by
/// one warp, each value read once into registers: lane l holds the values
/// i and i + hd/2 for i = l, l + 32, ... < hd/2 in a[j], b[j] (the pairs RoPE
/// rotates), returned normed (F32, not yet rounded).
__device__ __forceinline__ void norm_head_pairs(const uint16_t* v, int hd, const float* __restrict__ g, float eps,
                                                int lane, float (&a)[kMaxHeadPairs], float (&b)[kMaxHeadPairs]) {
  const int half = hd / 2;
  float sq = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxHeadPairs; ++j) {
    const int i = lane + 32 * j;
    a[j] = i < half ? bf(v[i]) : 0.0f;
    b[j] = i < half ? bf(v[i + half]) : 0.0f;
    sq = fmaf(a[j], a[j], sq);
    sq = fmaf(b[j], b[j], sq);
  }
  sq = warp_sum(sq);
  const float inv = rsqrtf(sq / float(hd) + eps);
#pragma unroll
  for (int j = 0; j < kMaxHeadPairs; ++j) {
    const int i = lane + 32 * j;
    if (i < half) {
      a[j] = a[j] * inv * g[i];
      b[j] = b[j] * inv * g[i + half];
    }
  }
}

/// Warp w of the grid norms head vector w in place: row w / heads, head
/// w % heads (q's heads first, then k's).
__global__ void __launch_bounds__(kNormThreads)
    qk_norm_kernel(uint16_t* __restrict__ q, int64_t ldq, int q_heads, uint16_t* __restrict__ k, int64_t ldk,
                   int k_heads, int hd, const float* __restrict__ q_weight, const float* __restrict__ k_weight,
                   float eps, int64_t n) {
  pdl_launch_dependents();
  pdl_wait();
  const int heads = q_heads + k_heads, lane = int(threadIdx.x) % 32;
  const int64_t w = int64_t(blockIdx.x) * (kNormThreads / 32) + int64_t(threadIdx.x) / 32;
  if (w >= n * heads) return;
  const int64_t r = w / heads;
  const int h = int(w % heads);
  const bool is_q = h < q_heads;
  uint16_t* v = is_q ? q + r * ldq + int64_t(h) * hd : k + r * ldk + int64_t(h - q_heads) * hd;
  float a[kMaxHeadPairs], b[kMaxHeadPairs];
  norm_head_pairs(v, hd, is_q ? q_weight : k_weight, eps, lane, a, b);
  const int half = hd / 2;
#pragma unroll
  for (int j = 0; j < kMaxHeadPairs; ++j)
    if (const int i = lane + 32 * j; i < half) {
      v[i] = to_bf(a[j]);
      v[i + half] = to_bf(b[j]);
    }
}

/// One block per row: y[r] = BF16(y[r] / rms · weight) in place, the sum of squares in F32 (two passes over
/// the row; each thread rewrites only the elements it read).
__global__ void __launch_bounds__(kNormThreads)
    rms_norm_rows_kernel(uint16_t* __restrict__ y, int64_t ld, const float* __restrict__ weight, float eps,
                         int64_t d) {
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  uint16_t* yr = y + int64_t(blockIdx.x) * ld;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += kNormThreads) {
    const float v = bf(yr[i]);
    sum = fmaf(v, v, sum);
  }
  sum = block_sum<kNormThreads>(sum, red);
  const float inv = rsqrtf(sum / float(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += kNormThreads) yr[i] = to_bf(bf(yr[i]) * inv * weight[i]);
}

}  // namespace

void rms_norm_rows_launch(uint16_t* y, int64_t ld, const float* weight, float eps, int64_t n, int64_t d,
                          cudaStream_t stream) {
  launch_pdl(rms_norm_rows_kernel, dim3(unsigned(n)), dim3(kNormThreads), 0, stream, y, ld, weight, eps, d);
  KQ_CUDA_CHECK_LAUNCH();
}

void qk_norm_launch(uint16_t* q, int64_t ldq, int q_heads, uint16_t* k, int64_t ldk, int k_heads, int head_dim,
                    const float* q_weight, const float* k_weight, float eps, int64_t n, cudaStream_t stream) {
  constexpr int64_t kWarps = kNormThreads / 32;
  const int64_t vectors = n * (q_heads + k_heads);
  launch_pdl(qk_norm_kernel, dim3(unsigned((vectors + kWarps - 1) / kWarps)), dim3(kNormThreads), 0, stream, q, ldq,
             q_heads, k, ldk, k_heads, head_dim, q_weight, k_weight, eps, n);
  KQ_CUDA_CHECK_LAUNCH();
}

void norm_launch(bool layer, float* x, const uint16_t* add, int64_t ld_add, const float* weight, const float* beta,
                 float eps, uint16_t* out, int64_t ld_out, int64_t n, int64_t d, cudaStream_t stream) {
  const bool vec = vector_path(x, add, ld_add, weight, beta, out, ld_out, d);
  if (layer)
    launch<true>(vec, x, add, ld_add, weight, beta, eps, out, ld_out, n, d, stream);
  else
    launch<false>(vec, x, add, ld_add, weight, beta, eps, out, ld_out, n, d, stream);
}

bool rms_norm_quant_launch(float* x, const uint16_t* add, int64_t ld_add, const float* weight, float eps,
                           uint16_t* out, int64_t ld_out, int64_t n, int64_t d, ActCode code, void* q,
                           int64_t ldq, float* scale, cudaStream_t stream) {
  if (code == ActCode::None || !vector_path(x, add, ld_add, weight, nullptr, out, ld_out, d) ||
      d > 8 * 4 * kRegThreads || ldq < d || ldq % 4 != 0 || !aligned(q, 4))
    return false;
  auto* q8 = static_cast<uint8_t*>(q);
  if (code == ActCode::E4M3)
    launch_rms_quant<Fp8Codec>(x, add, ld_add, weight, eps, out, ld_out, n, d, q8, ldq, scale, stream);
  else
    launch_rms_quant<Int8Codec>(x, add, ld_add, weight, eps, out, ld_out, n, d, q8, ldq, scale, stream);
  return true;
}

}  // namespace kq::cuda::ops
