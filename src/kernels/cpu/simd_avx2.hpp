#pragma once
// AVX2 building blocks of the quantized kernels. Include ONLY from *_avx2.cpp
// files (they are the only ones compiled with -mavx2 -mfma -mf16c).
//
// The canonical F32 summation order of the weight-only kernels (INT8-wo,
// FP8, 4-bit), shared by the GEMV (decode) and GEMM (prefill) paths so that a
// token's output does not depend on M or on the thread count (FP8 and 4-bit:
// below their sgemm thresholds, quant_kernels_avx2.hpp):
//   K (padded to whole decode units with zero weights and zero activations)
//   is cut into chunks of kChunk elements. For each output (m, n):
//     total = 0
//     for each chunk:  acc = 0 (8 lanes)
//       unblocked:     acc = fma(w[k..k+8), x[k..k+8), acc) for each vector
//       blocked (4-bit): per block: bs = 0; bs = fma(w, x, bs) per vector;
//                      acc = fma(bs, scale[n, block], acc)
//       total = total + hsum8(acc)
//     y = finish(m, n, total)
// Vector k-order is the order of the decoded weights (for 4-bit formats a
// fixed permutation of k, applied to x as well).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/scratch.hpp"

namespace kq::cpu::avx2 {

/// Elements of K per chunk of the canonical reduction (a multiple of every
/// block size and decode unit).
inline constexpr int64_t kChunk = 1024;

/// Σ of the 8 lanes in a fixed order: t = lo + hi; ((t0 + t2) + (t1 + t3)).
inline float hsum8(__m256 v) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
  return _mm_cvtss_f32(t);
}

/// Σ of the 8 INT32 lanes (exact; order irrelevant).
inline int32_t hsum8_epi32(__m256i v) {
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
  return _mm_cvtsi128_si32(t);
}

/// Hides a value from the optimizer so that `a * b` and a following `+ c`
/// are not contracted into one FMA (these files are built with -mfma): the
/// epilogues must round exactly like the scalar reference.
inline float opaque(float v) {
  __asm__("" : "+x"(v));
  return v;
}

/// a · b + c with two roundings (never fused).
inline float mul_add_unfused(float a, float b, float c) { return opaque(a * b) + c; }

/// Copies n (< 32) bytes into a zero-filled 32-byte buffer.
inline void copy_tail32(const uint8_t* src, int64_t n, uint8_t out[32]) {
  std::memset(out, 0, 32);
  if (n > 0) std::memcpy(out, src, size_t(n));
}

/// 4-bit GEMV weight prefetch, in row groups ahead. The 4-bit GEMV reads R
/// rows in lockstep; rows of 1-4 KB are too short for the hardware
/// prefetchers to ramp up, so it prefetches the same offset in the rows one
/// group ahead (measured +45 % INT4, +15 % NF4 on 2048 x 2048 from memory).
/// The 8-bit GEMVs instead walk 4 long sequential streams per thread
/// (rowwise8_avx2.hpp, gemm_int8_avx2.cpp) and need no software prefetch.
inline constexpr int64_t kPrefetchGroups = 1;

/// Prefetches the line `bytes` after p into L1. The address is formed as an
/// integer: it may lie past the weight (a prefetch never faults).
inline void prefetch_ahead(const void* p, int64_t bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + uintptr_t(bytes)), _MM_HINT_T0);
}

/// Threads for a GEMV over an [N, K] weight: one when the matrix is too small
/// for a parallel region to pay off (the result does not depend on it).
inline int gemv_threads(int64_t N, int64_t K, int threads) { return N * K < (int64_t(1) << 16) ? 1 : threads; }

