// Export/import of PackedWeight tensors (quantized model folders).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>

#include "formats/double_quant.hpp"
#include "formats/fp8.hpp"
#include "formats/traits.hpp"
#include "kq/error.hpp"
#include "quant/packed_weight.hpp"

namespace kq {
namespace {

constexpr const char* kCodes = ".qweight";
constexpr const char* kScales = ".scales";
constexpr const char* kZeros = ".zeros";
constexpr const char* kDqCodes = ".dq_codes";
constexpr const char* kDqScales = ".dq_scales";
constexpr const char* kDqMean = ".dq_mean";

/// What a scale tensor may hold besides being finite.
enum class ScaleRule {
  /// INT8/FP8 per-channel or per-tensor scales: the quantizer writes absmax / max,
  /// or 1 for an all-zero row (int8_scale_for, fp8_scale_for), never 0.
  Positive,
  /// 4-bit block scales (absmax-based: an all-zero block gets 0) and the
  /// double-quantization group scales / mean (max |s - mean| / 127 and the
  /// mean of such scales): 0 is legal, a negative value never is.
  NonNegative,
};

/// The largest |value| a code of `f` decodes to at scale 1 (finite codes only;
/// INT4 asymmetric: over every zero point, |code − zero| <= 15): 128 for INT8
/// (code −128), 448 / 57344 for FP8 E4M3 / E5M2, 1 for NF4 and FP4_BNB, 6 for FP4, 8 / 15
/// for INT4 symmetric / asymmetric. From the traits' reference dequantizers.
double largest_code_value(formats::WeightFormat f) {
  const formats::FormatTraits& t = formats::format_traits(f);
  const int per_byte = t.code_bits == 8 ? 1 : 2;
  double m = 0.0;
  for (int c = 0; c < 256; ++c)
    for (const uint8_t zero : {uint8_t(0), uint8_t(15)}) {
      const uint8_t code = uint8_t(c);
      float v[2];
      t.dequantize_block(&code, per_byte, 1.0f, zero, v);
      for (int i = 0; i < per_byte; ++i)
        if (std::isfinite(v[i])) m = std::max(m, double(std::fabs(v[i])));
    }
  return m;
}

/// Throws FormatError when scale `s` (index `i` of tensor `name`) times the
/// largest |code value| `code_max` of its format is above F32's largest
/// value: a dequantized weight would be Inf (kq quantize derives scales from
/// finite weights, so only a damaged or edited file holds such a scale).
void check_applied_scale(float s, double code_max, const std::string& name, int64_t i, const char* what) {
  if (std::fabs(double(s)) * code_max <= double(std::numeric_limits<float>::max())) return;
  raise<FormatError>("tensor '{}': {} {} at index {} overflows F32 when applied: times {} (the format's largest "
                     "|code value|) it exceeds the largest F32 value {} (kq quantize writes the scales of finite "
                     "weights)",
                     name, what, s, i, code_max, std::numeric_limits<float>::max());
}

/// The one check every quantized format's scale tensors go through on load:
/// finite, never negative, > 0 where the quantizer never writes 0, and, when
/// `code_max` > 0 (the scales applied to codes directly), small enough that
/// scale × the largest |code value| `code_max` is a finite F32 (one pass).
/// Throws FormatError naming the tensor and the index of the first bad value.
void check_scales(const Tensor& t, const std::string& name, ScaleRule rule, double code_max) {
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float s = p[i];
    if (!std::isfinite(s)) raise<FormatError>("tensor '{}': non-finite scale {} at index {}", name, s, i);
    if (s < 0.0f)
      raise<FormatError>("tensor '{}': negative scale {} at index {} (kq quantize writes scales >= 0)", name, s, i);
    if (s == 0.0f && rule == ScaleRule::Positive)
      raise<FormatError>(
          "tensor '{}': zero scale at index {} (kq quantize writes scale 1 for an all-zero row, never 0)", name, i);
    if (code_max > 0.0) check_applied_scale(s, code_max, name, i, "scale");
  }
}

/// The double-quantized block scales ŝ = dq_decode(code, group scale, mean)
/// of p (dq_codes, dq_scales, dq_mean already checked as scales) must be
/// finite and, times `code_max`, a finite F32. One pass over the N·nb codes.
/// Throws FormatError naming <prefix>.dq_codes and the index of the block.
void check_decoded_scales(const PackedWeight& p, const std::string& prefix, double code_max) {
  const int8_t* q = p.dq_codes.data<int8_t>();
  const float* c = p.dq_scales.data<float>();
  const float mean = p.dq_mean.data<float>()[0];
  const std::string name = prefix + kDqCodes;
  for (int64_t i = 0; i < p.dq_codes.numel(); ++i) {
    const float s = formats::dq_decode(q[i], c[i / formats::kDqGroup], mean);
    if (!std::isfinite(s))
      raise<FormatError>("tensor '{}': the block scale at index {} decodes to {} (code {} x group scale {} + mean "
                         "{})",
                         name, i, s, int(q[i]), c[i / formats::kDqGroup], mean);
    check_applied_scale(s, code_max, name, i, "decoded block scale");
  }
}

/// FP8 codes must decode to finite values: the quantizer saturates (finite
/// weights only), so a NaN code (E4M3 0x7F/0xFF; E5M2 0x7D-0x7F and
/// 0xFD-0xFF) or an Inf code (E5M2 0x7C/0xFC) means a corrupt file. One pass
/// over the codes. Throws FormatError naming the tensor, code and index.
void check_fp8_codes(const Tensor& codes, const std::string& name, FP8Format f, int64_t K) {
  const std::array<float, 256>& table = formats::fp8_table(f);
  std::array<bool, 256> bad{};
  for (size_t c = 0; c < 256; ++c) bad[c] = !std::isfinite(table[c]);
  const uint8_t* p = codes.data<uint8_t>();
  const int64_t n = codes.numel();
  int64_t i = 0;
  while (i < n && !bad[p[i]]) ++i;
  if (i < n)
    raise<FormatError>("tensor '{}': FP8 {} code 0x{:02X} ({}) at index {} (row {}, column {}); kq quantize never "
                       "writes non-finite codes",
                       name, f == FP8Format::E4M3 ? "E4M3" : "E5M2", p[i], std::isnan(table[p[i]]) ? "NaN" : "Inf",
                       i, i / K, i % K);
}

}  // namespace

