// AVX-512 4-bit Linear kernels (NF4, FP4 E2M1, bitsandbytes FP4, INT4
// symmetric / asymmetric; W4A16 with F32 compute): GEMV (decode) and GEMM (prefill).
//
// A 16-entry codebook fits one zmm of F32 values, and `vpermps` looks up 16
// codes at once using the low 4 bits of each INT32 index lane. So the codes
// need no unpacking: 64 bytes of a row (128 codes, one "unit") are loaded as
// 16 INT32 lanes, and shifting them right by 4·i puts code 8·j + i of the unit
// into the low bits of lane j. Vector i of a unit is thus
//   lane j = V[code of element 128·u + 8·j + i],   i = 0..7, j = 0..15,
// one `vpermps` and one shift (none for i = 0); x is permuted the same way
// once per call (xp), so the dot product is unchanged. Lane j's 8 elements lie
// in one block (blocks are >= 32 and multiples of 8), so the block scale
// multiplies a lane's unit sum once (blocks of 32 and 64 give the lanes of a
// unit 4 or 2 different scales). INT4 asymmetric looks up c and subtracts
// z·Σx per lane (Σx of the lane's 8 activations, computed with xp).
//
// Canonical F32 order of this table, shared by GEMV and GEMM (decode =
// prefill bits below avx2::kQ4SgemmMinM tokens, from where the table runs the
// AVX2 file's dequantized panels through oneDNN sgemm; see dispatch.hpp): K padded to whole units (zero codes and
// zero activations past K), cut into chunks of kChunk elements; for each
// output (m, n), with 16-lane vectors:
//   tot = 0
//   for each chunk:  acc = 0
//     for each unit: p = 0; p = fma(V vector i, xp vector i, p) for i = 0..7
//                    (INT4 asym: p = p − z·xsum);  acc = fma(p, s, acc)
//     tot = tot + acc
//   y = hsum16(tot) + bias[n]
// It differs from the AVX2 table's order and from the reference's rounding of
// V·s (the scale multiplies sums), within tests/common/tolerances.hpp
// forward_tolerance() of the reference.
//
// GEMM: each thread takes groups of kGroupRows rows; per chunk it decodes the
// group's block scales once, then passes tiles of 4 tokens (their xp chunk,
// 16 KB, stays in L1) over the group's rows two at a time.
//
// This file deliberately uses no shared inline helpers and no std templates
// with out-of-line code (see scratch.hpp): everything here is compiled with
// AVX-512 flags and must not leak into code that runs on other CPUs.
#include <immintrin.h>

#include <cstring>

#include "formats/packed4.hpp"
#include "kernels/cpu/quant_kernels_avx512.hpp"
#include "kernels/cpu/scratch.hpp"

namespace kq::cpu::avx512 {
namespace {

using formats::WeightFormat;

constexpr int64_t kUnit = 128;          // codes per unit (64 bytes)
constexpr int64_t kChunk = 1024;        // elements per chunk of the canonical order (8 units)
constexpr int64_t kChunkUnits = kChunk / kUnit;
constexpr int64_t kMaxChunkBlocks = kChunk / 32;  // blocks per chunk at the smallest block size
constexpr int kGemvRows = 4;            // rows per GEMV pass (sharing each xp load)
constexpr int kGroupRows = 16;          // GEMM rows per L1 group
constexpr int kTileRows = 2;            // GEMM register tile: rows ...
constexpr int kTileTokens = 4;          // ... x tokens

int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// The unmasked forms of these intrinsics start from _mm512_undefined_*(),
// which trips GCC 12's -Wmaybe-uninitialized; the all-ones zero-masked forms
// are the same instructions.
inline __m512 permute16(__m512i idx, __m512 table) { return _mm512_maskz_permutexvar_ps(0xFFFF, idx, table); }
inline __m512i shift_right(__m512i v, unsigned bits) { return _mm512_maskz_srli_epi32(0xFFFF, v, bits); }
inline __m512 s8_to_ps(__m128i v) {
  return _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_maskz_cvtepi8_epi32(0xFFFF, v));
}
inline __m512 u4_to_ps(__m128i v) {  // the low nibble of each byte
  const __m512i u = _mm512_and_si512(_mm512_maskz_cvtepu8_epi32(0xFFFF, v), _mm512_set1_epi32(15));
  return _mm512_maskz_cvtepi32_ps(0xFFFF, u);
}

/// Σ of the 16 lanes in a fixed order (pairwise halves). Through memory:
/// GCC 12's 512 -> 256-bit extracts trip -Wmaybe-uninitialized inside its own headers.
float hsum16(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  for (int h = 8; h > 0; h /= 2)
    for (int j = 0; j < h; ++j) t[j] += t[j + h];
  return t[0];
}

/// The format's codebook as 16 F32 lanes (formats::q4_codebook for NF4, FP4
/// and FP4_BNB, an out-of-line function; INT4: c − 8 symmetric; c asymmetric,
/// whose zero point is subtracted from the sums).
__m512 codebook(WeightFormat f) {
  alignas(64) float v[16];
  if (const float* book = formats::q4_codebook(f))
    std::memcpy(v, book, sizeof(v));
  else
    for (int c = 0; c < 16; ++c) v[c] = float(f == WeightFormat::INT4_SYM ? c - 8 : c);
  return _mm512_load_ps(v);
}

/// Scale of flat block i (= q4_block_scale, written here so that this
/// AVX-512-compiled file instantiates no inline function shared with other files).
float block_scale(const Q4WeightView& w, int64_t i) {
  if (!w.dq_codes) return w.scales[i];
  return __builtin_fmaf(float(w.dq_codes[i]), w.dq_scales[i / formats::kDqGroup], w.dq_mean);  // dq_decode
}

/// Lane j's block within a unit, for blocks of 32: j / 4 (4 blocks per unit).
__m512i quarter_lanes() { return _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3); }

