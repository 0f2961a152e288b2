// AVX2 4-bit Linear kernels (NF4, FP4 E2M1, bitsandbytes FP4, INT4 symmetric /
// asymmetric; W4A16 with F32 compute): GEMV (decode) and GEMM (prefill).
//
// Decoding without a dequantized copy of the weight: each 4-bit code indexes
// the format's 16-entry codebook V (formats::q4_codebook: NF4 kNF4, FP4 kE2M1,
// FP4_BNB kFP4Bnb; INT4: c − 8, or c − zero for the block's zero point) with
// `vpshufb`, one byte plane of the F32 bit patterns of V at a time, and the
// planes are interleaved back into F32 lanes with unpack instructions. NF4 and
// bitsandbytes' FP4 (1/3, 1/6, ... are not bfloat16 values) need all 4 byte
// planes; the other codebooks are exact in bfloat16 (low 16 bits zero), so 2
// planes suffice.
// The block scale multiplies the block's partial sum once (Σ_b s_b·Σ x·V),
// which reorders the reference's roundings of x·(V·s) within F32 tolerance.
//
// One decode unit is 64 codes (32 bytes: low nibbles then high nibbles) for
// blocks ≥ 64, or 32 codes (16 bytes) for blocks of 32. The unpack steps
// permute k inside a unit; x is permuted the same way once per call (xp), so
// the dot product is unchanged. The compute dtype BF16 (weights and
// activations rounded to bfloat16) runs the reference kernel.
//
// Prefill from kQ4SgemmMinM tokens on (both compute dtypes): panels of rows
// are dequantized to F32 in k order, with the reference's values (the block's
// 16-entry table V·s, rounded to bfloat16 for BF16, looked up with two
// `vpermps` and a blend per 8 codes), and multiplied with oneDNN's sgemm
// (dequant_gemm.hpp): 16 codes cost ~20 µops once per call, against 2·M flops
// each in the GEMM.
#include <immintrin.h>

#include <array>
#include <bit>
#include <cmath>

#include "formats/packed4.hpp"
#include "kernels/cpu/dequant_gemm.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"
#include "kernels/cpu/simd_avx2.hpp"

namespace kq::cpu::avx2 {
namespace {

using formats::WeightFormat;

/// Byte planes of a 16-value codebook, each 16 bytes repeated in both 128-bit
/// lanes: plane[j][c] = byte j of the F32 bits of V[c].
struct Planes {
  alignas(32) uint8_t plane[4][32];
};

Planes make_planes(const float* v) {
  Planes p{};
  for (int c = 0; c < 16; ++c) {
    const uint32_t u = std::bit_cast<uint32_t>(v[c]);
    for (int j = 0; j < 4; ++j) p.plane[j][c] = p.plane[j][c + 16] = uint8_t(u >> (8 * j));
  }
  return p;
}

struct Codebooks {
  Planes nf4, fp4, fp4_bnb, int4_sym;
  std::array<Planes, 16> int4_asym;  // by zero point
  Codebooks() {
    nf4 = make_planes(formats::q4_codebook(WeightFormat::NF4));
    fp4 = make_planes(formats::q4_codebook(WeightFormat::FP4));
    fp4_bnb = make_planes(formats::q4_codebook(WeightFormat::FP4_BNB));
    float v[16];
    for (int c = 0; c < 16; ++c) v[c] = float(c - 8);
    int4_sym = make_planes(v);
    for (int z = 0; z < 16; ++z) {
      for (int c = 0; c < 16; ++c) v[c] = float(c - z);
      int4_asym[size_t(z)] = make_planes(v);
    }
  }
};

const Codebooks& codebooks() {
  static const Codebooks cb;
  return cb;
}

/// The planes a kernel with NP planes reads: NP = 4 → planes 0..3, NP = 2 → planes 2, 3.
template <int NP>
inline void load_planes(const Planes& p, __m256i t[NP]) {
  for (int j = 0; j < NP; ++j) t[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.plane[4 - NP + j]));
}

/// 32 codes (one per byte, 0..15) → 4 F32 vectors. Vector f, lane l, dword d
/// holds the code in byte 16·l + 4·f + d.
template <int NP>
inline void lookup32(__m256i c, const __m256i t[NP], __m256 f[4]) {
  if constexpr (NP == 4) {
    const __m256i b0 = _mm256_shuffle_epi8(t[0], c), b1 = _mm256_shuffle_epi8(t[1], c);
    const __m256i b2 = _mm256_shuffle_epi8(t[2], c), b3 = _mm256_shuffle_epi8(t[3], c);
    const __m256i lo01 = _mm256_unpacklo_epi8(b0, b1), hi01 = _mm256_unpackhi_epi8(b0, b1);
    const __m256i lo23 = _mm256_unpacklo_epi8(b2, b3), hi23 = _mm256_unpackhi_epi8(b2, b3);
    f[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(lo01, lo23));
    f[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(lo01, lo23));
    f[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(hi01, hi23));
    f[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(hi01, hi23));
  } else {
    const __m256i z = _mm256_setzero_si256();
    const __m256i b2 = _mm256_shuffle_epi8(t[0], c), b3 = _mm256_shuffle_epi8(t[1], c);
    const __m256i lo = _mm256_unpacklo_epi8(b2, b3), hi = _mm256_unpackhi_epi8(b2, b3);
    f[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, lo));
    f[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, lo));
    f[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, hi));
    f[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, hi));
  }
}

