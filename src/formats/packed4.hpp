#pragma once
// Code plane shared by the 4-bit formats (NF4, FP4, bitsandbytes FP4, INT4 symmetric/asymmetric).
//
// Layout of a weight [N, K] (blocks/groups of B elements run along K):
//   codes   U8 [N, ceil(K/2)]  two 4-bit codes per byte; element k of row n is in
//           byte n·ceil(K/2) + k/2: the LOW nibble (bits 0–3) holds even k, the
//           HIGH nibble (bits 4–7) odd k. For odd K the last byte's high nibble is
//           0 padding (never decoded). Row stride is ceil(K/2) bytes.
//   blocks  row n has nb = ceil(K/B) blocks; block b covers k ∈ [b·B, min(K, (b+1)·B))
//           and starts at byte b·B/2 of the row (B is an even power of two), so the
//           last block is shorter when B does not divide K (a tail, not padding).
//   scales  F32 [N, nb] one per block, or double-quantized (double_quant.hpp).
//   zeros   U8 [N, nb] (INT4 asymmetric only), zero point 0..15 per block.
// A block decodes through a 16-entry table: w = lut[code] with lut built by
// q4_block_lut() from the block's scale (and zero point); every kernel builds
// the same table, so all paths reproduce the reference values bit for bit.
#include <cstdint>

#include "formats/traits.hpp"

namespace kq::formats {

/// Code of element k of a packed row.
inline uint8_t get_nibble(const uint8_t* row, int64_t k) { return uint8_t((row[k >> 1] >> ((k & 1) * 4)) & 0xF); }

/// Packs n 4-bit codes (one per byte, values 0..15) into ceil(n/2) bytes, low nibble first.
void pack_nibbles(const uint8_t* codes, int64_t n, uint8_t* packed);

/// Unpacks n codes from ceil(n/2) packed bytes.
void unpack_nibbles(const uint8_t* packed, int64_t n, uint8_t* codes);

/// The 16 code values (before scaling) of a codebook format: kNF4 (NF4),
/// kE2M1 (FP4), kFP4Bnb (FP4_BNB); nullptr for any other format (INT4's values
/// are arithmetic: c − 8, or c − zero). The one place a kernel finds a
/// codebook (out of line: safe to call from files built for other ISAs).
const float* q4_codebook(WeightFormat f);

/// The 16 decoded values of one block: lut[c] = value of code c for this block's
/// scale (and zero point for INT4_ASYM). `f` must be a 4-bit format.
///   NF4 / FP4 / FP4_BNB: q4_codebook(f)[c]·scale   INT4_SYM: (c − 8)·scale   INT4_ASYM: (c − zero)·scale
void q4_block_lut(WeightFormat f, float scale, uint8_t zero, float lut[16]);

/// Index of the value nearest to x in an ascending table of 16 finite values
/// (decided exactly: midpoints in double); an exact tie (x exactly halfway
/// between two entries) goes to the lower index; NaN gives `nan_index`;
/// x beyond the ends gives 0 or 15.
uint8_t nearest_index16(const float* sorted, float x, uint8_t nan_index);

}  // namespace kq::formats
