#pragma once
// Device helpers of the W4A16 kernels (w4a16_kernels.cu, w4a16_prefill.cu):
// PTX wrappers for mma.sync m16n8k16 BF16, ldmatrix, cp.async and streaming
// loads, and the "Dq" dequantization kinds.
#include <cuda_bf16.h>

#include <cstdint>

namespace kq::cuda::w4dev {

/// How codes become values.
enum class Dq { Lut, Int4Sym, Int4Asym };

/// C[16x8] += A[16x16] · B[16x8], BF16 operands, FP32 accumulators
/// (PTX ISA, "Matrix Fragments for mma.m16n8k16"). Not volatile: a function
/// of its registers, so the compiler may interleave independent mma chains.
__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// 16-byte global load, not allocated in L1 (each weight byte is read once).
/// volatile: stays where it is written (issued before the LUT fill / barrier).
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ uint32_t ld_u16(const uint16_t* p) {
  unsigned short r;
  asm volatile("ld.global.nc.u16 %0, [%1];" : "=h"(r) : "l"(p));
  return r;
}

/// Word i (0..3, compile-time after unrolling) of a uint4.
__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// cp.async of 16 bytes; bytes beyond src_bytes (0..16) are filled with zeros.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async8(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

/// Four 8x8 BF16 matrices from shared memory (lanes 8i..8i+7 give matrix i's row addresses).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float bf16_bits_to_float(uint32_t b) { return __uint_as_float(b << 16); }

/// Pair from byte `i` (0..3, compile-time after unrolling) of `w` through the
/// lane's column of the NF4/FP4 lookup table (fill_lut): one PRMT builds the
/// byte offset (code byte << 8 | lane << 2) from lane4 = lane << 2.
__device__ __forceinline__ uint32_t lut_pair(const char* lut, uint32_t lane4, uint32_t w, int i) {
  const uint32_t off = __byte_perm(lane4, w, 0x1100u | uint32_t(4 + i) << 4);
  return *reinterpret_cast<const uint32_t*>(lut + off);
}

/// INT4 BF16 pair (128 + u_lo, 128 + u_hi), exact, from nibbles 0 and 4 of `bits`.
__device__ __forceinline__ uint32_t int4_pair(uint32_t bits) { return (bits & 0x000F000Fu) | 0x43004300u; }

/// A operand of mma step s (0..7, compile-time after unrolling) for one
/// 128-k tile of rows g (q0 = this lane's 16 code bytes of the row) and g + 8
/// (q1), unscaled: codebook values (NF4/FP4) or 128 + u (INT4). The step's 4
/// codes per row are bytes 2(s&1), 2(s&1)+1 of word s/2 (plain packing, low
/// nibble first) or nibbles (s&1)·2 .. of the interleaved word (w4a16.hpp).
template <Dq kDq>
__device__ __forceinline__ void a_operand_16rows(uint32_t (&a)[4], const uint4& q0, const uint4& q1, int s,
                                                 const char* lut, uint32_t lane4) {
  const uint32_t w0 = word(q0, s >> 1), w1 = word(q1, s >> 1);
  if constexpr (kDq == Dq::Lut) {
    const int i = 2 * (s & 1);
    a[0] = lut_pair(lut, lane4, w0, i);
    a[1] = lut_pair(lut, lane4, w1, i);
    a[2] = lut_pair(lut, lane4, w0, i + 1);
    a[3] = lut_pair(lut, lane4, w1, i + 1);
  } else {
    const int sh = 8 * (s & 1);
    a[0] = int4_pair(w0 >> sh);
    a[1] = int4_pair(w1 >> sh);
    a[2] = int4_pair(w0 >> (sh + 4));
    a[3] = int4_pair(w1 >> (sh + 4));
  }
}

/// Fills the NF4/FP4 lookup table of the decode GEMVs (64 KB of shared
/// memory): entry b (a code byte, low nibble first) at byte 256·b holds the
/// BF16 pair (codebook[b & 15], codebook[b >> 4]) in its first 32 words, one
/// copy per lane, so a warp's lookups never share a bank. kThreads threads
/// share the work; no barrier (the caller syncs before the first lookup).
template <int kThreads>
__device__ __forceinline__ void fill_lut(void* lut, const float* codebook) {
  uint4* lut4 = reinterpret_cast<uint4*>(lut);
  for (int i = threadIdx.x; i < 256 * 8; i += kThreads) {
    const int b = i >> 3;
    const uint32_t v = pack_bf16x2(codebook[b & 15], codebook[b >> 4]);
    lut4[b * 16 + (i & 7)] = make_uint4(v, v, v, v);
  }
}

}  // namespace kq::cuda::w4dev