/// Decodes one unit of U codes at p (U/2 bytes) into U/8 vectors.
/// U = 64: f[0..3] from the low nibbles (even k), f[4..7] from the high nibbles.
/// U = 32: lane 0 of the code vector holds the low nibbles, lane 1 the high ones.
template <int NP, int U>
inline void decode_unit(const uint8_t* p, const __m256i t[NP], __m256 f[U / 8]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  if constexpr (U == 64) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    lookup32<NP>(_mm256_and_si256(v, m4), t, f);
    lookup32<NP>(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), t, f + 4);
  } else {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i c = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
    lookup32<NP>(_mm256_and_si256(c, m4), t, f);
  }
}

/// Offset within a unit of the element that decoded position j holds (see decode_unit).
template <int U>
constexpr std::array<int, U> make_unit_order() {
  std::array<int, U> o{};
  for (int j = 0; j < U; ++j) {
    const int f = (j % 32) / 8, l = (j % 8) / 4, d = j % 4;
    o[size_t(j)] = U == 64 ? 2 * (16 * l + 4 * f + d) + j / 32 : 2 * (4 * f + d) + l;
  }
  return o;
}

/// x[0, K) → xp[0, kp) in decoded order, zero where the element is past K.
template <int U>
void permute_x(const float* x, int64_t K, int64_t kp, float* xp) {
  static constexpr std::array<int, U> order = make_unit_order<U>();
  for (int64_t u = 0; u < kp; u += U)
    for (int j = 0; j < U; ++j) {
      const int64_t k = u + order[size_t(j)];
      xp[u + j] = k < K ? x[k] : 0.0f;
    }
}

/// Layout facts of one call.
struct Shape {
  int64_t kp;  ///< padded K: (nb − 1)·block + last block rounded up to U
};

template <int U>
Shape shape_of(const Q4WeightView& w) {
  const int64_t last = w.K - (w.nb - 1) * w.block;
  return {(w.nb - 1) * w.block + (last + U - 1) / U * U};
}

/// Scale of flat block i (= q4_block_scale, written here so that this
/// AVX2-compiled file instantiates no inline function shared with other files).
inline float block_scale(const Q4WeightView& w, int64_t i) {
  return w.dq_codes ? std::fma(float(w.dq_codes[i]), w.dq_scales[i / formats::kDqGroup], w.dq_mean) : w.scales[i];
}

/// Units that lie entirely inside a row (the rest of kp is the padded tail unit).
template <int U>
inline int64_t full_units_end(const Q4WeightView& w) {
  return w.row_bytes / (U / 2) * U;
}

/// Pointer to the U/2 code bytes of unit u0 of row n, or to a zero-padded copy
/// in buf when the unit runs past the row.
template <int U>
inline const uint8_t* unit_codes(const Q4WeightView& w, int64_t n, int64_t u0, uint8_t buf[32]) {
  const uint8_t* p = w.codes + n * w.row_bytes + u0 / 2;
  const int64_t avail = w.row_bytes - u0 / 2;
  if (avail >= U / 2) return p;
  copy_tail32(p, avail, buf);
  return buf;
}