/// Block scales (and zero points, as F32) of row n for the blocks of chunk
/// [c0, c0 + kChunk): s[b − b0], z[b − b0] with b0 the chunk's first block.
/// Blocks past the row's last repeat it (their activations are zero). s and z
/// hold kMaxChunkBlocks + 16 floats (the unit loads read 16).
template <bool Asym>
inline void chunk_scales(const Q4WeightView& w, int64_t n, int64_t c0, float* s, float* z) {
  const int64_t b0 = c0 / w.block;
  const int64_t nbc = w.block >= kChunk ? 1 : kChunk / w.block;
  if (b0 + nbc <= w.nb) {  // a whole chunk of blocks: 16 at a time, the same values as block_scale
    const int64_t i0 = n * w.nb + b0;
    for (int64_t q = 0; q < nbc; q += 16) {
      const int64_t lanes = min64(16, nbc - q);
      const __mmask16 m = __mmask16((1u << lanes) - 1u);
      const int64_t i = i0 + q;
      __m512 v;
      if (w.dq_codes) {
        const __m512 codes = s8_to_ps(_mm_maskz_loadu_epi8(m, w.dq_codes + i));
        // Lanes from the next group of kDqGroup blocks on take its scale (a chunk crosses at most one boundary).
        const int64_t g = i / formats::kDqGroup;
        const int64_t next = (g + 1) * formats::kDqGroup - i;  // first lane of group g + 1
        __m512 gs = _mm512_set1_ps(w.dq_scales[g]);
        if (next < lanes)
          gs = _mm512_mask_blend_ps(__mmask16(m & ~((1u << next) - 1u)), gs, _mm512_set1_ps(w.dq_scales[g + 1]));
        v = _mm512_fmadd_ps(codes, gs, _mm512_set1_ps(w.dq_mean));  // dq_decode, one rounding
      } else {
        v = _mm512_maskz_loadu_ps(m, w.scales + i);
      }
      _mm512_mask_storeu_ps(s + q, m, v);
      if constexpr (Asym) {
        _mm512_mask_storeu_ps(z + q, m, u4_to_ps(_mm_maskz_loadu_epi8(m, w.zeros + i)));
      }
    }
    return;
  }
  for (int64_t q = 0; q < nbc; ++q) {
    const int64_t i = n * w.nb + min64(b0 + q, w.nb - 1);
    s[q] = block_scale(w, i);
    if constexpr (Asym) z[q] = float(w.zeros[i] & 15);
  }
}

/// Per-lane vector of the values v[.] of unit u (u counted within its chunk)'s
/// blocks: lane j takes the block of element 128·u + 8·j. PER = blocks per
/// unit (1 for blocks >= 128, 2 for 64, 4 for 32); `first` = v's index of the
/// unit's first block.
template <int PER>
inline __m512 unit_lanes(const float* v, int64_t first) {
  if constexpr (PER == 1) {
    return _mm512_set1_ps(v[first]);
  } else if constexpr (PER == 2) {
    return _mm512_mask_blend_ps(__mmask16(0xFF00), _mm512_set1_ps(v[first]), _mm512_set1_ps(v[first + 1]));
  } else {
    return permute16(quarter_lanes(), _mm512_loadu_ps(v + first));
  }
}

