#pragma once
// Weight quantization: the modes KernelQuant supports, their names on the
// command line, and tensor-level FP8 conversion.
//
// Formats (byte layouts documented in src/formats/*.hpp of the source repository):
//   INT8  symmetric per-output-channel (or per-tensor) weights, scale = absmax/127;
//         W8A8 adds dynamic per-token INT8 activations with INT32 accumulation.
//   NF4   QLoRA 4-bit NormalFloat (Dettmers et al. 2023), blockwise absmax along K,
//         optional double quantization of the absmax values.
//   FP4   OCP E2M1 4-bit float, blockwise absmax normalised to 6, optional double quantization.
//   FP4_BNB  bitsandbytes' own 4-bit float codebook (its "fp4" quant_type: magnitudes
//         {0, 0.0625, 2, 3, 4, 6, 8, 12} / 12, not E2M1), blockwise absmax as NF4: the
//         format bitsandbytes FP4 checkpoints load into; also a `kq quantize` mode (fp4-bnb).
//   INT4  round-to-nearest integer 4-bit with one scale (and zero point when
//         asymmetric) per group of K elements: the baseline AWQ improves on.
//   FP8   OCP OFP8 rev 1.0 E4M3 / E5M2 with per-channel or per-tensor weight
//         scales (absmax / format max); W8A8 adds dynamic per-token FP8 activations.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kq/dtype.hpp"
#include "kq/tensor.hpp"

namespace kq {

/// Precision of a weight (or of a whole model). INT4 is integer 4-bit with
/// groups (int4-gN modes); NF4, FP4 (E2M1) and FP4_BNB (bitsandbytes' FP4) are
/// the 4-bit codebook formats. FP4_BNB comes last: the values before it keep their numbers.
enum class PrecisionFormat { FP32, BF16, FP16, INT8, INT4, NF4, FP4, FP8_E4M3, FP8_E5M2, FP4_BNB };

/// "fp32", "bf16", "fp16", "int8", "int4", "nf4", "fp4", "fp8_e4m3", "fp8_e5m2", "fp4_bnb";
/// "unknown(N)" for a value outside the enum (see dtype_name).
std::string_view precision_format_name(PrecisionFormat f);

/// Parses a precision name (case-insensitive; '-' and '_' are interchangeable,
/// "f32"/"float32", "bfloat16", "f16"/"float16", "fp8" = FP8_E4M3 are accepted).
/// Throws InvalidArgument naming the value and listing the valid names.
PrecisionFormat parse_precision_format(std::string_view s);

/// Granularity of a quantization scale.
enum class ScaleGranularity {
  PerTensor,   ///< one scale for the whole tensor
  PerChannel,  ///< one scale per output channel (row of the [N, K] weight)
  PerToken,    ///< one scale per token (row of the [M, K] activation), computed at run time
  PerGroup,    ///< one scale per block/group of consecutive K elements of a row (NF4/FP4 blocks, INT4 groups)
  PerBlock = PerGroup,
};

/// "per-tensor", "per-channel", "per-token", "per-group"; "unknown(N)" for a value outside the enum (see dtype_name).
std::string_view scale_granularity_name(ScaleGranularity g);

/// The two OCP 8-bit floating-point formats (OFP8 specification rev 1.0).
enum class FP8Format {
  E4M3,  ///< 1 sign, 4 exponent (bias 7), 3 mantissa bits; finite max 448, no Inf, NaN = S.1111.111
  E5M2,  ///< 1 sign, 5 exponent (bias 15), 2 mantissa bits; max 57344, IEEE-like ±Inf and NaN
};

/// "e4m3" / "e5m2"; "unknown(N)" for a value outside the enum (see dtype_name).
std::string_view fp8_format_name(FP8Format f);

/// Largest finite magnitude: 448 (E4M3) or 57344 (E5M2). Throws InvalidArgument for
/// a value that is neither (e.g. FP8Format(5)).
float fp8_max(FP8Format f);

/// How tensors are converted to FP8 (OCP OFP8 rev 1.0).
struct FP8Config {
  FP8Format format = FP8Format::E4M3;
  /// Saturating conversion (default): |x| > max, ±Inf included, becomes ±max.
  /// Non-saturating: overflow becomes NaN (E4M3) or ±Inf (E5M2). NaN stays NaN either way.
  bool saturate = true;
  /// Weight scales: PerTensor or PerChannel (scale = absmax / fp8_max).
  ScaleGranularity weight_scales = ScaleGranularity::PerChannel;
  /// W8A8: quantize activations to FP8 per token at run time (else weight-only FP8).
  bool quantize_activations = true;
};

/// Quality family of a quantization mode (decides the perplexity threshold).
enum class QuantFamily { INT8, INT4, FP8 };

/// "int8" / "int4" / "fp8"; "unknown(N)" for a value outside the enum (see dtype_name).
std::string_view quant_family_name(QuantFamily f);

/// One struct fully describing how a Linear weight [N, K] is quantized.
/// Blocks/groups run along K (the input dimension) of each output row; a last
/// block shorter than block_size covers the tail when K is not a multiple of it.
struct QuantSpec {
  /// INT8, INT4 (integer groups), NF4, FP4, FP4_BNB, FP8_E4M3 or FP8_E5M2.
  PrecisionFormat format = PrecisionFormat::INT8;
  /// Elements per block (NF4/FP4/FP4_BNB, default 64) or group (INT4, default 128) along K:
  /// a power of two in [32, 256]. 0 for INT8/FP8 (per-channel or per-tensor scales).
  int block_size = 0;
  /// NF4/FP4/FP4_BNB: QLoRA double quantization of the per-block scales (8-bit codes in
  /// groups of 256 with one F32 scale per group and one F32 mean per tensor).
  bool double_quant = false;
  /// INT4: symmetric (scale only) or asymmetric (scale + zero point per group).
  /// INT8/FP8/NF4/FP4/FP4_BNB are always symmetric.
  bool symmetric = true;
  /// INT8/FP8: PerChannel or PerTensor. NF4/FP4/FP4_BNB/INT4: PerGroup.
  ScaleGranularity weight_scales = ScaleGranularity::PerChannel;
  /// INT8/FP8 only: W8A8 (activations quantized per token at run time) vs weight-only.
  bool quantize_activations = false;
  /// NF4/FP4/FP4_BNB/INT4: F32 or BF16. BF16 rounds activations and dequantized weights
  /// to bfloat16 before the multiply; accumulation stays F32. INT8/FP8: F32.
  DType compute_dtype = DType::F32;
  /// FP8 only: saturating conversion of activations (see FP8Config::saturate).
  bool fp8_saturate = true;
  /// INT4 only: AWQ, activation-aware weight quantization (Lin et al., MLSys
  /// 2024): each input channel k of W is multiplied by s_k = mean|x_k|^α
  /// (α searched per layer on calibration activations to minimise the layer's
  /// output error) before round-to-nearest, and the op divides x by s at run
  /// time, so salient channels keep more precision. Needs calibration tokens
  /// (QuantizeOptions::calibration); stores one extra F32 [K] per layer.
  bool awq = false;