/// The decode GEMVs' row schedule over N output rows: each of the
/// gemv_threads(N, K, threads) OpenMP threads owns a contiguous range of rows
/// and cuts it into 4 equal quarters walked in lockstep, row after row — 4 long
/// sequential weight streams per core that the hardware prefetchers follow (4
/// ADJACENT rows in lockstep are 1-8 KB streams, too short for them). four(rows)
/// gets the 4 row indices (int64_t[4]) of one step; one(n) each row left over.
template <class Four, class One>
void for_each_row_quartered(int64_t N, int64_t K, int threads, const Four& four, const One& one) {
  const int nt = gemv_threads(N, K, threads);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t lo = N * t / T, hi = N * (t + 1) / T;
    const int64_t q = (hi - lo) / 4;
    for (int64_t i = 0; i < q; ++i) {
      const int64_t rows[4] = {lo + i, lo + q + i, lo + 2 * q + i, lo + 3 * q + i};
      four(rows);
    }
    for (int64_t n = lo + 4 * q; n < hi; ++n) one(n);
  }
}

// ---- F32 panel GEMM (weight-only formats) -----------------------------------

/// K per decoded sub-panel: 16 rows × 256 floats = 16 KB, L1-resident.
inline constexpr int64_t kSub = 256;
/// Block scales per sub-panel row (blocks are ≥ 32 elements).
inline constexpr int64_t kSubBlocks = kSub / 32;

/// acc(i, r) (8 lanes at accv + i·acc_ld + r·8) continues the canonical chunk
/// accumulator of token i, row r over n8 more vectors: x rows of stride ldx,
/// decoded weight rows of stride ldw (same k-order). Blocked: blocks of blk8
/// vectors from the start (the last may be shorter), scale of block j of row
/// r at sc[r · lds + j]. first: start from zero instead of accv.
template <int MT, int NT, bool Blocked>
inline void tile_acc(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t n8, int64_t blk8,
                     const float* sc, int64_t lds, float* accv, int64_t acc_ld, bool first) {
  if constexpr (!Blocked) {
    (void)blk8;
    (void)sc;
    (void)lds;
    __m256 acc[MT][NT];
    for (int i = 0; i < MT; ++i)
      for (int r = 0; r < NT; ++r) acc[i][r] = first ? _mm256_setzero_ps() : _mm256_load_ps(accv + i * acc_ld + r * 8);
    for (int64_t v = 0; v < n8; ++v) {
      __m256 wv[NT];
      for (int r = 0; r < NT; ++r) wv[r] = _mm256_load_ps(w + r * ldw + 8 * v);
      for (int i = 0; i < MT; ++i) {
        const __m256 xv = _mm256_load_ps(x + i * ldx + 8 * v);
        for (int r = 0; r < NT; ++r) acc[i][r] = _mm256_fmadd_ps(wv[r], xv, acc[i][r]);
      }
    }
    for (int i = 0; i < MT; ++i)
      for (int r = 0; r < NT; ++r) _mm256_store_ps(accv + i * acc_ld + r * 8, acc[i][r]);
  } else {
    // Block sums in registers; the chunk accumulators are updated in memory
    // once per block (acc = fma(bs, scale, acc), as in the GEMV).
    for (int64_t j = 0, v0 = 0; v0 < n8; ++j, v0 += blk8) {
      const int64_t v1 = std::min(n8, v0 + blk8);
      __m256 bs[MT][NT];
      for (int i = 0; i < MT; ++i)
        for (int r = 0; r < NT; ++r) bs[i][r] = _mm256_setzero_ps();
      for (int64_t v = v0; v < v1; ++v) {
        __m256 wv[NT];
        for (int r = 0; r < NT; ++r) wv[r] = _mm256_load_ps(w + r * ldw + 8 * v);
        for (int i = 0; i < MT; ++i) {
          const __m256 xv = _mm256_load_ps(x + i * ldx + 8 * v);
          for (int r = 0; r < NT; ++r) bs[i][r] = _mm256_fmadd_ps(wv[r], xv, bs[i][r]);
        }
      }
      const bool fresh = first && j == 0;
      for (int r = 0; r < NT; ++r) {
        const __m256 s = _mm256_set1_ps(sc[r * lds + j]);
        for (int i = 0; i < MT; ++i) {
          float* a = accv + i * acc_ld + r * 8;
          _mm256_store_ps(a, _mm256_fmadd_ps(bs[i][r], s, fresh ? _mm256_setzero_ps() : _mm256_load_ps(a)));
        }
      }
    }
  }
}