/// Index in the chunk's scale arrays of unit uc's first block.
inline int64_t unit_first_block(const Q4WeightView& w, int64_t c0, int64_t uc) {
  const int64_t e = c0 + uc * kUnit;  // the unit's first element
  return e / w.block - c0 / w.block;
}

/// The 16 INT32 lanes of unit u of row n's codes (zero-padded past the row).
inline __m512i unit_codes(const Q4WeightView& w, int64_t n, int64_t u) {
  const uint8_t* p = w.codes + n * w.row_bytes + u * (kUnit / 2);
  const int64_t avail = w.row_bytes - u * (kUnit / 2);
  if (avail >= kUnit / 2) return _mm512_loadu_si512(p);
  const __mmask64 m = (__mmask64(1) << avail) - 1;  // 0 < avail < 64
  return _mm512_maskz_loadu_epi8(m, p);
}

/// x[0, K) → xp[0, kp) in decoded order: xp[128u + 16i + j] = x[128u + 8j + i],
/// 0 past K; for INT4 asymmetric also xs[16u + j] = Σ_i xp[128u + 16i + j] (i in order).
void permute_x(const float* x, int64_t K, int64_t kp, float* xp, float* xs) {
  for (int64_t u = 0; u < kp; u += kUnit) {
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 16; ++j) {
        const int64_t k = u + 8 * j + i;
        xp[u + 16 * i + j] = k < K ? x[k] : 0.0f;
      }
    if (xs) {
      __m512 s = _mm512_loadu_ps(xp + u);
      for (int i = 1; i < 8; ++i) s = _mm512_add_ps(s, _mm512_loadu_ps(xp + u + 16 * i));
      _mm512_storeu_ps(xs + u / 8, s);
    }
  }
}

inline float finish(const Q4WeightView& w, int64_t n, __m512 tot) {
  return hsum16(tot) + (w.bias ? w.bias[n] : 0.0f);
}

// ---- GEMV ---------------------------------------------------------------------

/// y of R adjacent rows from n0 against xp (xs: INT4 asymmetric Σx), in the canonical order.
template <bool Asym, int PER, int R>
inline void gemv_rows(const Q4WeightView& w, __m512 table, int64_t kp, int64_t n0, const float* xp,
                      const float* xs, float* y) {
  alignas(64) float s[R][kMaxChunkBlocks + 16], z[R][kMaxChunkBlocks + 16];
  __m512 tot[R];
  for (int r = 0; r < R; ++r) tot[r] = _mm512_setzero_ps();
  const int64_t ahead = R * w.row_bytes;  // prefetch one row group ahead
  for (int64_t c0 = 0; c0 < kp; c0 += kChunk) {
    for (int r = 0; r < R; ++r) chunk_scales<Asym>(w, n0 + r, c0, s[r], z[r]);
    const int64_t units = min64(kChunkUnits, (kp - c0) / kUnit);
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t uc = 0; uc < units; ++uc) {
      const int64_t u = c0 / kUnit + uc;
      const int64_t fb = unit_first_block(w, c0, uc);
      __m512i raw[R];
      for (int r = 0; r < R; ++r) {
        raw[r] = unit_codes(w, n0 + r, u);
        _mm_prefetch(reinterpret_cast<const char*>(
                         reinterpret_cast<uintptr_t>(w.codes + (n0 + r) * w.row_bytes + u * (kUnit / 2)) +
                         uintptr_t(ahead)),
                     _MM_HINT_T0);
      }
      __m512 p[R];
      const float* x = xp + u * kUnit;
      for (int r = 0; r < R; ++r) p[r] = _mm512_mul_ps(permute16(raw[r], table), _mm512_loadu_ps(x));
#pragma GCC unroll 8
      for (int i = 1; i < 8; ++i) {
        const __m512 xv = _mm512_loadu_ps(x + 16 * i);
        for (int r = 0; r < R; ++r)
          p[r] = _mm512_fmadd_ps(permute16(shift_right(raw[r], unsigned(4 * i)), table), xv, p[r]);
      }
      for (int r = 0; r < R; ++r) {
        if constexpr (Asym) p[r] = _mm512_fnmadd_ps(unit_lanes<PER>(z[r], fb), _mm512_loadu_ps(xs + u * 16), p[r]);
        acc[r] = _mm512_fmadd_ps(p[r], unit_lanes<PER>(s[r], fb), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) tot[r] = _mm512_add_ps(tot[r], acc[r]);
  }
  for (int r = 0; r < R; ++r) y[r] = finish(w, n0 + r, tot[r]);
}

template <bool Asym, int PER>
void gemv(const Q4WeightView& w, const float* x, float* y, int threads) {
  const int64_t kp = (w.K + kUnit - 1) / kUnit * kUnit;
  float* xp = thread_scratch_as<float>(kScratchCall0, size_t(kp));
  float* xs = Asym ? thread_scratch_as<float>(kScratchCall1, size_t(kp / 8)) : nullptr;
  permute_x(x, w.K, kp, xp, xs);
  const __m512 table = codebook(w.format);
  const int64_t groups = w.N / kGemvRows;
  const int nt = w.N * w.K < (int64_t(1) << 16) ? 1 : threads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t g = 0; g < groups; ++g)
    gemv_rows<Asym, PER, kGemvRows>(w, table, kp, g * kGemvRows, xp, xs, y + g * kGemvRows);
  for (int64_t n = groups * kGemvRows; n < w.N; ++n) gemv_rows<Asym, PER, 1>(w, table, kp, n, xp, xs, y + n);
}

