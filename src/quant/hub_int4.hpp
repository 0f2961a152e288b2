#pragma once
// Lossless conversion of the 4-bit linear layers of pre-quantized Hugging Face
// Hub checkpoints (AutoAWQ "-AWQ", AutoGPTQ / GPTQModel "-GPTQ" repositories)
// into kq's INT4 group format (formats/int4.hpp, packed4.hpp planes) at load time.
//
// Both store, for a linear layer y = W x with W [N = out, K = in], 4-bit codes q,
// one scale s and one 4-bit zero point z per (group of input channels, output
// channel), and dequantize w[n, k] = (q[n, k] − z[g(k), n]) · s[g(k), n]:
//
// AutoAWQ, version "gemm" (WQLinear_GEMM):
//   <prefix>.qweight  I32 [K, N/8]    int32 (k, c) holds q[8c + j, k] in nibble i (bits 4i..4i+3) where
//                                     j = kAwqPackOrder[i] = {0, 2, 4, 6, 1, 3, 5, 7}[i] (AutoAWQ's interleave;
//                                     transformers' awq unpacking undoes it with {0, 4, 1, 5, 2, 6, 3, 7})
//   <prefix>.qzeros   I32 [G, N/8]    z[g, 8c + j] in nibble i of (g, c), the same order
//   <prefix>.scales   F16 [G, N]      G = K / group_size (group_size −1: one group, G = 1); g(k) = k / group_size
// AutoGPTQ / GPTQModel, checkpoint_format "gptq" (v1) or "gptq_v2":
//   <prefix>.qweight  I32 [K/8, N]    int32 (r, n) holds q[n, 8r + i] in nibble i, low nibble first
//   <prefix>.qzeros   I32 [G, N/8]    nibble i of (g, c) holds z[g, 8c + i] (v2) or z[g, 8c + i] − 1 (v1: the
//                                     stored value plus one is the zero point, as AutoGPTQ's dequantization adds it)
//   <prefix>.scales   F16 [G, N]      G = ceil(K / group_size) (group_size −1: G = 1)
//   <prefix>.g_idx    I32 [K]         optional: the group g(k) of input channel k (k / group_size when absent)
// Both may have <prefix>.bias F16 [N] (kept, in F32).
//
// kq's groups are B consecutive K elements (B a power of two in [32, 256]): the
// conversion picks the largest B (not above K's largest power of two, at least 32)
// for which every block [bB, (b+1)B) lies in one checkpoint group, and gives
// each block its group's scale and zero point (a group of 128 gives B = 128; one
// group per row gives B = 256 with the one scale repeated; 96 gives B = 32, three
// kq groups per checkpoint group; 512 gives B = 256). So group_size must be −1 or
// a multiple of 32 (a smaller row, K <= group_size, is one group). A g_idx that no B
// satisfies (GPTQ act-order, desc_act) is refused: its groups are not runs of
// consecutive input channels. Scales (F16, BF16 or F32 in the file) are exact in
// F32; kq computes (q − z) · s in F32 where AutoAWQ's and exllama's kernels round
// it to fp16, so kq's weights are the checkpoint's exact values. A layer whose
// zero points are all 8 becomes symmetric INT4 (code − 8) · s, the same values
// in fewer bytes; any other becomes asymmetric INT4 (code − zero) · s.
#include <cstdint>
#include <string>

#include "quant/packed_weight.hpp"

namespace kq {

/// The pre-quantized checkpoint layouts kq converts.
enum class HubInt4Layout {
  AwqGemm,  ///< AutoAWQ version "gemm"
  GptqV1,   ///< AutoGPTQ checkpoint_format "gptq" (stored zero = z − 1)
  GptqV2,   ///< GPTQModel checkpoint_format "gptq_v2" (stored zero = z)
};

/// "AWQ (gemm)", "GPTQ (v1)", "GPTQ (v2)": how messages name a layout.
std::string hub_int4_layout_name(HubInt4Layout layout);

/// A checkpoint's quantization as its config.json quantization_config gives it (4 bits only).
struct HubInt4Config {
  HubInt4Layout layout = HubInt4Layout::AwqGemm;
  /// Input channels per group; −1: one group per output row (all K).
  int64_t group_size = 128;
  /// GPTQ desc_act (act-order): every layer must have a .g_idx (its groups are
  /// not k / group_size without one).
  bool desc_act = false;
};

/// The AutoAWQ nibble order: nibble i of an AWQ int32 holds column 8c + kAwqPackOrder[i].
inline constexpr int kAwqPackOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/// Converts the tensors of one linear layer W [N, K] stored under `prefix` in
/// `config`'s layout (see the top of this file) into a PackedWeight of kq's
/// INT4 format, with the same dequantized values (exactly). `get(name)` returns
/// the tensor or an undefined Tensor when absent. The bias is not read here.
/// Throws FormatError naming the tensor (and, for a bad value, its index) when
/// a tensor is missing, has the wrong dtype or shape for [N, K] and the group
/// size, when a scale is negative or not finite, a GPTQ v1 stored zero is 15
/// (zero point 16, outside kq's 0..15; AutoGPTQ writes z − 1 for z in 0..15, so
/// it is a damaged file), a g_idx value is outside [0, G), or the groups (g_idx)
/// are not runs of at least 32 consecutive input channels, the group size is
/// not a multiple of 32 (while K > group size: 16, 48, ...), or a .g_idx is
/// missing under desc_act; InvalidArgument for
/// N, K < 1 or a group size that is neither −1 nor positive.
PackedWeight import_hub_int4(const TensorGetter& get, const std::string& prefix, const HubInt4Config& config,
                             int64_t N, int64_t K);

/// Output rows [row0, row0 + rows) of `w` (an INT4 weight [N, K] of import_hub_int4) as an INT4 weight [rows, K]
/// of their own: the same codes, scales and zero points (copied), symmetric INT4 when the part's own zero points
/// are all 8, so exactly what import_hub_int4 gives for those rows stored as a layer of their own (the group size
/// depends on the input channels' groups only, which all rows share). How the layers a checkpoint quantizes fused
/// (Phi-3's self_attn.qkv_proj, mlp.gate_up_proj) become the layers of their parts: lossless at any row boundary
/// (no packing constraint: the rows are split after the int32s are unpacked). Throws InvalidArgument when `w` is
/// not INT4 or the range is empty or outside [0, N).
PackedWeight hub_int4_rows(const PackedWeight& w, int64_t row0, int64_t rows);

}  // namespace kq