template <bool Asym>
inline const Planes& block_planes(const Q4WeightView& w, const Planes& fixed, int64_t i) {
  if constexpr (Asym) return codebooks().int4_asym[w.zeros[i] & 15];
  return fixed;
}

/// bs += Σ decoded(unit at p) · xp[0, U) for one row.
template <int NP, int U>
inline __m256 unit_dot(const uint8_t* p, const __m256i t[NP], const float* xp, __m256 bs) {
  __m256 f[U / 8];
  decode_unit<NP, U>(p, t, f);
  for (int j = 0; j < U / 8; ++j) bs = _mm256_fmadd_ps(f[j], _mm256_loadu_ps(xp + 8 * j), bs);
  return bs;
}

/// bs[r] += the units of block b (UPB units from element b·block) of each row.
/// Full blocks read the codes in place; the last block of a row may end in a
/// unit that runs past the row, read through a zero-padded copy.
template <int NP, int U, bool Asym, int R, int UPB, bool Tail>
inline void block_dot(const Q4WeightView& w, const uint8_t* const* rows, const __m256i (*t)[NP], int64_t n0, int64_t b,
                      int64_t kp, const float* xp, __m256* bs) {
  for (int u = 0; u < UPB; ++u) {
    const int64_t u0 = b * w.block + u * U;
    if (Tail && u0 >= kp) break;
    for (int r = 0; r < R; ++r) {
      alignas(32) uint8_t buf[32];
      const uint8_t* p = Tail ? unit_codes<U>(w, n0 + r, u0, buf) : rows[r] + u0 / 2;
      if (!Tail && ((u0 / 2) & 63) == 0)  // the same offset one row group ahead (simd_avx2.hpp)
        prefetch_ahead(p, kPrefetchGroups * R * w.row_bytes);
      bs[r] = unit_dot<NP, U>(p, t[Asym ? r : 0], xp + u0, bs[r]);
    }
  }
}

/// R rows from n0 against the permuted token xp; totals in the canonical
/// order. UPB = block / U decode units per block.
template <int NP, int U, bool Asym, int R, int UPB>
inline void gemv_rows(const Q4WeightView& w, const Planes& fixed, int64_t kp, int64_t n0, const float* xp,
                      float* totals) {
  const int64_t bfull = full_units_end<U>(w) / w.block;  // blocks whose every unit lies inside the row
  __m256i t[Asym ? R : 1][NP];  // one set of planes, or one per row (zero points differ)
  if constexpr (!Asym) load_planes<NP>(fixed, t[0]);
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) {
    rows[r] = w.codes + (n0 + r) * w.row_bytes;
    totals[r] = 0.0f;
  }
  const int64_t bpc = kChunk / w.block;  // blocks per chunk
  for (int64_t bc = 0; bc < w.nb; bc += bpc) {
    const int64_t be = std::min(w.nb, bc + bpc);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = bc; b < be; ++b) {
      __m256 bs[R];
      for (int r = 0; r < R; ++r) {
        bs[r] = _mm256_setzero_ps();
        if constexpr (Asym) load_planes<NP>(block_planes<Asym>(w, fixed, (n0 + r) * w.nb + b), t[r]);
      }
      if (b < bfull)
        block_dot<NP, U, Asym, R, UPB, false>(w, rows, t, n0, b, kp, xp, bs);
      else
        block_dot<NP, U, Asym, R, UPB, true>(w, rows, t, n0, b, kp, xp, bs);
      for (int r = 0; r < R; ++r)
        acc[r] = _mm256_fmadd_ps(bs[r], _mm256_set1_ps(block_scale(w, (n0 + r) * w.nb + b)), acc[r]);
    }
    for (int r = 0; r < R; ++r) totals[r] += hsum8(acc[r]);
  }
}

/// Rows per GEMV pass: as many as the 16 vector registers hold without spills
/// (planes + one block sum and one accumulator per row + lookup temporaries).
template <int NP, bool Asym>
constexpr int kGemvRows = NP == 4 || Asym ? 2 : 4;

inline float finish(const Q4WeightView& w, int64_t n, float total) { return total + (w.bias ? w.bias[n] : 0.0f); }