/// Canonical-order GEMM for weight-only formats. x: F32 [M, Kp] already in the
/// decoded k-order and zero-padded to Kp (a multiple of 32).
/// `decode_row(n, k0, kc, out, scales)` writes elements [k0, k0 + kc) of row n
/// of the decoded weight to out[0, kc) and, when Blocked, the scales of the
/// blocks of that range to scales[0, ...). y[m, n] = finish(m, n, total).
/// Threads own panels of PR = NT·⌊16/NT⌋ rows (panel-major: each weight is
/// decoded once, a panel's sums stay in per-thread buffers, the activations
/// stream through with 1/PR loads per multiply-add). A panel is decoded kSub
/// elements at a time and multiplied by tiles of MT tokens × NT rows whose
/// accumulators wait in a buffer between sub-panels (stores and loads are
/// exact: the order is the canonical one).
template <int MT, int NT, bool Blocked, class DecodeRow, class Finish>
void panel_gemm(int64_t N, int64_t M, int64_t Kp, const float* x, int64_t blk, float* y, int threads,
                const DecodeRow& decode_row, const Finish& finish) {
  constexpr int64_t PR = NT * (16 / NT);
  const int64_t panels = (N + PR - 1) / PR;
  const int64_t blk8 = Blocked ? blk / 8 : 0;
#pragma omp parallel num_threads(threads)
  {
    float* wbuf = thread_scratch_as<float>(kScratchWorker0, size_t(PR * kSub));     // decoded sub-panel [PR][kSub]
    float* accbuf = thread_scratch_as<float>(kScratchWorker1, size_t(M * PR * 8));  // chunk accumulators [M][PR][8]
    float* totals = thread_scratch_as<float>(kScratchWorker2, size_t(M * PR));      // canonical totals [M][PR]
    alignas(64) float sbuf[PR * kSubBlocks];
#pragma omp for schedule(static)
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t n0 = p * PR;
      const int64_t nt = std::min(PR, N - n0);
      for (int64_t i = 0; i < M * PR; ++i) totals[i] = 0.0f;
      for (int64_t k0 = 0; k0 < Kp; k0 += kChunk) {
        const int64_t ke = std::min(Kp, k0 + kChunk);
        for (int64_t s0 = k0; s0 < ke; s0 += kSub) {
          const int64_t sc = std::min(kSub, ke - s0);
          for (int64_t r = 0; r < PR; ++r) {
            if (r < nt) {
              decode_row(n0 + r, s0, sc, wbuf + r * kSub, sbuf + r * kSubBlocks);
            } else {
              std::memset(wbuf + r * kSub, 0, size_t(sc) * sizeof(float));
              for (int64_t j = 0; j < kSubBlocks; ++j) sbuf[r * kSubBlocks + j] = 0.0f;
            }
          }
          const bool first = s0 == k0;
          auto run = [&]<int T>(int64_t m0) {
            for (int64_t j = 0; j < PR; j += NT)
              tile_acc<T, NT, Blocked>(x + m0 * Kp + s0, Kp, wbuf + j * kSub, kSub, sc / 8, blk8,
                                       sbuf + j * kSubBlocks, kSubBlocks, accbuf + (m0 * PR + j) * 8, PR * 8, first);
          };
          int64_t m0 = 0;
          for (; m0 + MT <= M; m0 += MT) run.template operator()<MT>(m0);
          const int64_t rest = M - m0;
          if constexpr (MT > 3) {
            if (rest == 3) run.template operator()<3>(m0);
          }
          if constexpr (MT > 2) {
            if (rest == 2) run.template operator()<2>(m0);
          }
          if (rest == 1) run.template operator()<1>(m0);
        }
        for (int64_t i = 0; i < M * PR; ++i) totals[i] += hsum8(_mm256_load_ps(accbuf + i * 8));
      }
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < nt; ++r) y[m * N + n0 + r] = finish(m, n0 + r, totals[m * PR + r]);
    }
  }
}

}  // namespace kq::cpu::avx2