void export_packed(const PackedWeight& p, const std::string& prefix, std::map<std::string, Tensor>& out) {
  out[prefix + kCodes] = p.codes;
  if (p.scales.defined()) out[prefix + kScales] = p.scales;
  if (p.zeros.defined()) out[prefix + kZeros] = p.zeros;
  if (p.dq_codes.defined()) {
    out[prefix + kDqCodes] = p.dq_codes;
    out[prefix + kDqScales] = p.dq_scales;
    out[prefix + kDqMean] = p.dq_mean;
  }
}

PackedWeight import_packed(const TensorGetter& get, const std::string& prefix, const QuantSpec& spec, int64_t N,
                           int64_t K) {
  validate_quant_spec(spec);
  if (N < 1 || K < 1) raise<InvalidArgument>("'{}': weight shape [{}, {}] must have N, K >= 1", prefix, N, K);
  const std::string mode = spec.name();
  auto need = [&](const char* suffix, DType dt, const Shape& shape) {
    const std::string name = prefix + suffix;
    Tensor t = get(name);
    if (!t.defined()) raise<FormatError>("tensor '{}' is missing (needed by quantization mode '{}')", name, mode);
    if (t.dtype() != dt || t.shape() != shape)
      raise<FormatError>("tensor '{}': expected {} {} for mode '{}' with weight [{}, {}], got {} {}", name,
                         dtype_name(dt), shape_str(shape), mode, N, K, dtype_name(t.dtype()), shape_str(t.shape()));
    if (reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(dt) != 0) t = t.clone();
    return t;
  };
  auto forbid = [&](const char* suffix) {
    const std::string name = prefix + suffix;
    if (get(name).defined())
      raise<FormatError>("tensor '{}' is present but quantization mode '{}' does not use it", name, mode);
  };

  PackedWeight p;
  p.spec = spec;
  p.N = N;
  p.K = K;
  const formats::WeightFormat wf = weight_format_of(spec);
  if (formats::format_traits(wf).code_bits == 8) {
    const bool per_tensor = spec.weight_scales == ScaleGranularity::PerTensor;
    p.block = per_tensor ? N * K : K;
    p.blocks_per_row = 1;
    p.codes = need(kCodes, wf == formats::WeightFormat::INT8 ? DType::I8 : DType::U8, {N, K});
    if (wf != formats::WeightFormat::INT8)
      check_fp8_codes(p.codes, prefix + kCodes,
                      wf == formats::WeightFormat::FP8_E4M3 ? FP8Format::E4M3 : FP8Format::E5M2, K);
    p.scales = need(kScales, DType::F32, {per_tensor ? 1 : N});
    check_scales(p.scales, prefix + kScales, ScaleRule::Positive, largest_code_value(wf));
    forbid(kZeros);
    forbid(kDqCodes);
    return p;
  }
  p.block = spec.block_size;
  p.blocks_per_row = formats::blocks_per_row(K, p.block);
  const int64_t nb = p.blocks_per_row;
  p.codes = need(kCodes, DType::U8, {N, (K + 1) / 2});
  if (spec.double_quant) {
    forbid(kScales);
    p.dq_codes = need(kDqCodes, DType::I8, {N, nb});
    p.dq_scales = need(kDqScales, DType::F32, {(N * nb + formats::kDqGroup - 1) / formats::kDqGroup});
    p.dq_mean = need(kDqMean, DType::F32, {1});
    check_scales(p.dq_scales, prefix + kDqScales, ScaleRule::NonNegative, 0.0);
    check_scales(p.dq_mean, prefix + kDqMean, ScaleRule::NonNegative, 0.0);
    check_decoded_scales(p, prefix, largest_code_value(wf));
  } else {
    forbid(kDqCodes);
    p.scales = need(kScales, DType::F32, {N, nb});
    check_scales(p.scales, prefix + kScales, ScaleRule::NonNegative, largest_code_value(wf));
  }
  if (wf == formats::WeightFormat::INT4_ASYM) {
    p.zeros = need(kZeros, DType::U8, {N, nb});
    const uint8_t* z = p.zeros.data<uint8_t>();
    for (int64_t i = 0; i < p.zeros.numel(); ++i)
      if (z[i] > 15) raise<FormatError>("tensor '{}{}': zero point {} at index {} exceeds 15", prefix, kZeros, z[i], i);
  } else {
    forbid(kZeros);
  }
  return p;
}

}  // namespace kq
