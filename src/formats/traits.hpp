#pragma once
// The traits table of KernelQuant's weight formats: one entry per format
// mapping it to its name, code width, block size, bytes per block and the
// scalar reference quantize/dequantize functions (the test oracle every
// optimised kernel is checked against). The byte layout of each format is
// documented in its own header: int8.hpp, fp8.hpp, nf4.hpp, fp4.hpp, fp4_bnb.hpp, int4.hpp,
// packed4.hpp (4-bit code planes) and double_quant.hpp (compressed scales).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kq::formats {

/// Weight formats with a block layout (the value indexes the traits table: new formats go last).
enum class WeightFormat : uint8_t {
  INT8,       ///< symmetric INT8, one scale per row (per-channel) or per tensor
  FP8_E4M3,   ///< OCP FP8 E4M3 codes, one scale per row or per tensor
  FP8_E5M2,   ///< OCP FP8 E5M2 codes, one scale per row or per tensor
  NF4,        ///< QLoRA NormalFloat4, blockwise absmax
  FP4,        ///< OCP E2M1, blockwise absmax normalised to 6
  INT4_SYM,   ///< integer 4-bit, scale per group, no zero point
  INT4_ASYM,  ///< integer 4-bit, scale + zero point per group
  FP4_BNB,    ///< bitsandbytes' FP4 codebook (fp4_bnb.hpp), blockwise absmax as NF4
};

/// Per-block scale (and zero point) from the block's values.
using BlockParamsFn = void (*)(const float* w, int64_t n, float* scale, uint8_t* zero);
/// Reference quantizer of one block of n values given its final scale/zero.
/// 8-bit formats write n bytes; 4-bit formats write ceil(n/2) packed bytes
/// (element 0 in the low nibble of codes[0], see packed4.hpp).
using QuantizeBlockFn = void (*)(const float* w, int64_t n, float scale, uint8_t zero, uint8_t* codes);
/// Reference dequantizer of one block: out[i] = value(code_i) · scale (INT4 asym: (code_i − zero) · scale).
using DequantizeBlockFn = void (*)(const uint8_t* codes, int64_t n, float scale, uint8_t zero, float* out);

/// Static description of one weight format.
struct FormatTraits {
  WeightFormat format;
  std::string_view name;
  int code_bits;      ///< bits per element code: 8 or 4
  int default_block;  ///< elements per block along K; 0 = the whole row (per-channel)
  int min_block;      ///< smallest allowed block (power of two); 0 when the block is the row
  int max_block;      ///< largest allowed block
  int scale_bytes;    ///< bytes of one block's scale as stored without double quantization (F32)
  int zero_bytes;     ///< bytes of one block's zero point (INT4 asym: 1 byte, value 0..15)
  BlockParamsFn block_params;
  QuantizeBlockFn quantize_block;
  DequantizeBlockFn dequantize_block;

  /// Bytes of one full block of `block` elements: codes + scale + zero point.
  size_t bytes_per_block(int64_t block) const {
    return size_t((block * code_bits + 7) / 8) + size_t(scale_bytes) + size_t(zero_bytes);
  }
};

/// The traits of `f` (a static table; never throws).
const FormatTraits& format_traits(WeightFormat f);

/// Bytes of the code plane of one row of K elements (8-bit: K; 4-bit: ceil(K/2)).
inline int64_t row_code_bytes(WeightFormat f, int64_t K) {
  return format_traits(f).code_bits == 8 ? K : (K + 1) / 2;
}

/// Number of blocks of `block` elements covering K (the last may be shorter).
inline int64_t blocks_per_row(int64_t K, int64_t block) { return block > 0 ? (K + block - 1) / block : 1; }

}  // namespace kq::formats