// ---- GEMM ---------------------------------------------------------------------

/// tot[r][t] += the chunk [c0, c0 + units·128) of rows n0 + r (r < RT; scales
/// s[r], zero points z[r] of the chunk) for tokens m0 + t (t < T).
template <bool Asym, int PER, int RT, int T>
inline void gemm_tile(const Q4WeightView& w, __m512 table, int64_t kp, int64_t n0, int64_t m0, int64_t c0,
                      int64_t units, const float* xp, const float* xs, const float (*s)[kMaxChunkBlocks + 16],
                      const float (*z)[kMaxChunkBlocks + 16], __m512* tot, int64_t ldt) {
  __m512 acc[RT][T];
  for (int r = 0; r < RT; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t uc = 0; uc < units; ++uc) {
    const int64_t u = c0 / kUnit + uc;
    const int64_t fb = unit_first_block(w, c0, uc);
    __m512i raw[RT];
    for (int r = 0; r < RT; ++r) raw[r] = unit_codes(w, n0 + r, u);
    __m512 p[RT][T];
    {
      __m512 v[RT];
      for (int r = 0; r < RT; ++r) v[r] = permute16(raw[r], table);
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(xp + (m0 + t) * kp + u * kUnit);
        for (int r = 0; r < RT; ++r) p[r][t] = _mm512_mul_ps(v[r], xv);
      }
    }
#pragma GCC unroll 8
    for (int i = 1; i < 8; ++i) {
      __m512 v[RT];
      for (int r = 0; r < RT; ++r) v[r] = permute16(shift_right(raw[r], unsigned(4 * i)), table);
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(xp + (m0 + t) * kp + u * kUnit + 16 * i);
        for (int r = 0; r < RT; ++r) p[r][t] = _mm512_fmadd_ps(v[r], xv, p[r][t]);
      }
    }
    for (int r = 0; r < RT; ++r) {
      const __m512 sv = unit_lanes<PER>(s[r], fb);
      const __m512 zv = Asym ? unit_lanes<PER>(z[r], fb) : _mm512_setzero_ps();
      for (int t = 0; t < T; ++t) {
        if constexpr (Asym)
          p[r][t] = _mm512_fnmadd_ps(zv, _mm512_loadu_ps(xs + (m0 + t) * (kp / 8) + u * 16), p[r][t]);
        acc[r][t] = _mm512_fmadd_ps(p[r][t], sv, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < RT; ++r)
    for (int t = 0; t < T; ++t) tot[r * ldt + m0 + t] = _mm512_add_ps(tot[r * ldt + m0 + t], acc[r][t]);
}

/// Every token's chunk for rows n0 .. n0 + rows − 1 (rows <= kGroupRows), in
/// tiles of kTileTokens tokens x kTileRows rows.
template <bool Asym, int PER, int T>
inline void gemm_token_tile(const Q4WeightView& w, __m512 table, int64_t kp, int64_t n0, int rows, int64_t m0,
                            int64_t c0, int64_t units, const float* xp, const float* xs,
                            const float (*s)[kMaxChunkBlocks + 16], const float (*z)[kMaxChunkBlocks + 16],
                            __m512* tot, int64_t M) {
  int r = 0;
  for (; r + kTileRows <= rows; r += kTileRows)
    gemm_tile<Asym, PER, kTileRows, T>(w, table, kp, n0 + r, m0, c0, units, xp, xs, s + r, z + r, tot + r * M, M);
  for (; r < rows; ++r)
    gemm_tile<Asym, PER, 1, T>(w, table, kp, n0 + r, m0, c0, units, xp, xs, s + r, z + r, tot + r * M, M);
}

template <bool Asym, int PER>
void gemm(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads) {
  const int64_t kp = (w.K + kUnit - 1) / kUnit * kUnit;
  float* xp = thread_scratch_as<float>(kScratchCall0, size_t(M * kp));
  float* xs = Asym ? thread_scratch_as<float>(kScratchCall1, size_t(M * (kp / 8))) : nullptr;
  const __m512 table = codebook(w.format);
  const int64_t groups = (w.N + kGroupRows - 1) / kGroupRows;
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t m = 0; m < M; ++m) permute_x(x + m * w.K, w.K, kp, xp + m * kp, xs ? xs + m * (kp / 8) : nullptr);
    // tot[r·M + m]: the running 16-lane total of row n0 + r, token m.
    __m512* tot = thread_scratch_as<__m512>(kScratchWorker0, size_t(kGroupRows * M));
    alignas(64) float s[kGroupRows][kMaxChunkBlocks + 16], z[kGroupRows][kMaxChunkBlocks + 16];
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t n0 = g * kGroupRows;
      const int rows = int(min64(kGroupRows, w.N - n0));
      for (int64_t i = 0; i < rows * M; ++i) tot[i] = _mm512_setzero_ps();
      for (int64_t c0 = 0; c0 < kp; c0 += kChunk) {
        for (int r = 0; r < rows; ++r) chunk_scales<Asym>(w, n0 + r, c0, s[r], z[r]);
        const int64_t units = min64(kChunkUnits, (kp - c0) / kUnit);
        int64_t m0 = 0;
        for (; m0 + kTileTokens <= M; m0 += kTileTokens)
          gemm_token_tile<Asym, PER, kTileTokens>(w, table, kp, n0, rows, m0, c0, units, xp, xs, s, z, tot, M);
        switch (M - m0) {
          case 3: gemm_token_tile<Asym, PER, 3>(w, table, kp, n0, rows, m0, c0, units, xp, xs, s, z, tot, M); break;
          case 2: gemm_token_tile<Asym, PER, 2>(w, table, kp, n0, rows, m0, c0, units, xp, xs, s, z, tot, M); break;
          case 1: gemm_token_tile<Asym, PER, 1>(w, table, kp, n0, rows, m0, c0, units, xp, xs, s, z, tot, M); break;
          default: break;
        }
      }
      for (int r = 0; r < rows; ++r)
        for (int64_t m = 0; m < M; ++m) y[m * w.N + n0 + r] = finish(w, n0 + r, tot[r * M + m]);
    }
  }
}

template <bool Asym>
void run(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads) {
  // Blocks per unit: validated block sizes are powers of two in [32, 256].
  if (M == 1) {
    if (w.block >= kUnit) return gemv<Asym, 1>(w, x, y, threads);
    if (w.block == 64) return gemv<Asym, 2>(w, x, y, threads);
    return gemv<Asym, 4>(w, x, y, threads);
  }
  if (w.block >= kUnit) return gemm<Asym, 1>(w, x, M, y, threads);
  if (w.block == 64) return gemm<Asym, 2>(w, x, M, y, threads);
  return gemm<Asym, 4>(w, x, M, y, threads);
}

}  // namespace

bool gemm_f32q4_f32_blockwise(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads) {
  if (w.bf16) return false;
  switch (w.format) {
    case WeightFormat::NF4:
    case WeightFormat::FP4:
    case WeightFormat::FP4_BNB:
    case WeightFormat::INT4_SYM: run<false>(w, x, M, y, threads); return true;
    case WeightFormat::INT4_ASYM: run<true>(w, x, M, y, threads); return true;
    default: return false;
  }
}

}  // namespace kq::cpu::avx512
