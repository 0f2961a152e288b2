#pragma once
// A quantized weight matrix [N, K] in one of the block layouts of src/formats/,
// held as dense tensors (the same tensors a quantized model folder stores),
// and the round-to-nearest quantizer that produces it.
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "formats/traits.hpp"
#include "kq/quantize.hpp"
#include "kq/tensor.hpp"

namespace kq {

/// Quantized weight W[N, K] (N = out, K = in); blocks run along K of each row.
/// Which tensors are defined depends on spec (see src/formats/*.hpp):
struct PackedWeight {
  QuantSpec spec;
  int64_t N = 0;
  int64_t K = 0;
  /// Elements per block along K: spec.block_size for 4-bit formats, K for
  /// per-channel INT8/FP8, N·K (the whole tensor) for per-tensor.
  int64_t block = 0;
  /// Scales per row: ceil(K / block_size) for 4-bit formats, 1 otherwise.
  int64_t blocks_per_row = 0;

  Tensor codes;      ///< INT8: I8 [N, K]; FP8: U8 [N, K]; NF4/FP4/INT4: U8 [N, ceil(K/2)] (packed4.hpp)
  Tensor scales;     ///< F32 [N] per-channel, [1] per-tensor, [N, nb] per-block; undefined when double-quantized
  Tensor zeros;      ///< U8 [N, nb], INT4 asymmetric only
  Tensor dq_codes;   ///< I8 [N, nb] double-quantized block scales (double_quant.hpp)
  Tensor dq_scales;  ///< F32 [ceil(N·nb / 256)]
  Tensor dq_mean;    ///< F32 [1]

  formats::WeightFormat weight_format() const;
  /// Bytes held by all defined tensors (bias not included).
  size_t bytes() const;
  /// Pointer to row n's codes (row stride formats::row_code_bytes(weight_format(), K)).
  const uint8_t* row_codes(int64_t n) const;
  /// The decoded F32 scales of row n: blocks_per_row values (double-quantized
  /// scales decoded with formats::dq_decode). Per-tensor formats give the one scale.
  void row_scales(int64_t n, float* out) const;
  /// Zero point of block b of row n (0 unless INT4 asymmetric).
  uint8_t zero(int64_t n, int64_t b) const;
  /// Reference dequantization through the traits table: F32 [N, K] as stored
  /// (no compute-dtype rounding).
  Tensor dequantize() const;
};

/// The block-layout format of a (valid) spec.
formats::WeightFormat weight_format_of(const QuantSpec& spec);

/// Round-to-nearest quantization of `w` (F32, BF16 or F16, [N, K]) to `spec`,
/// using the reference quantizers of the traits table. Block scales are
/// absmax-based; with double quantization the codes are chosen against the
/// decoded (double-quantized) scales. Parallel over rows (OpenMP).
/// Throws InvalidArgument for an invalid spec, a non-2-D or empty weight, a
/// non-float dtype, a non-finite weight (naming its [n, k]), or an AWQ spec
/// (spec.awq: its scales come from calibration, see kernels/awq_linear.hpp).
PackedWeight quantize_weight(const Tensor& w, const QuantSpec& spec);

/// Adds the defined tensors under `prefix`: prefix.qweight (codes), .scales,
/// .zeros, .dq_codes, .dq_scales, .dq_mean.
void export_packed(const PackedWeight& p, const std::string& prefix, std::map<std::string, Tensor>& out);

/// Tensor lookup for loading: returns the named tensor, or an undefined Tensor when absent.
using TensorGetter = std::function<Tensor(const std::string&)>;

/// Rebuilds a PackedWeight from tensors written by export_packed (bit-identical).
/// Views are kept zero-copy when suitably aligned, else copied. Throws
/// FormatError naming the tensor (and the index of the first bad value) when
/// one is missing or has the wrong dtype, shape, or invalid values: a
/// non-finite or negative scale (block, per-channel, per-tensor or
/// double-quantization scale/mean), a zero INT8/FP8 scale (the quantizer
/// writes 1 for an all-zero row; a zero 4-bit block scale is legal: all-zero
/// block), an FP8 code that decodes to NaN or Inf (E4M3 0x7F/0xFF, E5M2
/// 0x7C-0x7F/0xFC-0xFF; one pass over the codes), a zero point > 15.
/// InvalidArgument for an invalid spec or N, K < 1.
PackedWeight import_packed(const TensorGetter& get, const std::string& prefix, const QuantSpec& spec, int64_t N,
                           int64_t K);

}  // namespace kq