template <int NP, int U, bool Asym, int UPB>
void gemv(const Q4WeightView& w, const Planes& fixed, const float* x, float* y, int threads) {
  const Shape s = shape_of<U>(w);
  float* xp = thread_scratch_as<float>(kScratchCall0, size_t(s.kp));
  permute_x<U>(x, w.K, s.kp, xp);
  constexpr int R = kGemvRows<NP, Asym>;
  const int64_t groups = w.N / R;
  const int nt = gemv_threads(w.N, w.K, threads);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t g = 0; g < groups; ++g) {
    float tot[R];
    gemv_rows<NP, U, Asym, R, UPB>(w, fixed, s.kp, g * R, xp, tot);
    for (int r = 0; r < R; ++r) y[g * R + r] = finish(w, g * R + r, tot[r]);
  }
  for (int64_t n = groups * R; n < w.N; ++n) {
    float tot[1];
    gemv_rows<NP, U, Asym, 1, UPB>(w, fixed, s.kp, n, xp, tot);
    y[n] = finish(w, n, tot[0]);
  }
}

template <int NP, int U, bool Asym>
void gemm(const Q4WeightView& w, const Planes& fixed, const float* x, int64_t M, float* y, int threads) {
  const Shape s = shape_of<U>(w);
  const int64_t kp = s.kp;
  float* xp = thread_scratch_as<float>(kScratchCall0, size_t(M * kp));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t m = 0; m < M; ++m) permute_x<U>(x + m * w.K, w.K, kp, xp + m * kp);
  auto decode_row = [&](int64_t n, int64_t k0, int64_t kc, float* out, float* scales) {
    __m256i t[NP];
    if constexpr (!Asym) load_planes<NP>(fixed, t);
    for (int64_t b0 = k0; b0 < k0 + kc; b0 += w.block) {
      const int64_t b = b0 / w.block;
      scales[(b0 - k0) / w.block] = block_scale(w, n * w.nb + b);
      if constexpr (Asym) load_planes<NP>(block_planes<Asym>(w, fixed, n * w.nb + b), t);
      for (int64_t u0 = b0; u0 < std::min(k0 + kc, b0 + w.block); u0 += U) {
        alignas(32) uint8_t buf[32];
        __m256 f[U / 8];
        decode_unit<NP, U>(unit_codes<U>(w, n, u0, buf), t, f);
        for (int j = 0; j < U / 8; ++j) _mm256_store_ps(out + (u0 - k0) + 8 * j, f[j]);
      }
    }
  };
  auto fin = [&](int64_t, int64_t n, float total) { return finish(w, n, total); };
  panel_gemm<4, 3, true>(w.N, M, kp, xp, w.block, y, threads, decode_row, fin);
}

// ---- prefill from kQ4SgemmMinM tokens on: dequantized panels and oneDNN sgemm ----

/// v rounded to bfloat16 and back, lane by lane, as bf16_to_f32(f32_to_bf16(v))
/// (kq/dtype.hpp): round to nearest even; a NaN stays a quiet NaN.
inline __m256 round_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i hi_mask = _mm256_set1_epi32(int(0xFFFF0000u));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rne = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb)), hi_mask);
  const __m256i qnan = _mm256_or_si256(_mm256_and_si256(u, hi_mask), _mm256_set1_epi32(0x00400000));
  const __m256i is_nan =
      _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)), _mm256_set1_epi32(0x7F800000));
  return _mm256_castsi256_ps(_mm256_blendv_epi8(rne, qnan, is_nan));
}

/// The 8 codes in the INT32 lanes of c (0..15) looked up in the 16-entry table lo = T[0, 8), hi = T[8, 16).
inline __m256 lookup8(__m256i c, __m256 lo, __m256 hi) {
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c), _mm256_permutevar8x32_ps(hi, c),
                          _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
}

