// SwiGLU with the per-token W8A8 quantization of its output in one kernel
// (model_ops.hpp, swiglu_quantize): a decode step's MLP activation feeding an
// FP8 / INT8 down projection. One block per row, the row held in registers
// (8 BF16 per 16-byte load, every load issued before the first use).
#include <type_traits>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_ops_common.cuh"
#include "kernels/cuda/model_ops_launch.hpp"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"
#include "kernels/cuda/w8a8_codec.cuh"

namespace kq::cuda::ops {
namespace {

constexpr int kThreads = 512;

/// out[r] = BF16(silu(gate[r]) · up[r]) exactly as swiglu_kernel computes it,
/// then q[r] / scale[r] from those BF16 values as quantize_rows_* would.
/// out may alias gate (each thread reads its elements before writing them).
template <class Codec, int kIt>
__global__ void __launch_bounds__(kThreads)
    swiglu_quant_kernel(const uint16_t* gate, int64_t ld_gate, const uint16_t* __restrict__ up, int64_t ld_up,
                        uint16_t* out, int64_t ld_out, int64_t f, uint8_t* __restrict__ q, int64_t ldq,
                        float* __restrict__ scale) {
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  const int64_t r = blockIdx.x;
  const int n8 = int(f / 8);
  const uint4* g8 = reinterpret_cast<const uint4*>(gate + r * ld_gate);
  const uint4* u8 = reinterpret_cast<const uint4*>(up + r * ld_up);
  uint4 g[kIt], u[kIt];
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kThreads;
    if (i < n8) {
      g[j] = g8[i];
      u[j] = __ldg(u8 + i);
    }
  }
  float v[kIt][8];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kThreads;
    if (i < n8) {
      const uint32_t gw[4] = {g[j].x, g[j].y, g[j].z, g[j].w}, uw[4] = {u[j].x, u[j].y, u[j].z, u[j].w};
      uint32_t packed[4];
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float gv = e & 1 ? bf_hi(gw[e / 2]) : bf_lo(gw[e / 2]);
        const float uv = e & 1 ? bf_hi(uw[e / 2]) : bf_lo(uw[e / 2]);
        v[j][e] = bf(to_bf(gv / (1.0f + expf(-gv)) * uv));
        amax = fmaxf(amax, fabsf(v[j][e]));
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) packed[e] = pack_bf2(v[j][2 * e], v[j][2 * e + 1]);
      reinterpret_cast<uint4*>(out + r * ld_out)[i] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
  }
  const float s = row_scale<Codec>(block_max<kThreads>(amax, red));
  uint8_t* qr = q + r * ldq;
#pragma unroll
  for (int j = 0; j < kIt; ++j) {
    const int i = int(threadIdx.x) + j * kThreads;
    if (i < n8) {
      uint32_t c[2] = {0, 0};
#pragma unroll
      for (int e = 0; e < 8; ++e) c[e / 4] |= code_byte<Codec>(v[j][e], s) << (8 * (e % 4));
      reinterpret_cast<uint2*>(qr)[i] = make_uint2(c[0], c[1]);
    }
  }
  for (int i = n8 + int(threadIdx.x); i < int(ldq / 8); i += kThreads)
    reinterpret_cast<uint2*>(qr)[i] = make_uint2(0, 0);
  if (threadIdx.x == 0) scale[r] = s;
}

template <class Codec>
void launch(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up, uint16_t* out,
            int64_t ld_out, int64_t n, int64_t f, uint8_t* q, int64_t ldq, float* scale,
            cudaStream_t stream) {
  constexpr int64_t kRow = 8 * kThreads;
  const dim3 grid{unsigned(n)}, block{unsigned(kThreads)};
  if (f <= kRow)
    launch_pdl(swiglu_quant_kernel<Codec, 1>, grid, block, 0, stream, gate, ld_gate, up, ld_up, out, ld_out,
               f, q, ldq, scale);
  else if (f <= 2 * kRow)
    launch_pdl(swiglu_quant_kernel<Codec, 2>, grid, block, 0, stream, gate, ld_gate, up, ld_up, out, ld_out,
               f, q, ldq, scale);
  else if (f <= 3 * kRow)
    launch_pdl(swiglu_quant_kernel<Codec, 3>, grid, block, 0, stream, gate, ld_gate, up, ld_up, out, ld_out,
               f, q, ldq, scale);
  else
    launch_pdl(swiglu_quant_kernel<Codec, 4>, grid, block, 0, stream, gate, ld_gate, up, ld_up, out, ld_out,
               f, q, ldq, scale);
  KQ_CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool swiglu_quant_launch(const uint16_t* gate, int64_t ld_gate, const uint16_t* up, int64_t ld_up,
                         uint16_t* out, int64_t ld_out, int64_t n, int64_t f, ActCode code, void* q,
                         int64_t ldq, float* scale, cudaStream_t stream) {
  const bool ok = code != ActCode::None && f % 8 == 0 && f <= 4 * 8 * kThreads && ld_gate % 8 == 0 &&
                  ld_up % 8 == 0 && ld_out % 8 == 0 && aligned16(gate) && aligned16(up) && aligned16(out) &&
                  ldq >= f && ldq % 8 == 0 && reinterpret_cast<uintptr_t>(q) % 8 == 0;
  if (!ok) return false;
  auto* q8 = static_cast<uint8_t*>(q);
  if (code == ActCode::E4M3)
    launch<Fp8Codec>(gate, ld_gate, up, ld_up, out, ld_out, n, f, q8, ldq, scale, stream);
  else
    launch<Int8Codec>(gate, ld_gate, up, ld_up, out, ld_out, n, f, q8, ldq, scale, stream);
  return true;
}

}  // namespace kq::cuda::ops
