#pragma once
// Rotary position embeddings (RoFormer, Su et al. 2021) in Llama's
// "rotate_half" convention as in Hugging Face transformers: dimension i is
// paired with i + head_dim/2 (not with i+1 as in the paper's interleaved form).
#include <cstdint>
#include <vector>

namespace kq::cpu {

/// cos/sin tables for positions [0, max_positions), each F32 [max_positions, head_dim/2]:
/// angle(p, i) = p · θ^(−2i/head_dim), computed as transformers does in F32
/// (inv_freq = 1 / θ^(2i/d) in F32, angle = F32(p) · inv_freq), then cos/sin of that F32 angle.
struct RopeTable {
  int64_t head_dim = 0;
  int64_t max_positions = 0;
  std::vector<float> cos;  ///< [max_positions, head_dim/2]
  std::vector<float> sin;  ///< [max_positions, head_dim/2]
};

/// Builds the table. head_dim must be even and > 0 (callers validate configs).
RopeTable make_rope_table(double theta, int64_t head_dim, int64_t max_positions);

/// Rotates, in place, `heads` vectors of head_dim floats for each of n tokens at
/// positions pos0 .. pos0+n−1: for i < h = head_dim/2,
///   x'[i]   = x[i]·cos − x[i+h]·sin,   x'[i+h] = x[i+h]·cos + x[i]·sin.
/// x: token t's heads start at x + t·row_stride, head j at + j·head_dim.
/// pos0 + n must be <= table.max_positions (caller checks). Never throws.
void apply_rope(float* x, int64_t n, int64_t heads, int64_t row_stride, int64_t pos0, const RopeTable& table);

}  // namespace kq::cpu