/// DequantRowsFn of the prefill path: rows [n0, n1) of the Q4WeightView at ctx,
/// in k order, with exactly q4_decode_block_ref's values: T[c] = V[c]·s (one
/// F32 rounding, s the block scale, V the codebook or c − zero point), rounded
/// to bfloat16 for the compute dtype BF16.
void dequant_rows(const void* ctx, int64_t n0, int64_t n1, float* out) {
  const Q4WeightView& w = *static_cast<const Q4WeightView*>(ctx);
  const bool asym = w.format == WeightFormat::INT4_ASYM;
  alignas(32) float int4[16];
  for (int c = 0; c < 16; ++c) int4[c] = float(c - 8);
  const float* book = formats::q4_codebook(w.format);  // INT4: c − 8 (asymmetric: built per block below)
  if (!book) book = int4;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m128i m4 = _mm_set1_epi16(0x0F);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.codes + n * w.row_bytes;
    for (int64_t b = 0; b < w.nb; ++b) {
      const int64_t i = n * w.nb + b;
      __m256 lo, hi;
      if (asym) {
        const __m256i z = _mm256_set1_epi32(w.zeros[i]);
        lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(iota, z));
        hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_add_epi32(iota, _mm256_set1_epi32(8)), z));
      } else {
        lo = _mm256_loadu_ps(book);
        hi = _mm256_loadu_ps(book + 8);
      }
      const __m256 s = _mm256_set1_ps(block_scale(w, i));
      lo = _mm256_mul_ps(lo, s);
      hi = _mm256_mul_ps(hi, s);
      if (w.bf16) {
        lo = round_bf16(lo);
        hi = round_bf16(hi);
      }
      const int64_t k0 = b * w.block, len = std::min(w.block, w.K - k0);
      const uint8_t* p = row + k0 / 2;  // blocks are even-sized: a block starts on a byte
      float* o = out + (n - n0) * w.K + k0;
      int64_t k = 0;
      for (; k + 16 <= len; k += 16) {  // 8 bytes: codes low nibble first
        const __m128i c16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + k / 2)));
        const __m128i l = _mm_and_si128(c16, m4), h = _mm_srli_epi16(c16, 4);
        _mm256_storeu_ps(o + k, lookup8(_mm256_cvtepu16_epi32(_mm_unpacklo_epi16(l, h)), lo, hi));
        _mm256_storeu_ps(o + k + 8, lookup8(_mm256_cvtepu16_epi32(_mm_unpackhi_epi16(l, h)), lo, hi));
      }
      if (k < len) {
        alignas(32) float t[16];
        _mm256_store_ps(t, lo);
        _mm256_store_ps(t + 8, hi);
        for (; k < len; ++k) o[k] = t[(p[k >> 1] >> (4 * (k & 1))) & 0xF];
      }
    }
  }
}

template <int NP, bool Asym>
void run(const Q4WeightView& w, const Planes& fixed, const float* x, int64_t M, float* y, int threads) {
  if (M > 1) {
    w.block >= 64 ? gemm<NP, 64, Asym>(w, fixed, x, M, y, threads) : gemm<NP, 32, Asym>(w, fixed, x, M, y, threads);
    return;
  }
  switch (w.block) {
    case 32: gemv<NP, 32, Asym, 1>(w, fixed, x, y, threads); return;
    case 64: gemv<NP, 64, Asym, 1>(w, fixed, x, y, threads); return;
    case 128: gemv<NP, 64, Asym, 2>(w, fixed, x, y, threads); return;
    default: gemv<NP, 64, Asym, 4>(w, fixed, x, y, threads); return;  // 256 (validated block sizes: 32..256)
  }
}

}  // namespace

void gemm_f32q4_f32_blockwise(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads) {
  const bool four_bit = formats::q4_codebook(w.format) || w.format == WeightFormat::INT4_SYM ||
                        w.format == WeightFormat::INT4_ASYM;
  if (M >= kQ4SgemmMinM && four_bit) {
    gemm_f32_dequant_panels(x, M, w.N, w.K, dequant_rows, &w, w.bias, y, threads);
    return;
  }
  if (w.bf16) {
    gemm_f32q4_f32_blockwise_ref(w, x, M, y, threads);
    return;
  }
  const Codebooks& cb = codebooks();
  switch (w.format) {
    case WeightFormat::NF4: run<4, false>(w, cb.nf4, x, M, y, threads); return;
    case WeightFormat::FP4: run<2, false>(w, cb.fp4, x, M, y, threads); return;
    case WeightFormat::FP4_BNB: run<4, false>(w, cb.fp4_bnb, x, M, y, threads); return;
    case WeightFormat::INT4_SYM: run<2, false>(w, cb.int4_sym, x, M, y, threads); return;
    case WeightFormat::INT4_ASYM: run<2, true>(w, cb.int4_sym, x, M, y, threads); return;
    default: gemm_f32q4_f32_blockwise_ref(w, x, M, y, threads); return;  // not a 4-bit format
  }
}

}  // namespace kq::cpu::avx2
