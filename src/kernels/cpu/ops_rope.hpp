#pragma once
// Rotary position embeddings (RoFormer, Su et al. 2021) in Llama's
// "rotate_half" convention as in Hugging Face transformers: dimension i is
// paired with i + head_dim/2 (not with i+1 as in the paper's interleaved form);
// with a rotary_dim below head_dim (Phi-3's partial_rotary_factor), i with
// i + rotary_dim/2 among the first rotary_dim dimensions, the rest unchanged.
#include <cstdint>
#include <limits>
#include <vector>

#include "kq/config.hpp"

namespace kq::cpu {

/// Which of longrope's two factor lists (RopeScaling::short_factor, long_factor) a table is built from; the
/// other scaling types have one set and ignore it.
enum class LongRopeFactors { Short, Long };

/// The head_dim/2 inverse frequencies (rad per position) of RoPE with base `theta` and `scaling`, in F32 as
/// transformers computes them on the CPU: inv_freq_i = 1 / θ^(2i/head_dim) (_compute_default_rope_parameters;
/// head_dim is the rotary dimension, rotary_dim, when RoPE rotates part of each head),
/// then, for RopeScaling::Type::Linear, inv_freq_i / factor, for LongRope 1 / (ext_factor_i · θ^(2i/head_dim))
/// with ext_factor = short_factor, or long_factor when `factors` is Long (_compute_longrope_parameters with a
/// seq_len up to or past original_max_position_embeddings; each F32), and for Llama3 the band-wise scaling of
/// RopeScaling::Type::Llama3 evaluated step by step in F32 as _compute_llama3_parameters does on float32
/// tensors (wavelength = (1/inv_freq)·2π; the band limits original_max/low_freq_factor and
/// original_max/high_freq_factor rounded to F32 before comparing). head_dim must be even and > 0 and the
/// scaling valid (callers validate configs: models::check_config). Never throws but std::bad_alloc.
std::vector<float> rope_inv_freq(double theta, int64_t head_dim, const RopeScaling& scaling = {},
                                 LongRopeFactors factors = LongRopeFactors::Short);

/// cos/sin tables for positions [0, max_positions), each F32 [max_positions, head_dim/2]:
/// angle(p, i) = F32(p) · inv_freq_i (rope_inv_freq: θ^(−2i/head_dim) with `scaling` applied), computed as
/// transformers does in F32, then cos/sin of that F32 angle. Position p's values depend only on p, not on
/// max_positions. With a rotary_dim below head_dim the tables are [max_positions, rotary_dim/2] of
/// rope_inv_freq(theta, rotary_dim, scaling). LongRope: cos and sin multiplied (in F32) by
/// scaling.attention_factor, as transformers' rotary embedding does (attention_scaling), whichever factor list a
/// position uses: the short factors before position `long_from`, the long factors from it on (make_rope_table).
struct RopeTable {
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;  ///< the first rotary_dim dimensions of each head are rotated (<= head_dim, even)
  int64_t max_positions = 0;
  std::vector<float> cos;  ///< [max_positions, rotary_dim/2]
  std::vector<float> sin;  ///< [max_positions, rotary_dim/2]
};

/// make_rope_table's default long_from: no position uses longrope's long factors.
inline constexpr int64_t kShortFactorsOnly = std::numeric_limits<int64_t>::max();

/// Builds the table. head_dim must be even and > 0, rotary_dim (0: head_dim) even in [2, head_dim] and `scaling`
/// valid for it (callers validate configs). LongRope: rows p < long_from hold the short factors' angles, rows
/// p >= long_from the long factors' (default: the short factors everywhere; 0: the long factors everywhere;
/// scaling.original_max_positions: each position as a sequence ending at it uses, see models::Rope). Ignored by
/// the other types.
RopeTable make_rope_table(double theta, int64_t head_dim, int64_t max_positions, const RopeScaling& scaling = {},
                          int64_t rotary_dim = 0, int64_t long_from = kShortFactorsOnly);

/// Rotates, in place, `heads` vectors of head_dim floats for each of n tokens at
/// positions pos0 .. pos0+n−1: for i < h = rotary_dim/2,
///   x'[i]   = x[i]·cos − x[i+h]·sin,   x'[i+h] = x[i+h]·cos + x[i]·sin;
/// dimensions rotary_dim .. head_dim−1 are left as they are.
/// x: token t's heads start at x + t·row_stride, head j at + j·head_dim.
/// pos0 + n must be <= table.max_positions (caller checks). Never throws.
void apply_rope(float* x, int64_t n, int64_t heads, int64_t row_stride, int64_t pos0, const RopeTable& table);

}  // namespace kq::cpu