  /// Canonical mode name, accepted by parse_quant_mode (e.g. "int8", "nf4-b128-nodq", "fp8-e5m2-wo").
  /// Throws InvalidArgument (validate_quant_spec's message, naming the offending field) for a spec
  /// that is not valid: no mode has it, and the fields it has would pass for another mode's (a format
  /// of FP32 with NF4's block fields read "fp4").
  std::string name() const;
  /// INT8 for int8, FP8 for both FP8 formats, INT4 for int4/nf4/fp4/fp4-bnb (AWQ included). Throws
  /// InvalidArgument for a format that is not a quantized weight format (FP32, BF16, FP16, or a
  /// value outside PrecisionFormat): such a spec has no family and no threshold.
  QuantFamily family() const;
  bool operator==(const QuantSpec&) const = default;
};

/// The Python specification's name for the same struct.
using QuantizationMode = QuantSpec;

/// Parses a CLI mode name (case-insensitive). Presets:
///   int8 (W8A8: per-channel weights, per-token activations), int8-wo (weight-only),
///   int8-pt (per-tensor weights, W8A8); int4 = nf4 (NF4, block 64, double quant);
///   nf4-b32/-b128/-b256 (block size), nf4-nodq (no double quant); fp4 (E2M1, block 64,
///   double quant); fp4-bnb (bitsandbytes' FP4 codebook, block 64, double quant: fp4 with
///   the modifier -bnb); int4-g128 (symmetric INT4, group 128), int4-g128-asym;
///   fp8 (E4M3 W8A8, per-channel weights, per-token activations), fp8-e5m2, fp8-wo
///   (weight-only), fp8-pt (per-tensor weights); awq = awq-g128 (AWQ INT4, group
///   128, zero points, as the AWQ paper), awq-g128-sym. Modifiers combine in any order:
///   -bN / -gN, -nodq, -asym, -bf16 (4-bit compute dtype), -e4m3/-e5m2, -bnb (fp4 only), -pt, -wo, -nosat.
///   A 4-bit size may be written -bN or -gN (nf4-g64 = nf4-b64, awq-b64 = awq-g64), except after
///   int4: "int4" alone is nf4, int4 with -gN, -sym or -asym is integer INT4 (int4-sym =
///   int4-g128), and any other int4 name (int4-b64, int4-bf16, int4-nodq) is ambiguous.
/// Throws InvalidArgument for an unknown name, listing every valid name, and for an ambiguous
/// int4 name, naming the unambiguous spellings (int4-b64: nf4-b64 or int4-g64).
QuantSpec parse_quant_mode(std::string_view name);

/// parse_quant_mode(name), with `more_valid` (further names the caller
/// accepts besides, e.g. the adaptive modes of `kq quantize` and `kq bench`:
/// valid_adaptive_mode_names) appended to the list of valid modes in the
/// unknown-name error. Throws as parse_quant_mode.
QuantSpec parse_quant_mode(std::string_view name, std::string_view more_valid);

/// Every canonical mode name parse_quant_mode accepts (aliases like "int4" excluded), sorted.
std::vector<std::string> valid_quant_mode_names();

/// Checks a hand-built spec. Throws InvalidArgument naming the offending field; a format
/// outside PrecisionFormat is said first ("QuantSpec.format 99 is not a PrecisionFormat").
void validate_quant_spec(const QuantSpec& spec);

/// The spec for an FP8Config (block_size 0, compute F32). Throws InvalidArgument
/// for a cfg.format that is neither E4M3 nor E5M2 (e.g. FP8Format(7)), and as
/// validate_quant_spec for the other fields.
QuantSpec fp8_quant_spec(const FP8Config& cfg);

/// Maximum perplexity increase in percent allowed by the specification
/// (its evaluation protocol): INT8 2, INT4/NF4/FP4/FP4_BNB 5, AWQ INT4 3, FP8 1. Throws InvalidArgument
/// as QuantSpec::family() for a format that is not a quantized weight format.
double max_ppl_increase_pct(const QuantSpec& spec);

/// Exact bytes a weight [N, K] occupies in `spec` (codes, scales, zero points,
/// double-quant codes/scales/mean, AWQ's F32 [K] input scales), bias excluded. Throws InvalidArgument for
/// an invalid spec, sizes below 1 or more than 2^56 elements.
size_t quantized_weight_bytes(const QuantSpec& spec, int64_t N, int64_t K);

/// 8 · quantized_weight_bytes / (N · K): bits per real weight element
/// (tail blocks count only their real elements). NF4 b64 with double quant on
/// 4096 × 4096 gives 4 + 8/64 + 32/(64·256) + 32/(4096·4096) ≈ 4.127.
double bits_per_weight(const QuantSpec& spec, int64_t N, int64_t K);

/// A tensor in FP8: one byte per element plus F32 scales. value = decode(code) · scale.
struct Fp8Tensor {
  Tensor codes;   ///< U8, the shape of the source tensor; OCP bit patterns of `format`
  Tensor scales;  ///< F32 [1] (PerTensor) or [rows] (PerChannel/PerToken: one per slice of dim 0)
  FP8Format format = FP8Format::E4M3;
  ScaleGranularity granularity = ScaleGranularity::PerTensor;
};

/// Quantizes x (F32, F16, BF16 or F64, converted to F32 first; at least 1-D for
/// PerChannel / PerToken) to FP8 with scale = absmax / fp8_max over finite values
/// (scale 1 when that absmax is 0; when absmax / fp8_max is below the smallest
/// normal float, as for absmax 1e-44, the scale is the smallest float, subnormal
/// included, for which absmax / scale still fits the format, never 0), code =
/// fp8(x / scale) rounded to nearest even, saturating or not per cfg.saturate.
/// cfg.weight_scales: PerTensor, or PerChannel / PerToken = one scale per slice of dim 0.
/// Throws InvalidArgument ("quantize_to_fp8: ...") for other granularities, an
/// undefined tensor, another dtype (integers, FP8, BOOL) or a cfg.format that
/// is neither E4M3 nor E5M2.
Fp8Tensor quantize_to_fp8(const Tensor& x_f32, const FP8Config& cfg);

/// F32 tensor of the codes' shape: decode(code) · scale. Throws InvalidArgument
/// ("dequantize_from_fp8: ...") when codes/scales do not match (dtype, shape,
/// granularity), a scale is not finite and positive (NaN, Inf, 0 or negative;
/// naming Fp8Tensor::scales and the index), or the format is not an FP8Format value.
Tensor dequantize_from_fp8(const Fp8Tensor& t);

}  // namespace kq
