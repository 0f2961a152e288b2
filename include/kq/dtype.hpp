#pragma once
// Element types of dense tensors and the scalar conversions between them.
// Packed block formats (NF4, FP4, INT4 groups, double-quantized scales) are not
// element dtypes: they are block layouts over U8 storage, internal to the
// library (src/formats/ of the source repository).
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace kq {

/// Element type of a dense tensor.
enum class DType : uint8_t {
  F32,      ///< IEEE 754 binary32
  F16,      ///< IEEE 754 binary16
  BF16,     ///< bfloat16 (upper half of binary32)
  F8_E4M3,  ///< OCP FP8 E4M3 (finite max 448, no Inf)
  F8_E5M2,  ///< OCP FP8 E5M2 (max 57344, has Inf)
  I8,
  U8,
  I16,
  I32,
  I64,
  BOOL,
  F64,
};

/// Size of one element in bytes.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    default: return 1;
  }
}

/// Safetensors spelling of a dtype ("F32", "BF16", "F8_E4M3", ...).
/// The rule of every *_name function of a kq enum (dtype_name, device_name,
/// arch_name, precision_format_name, scale_granularity_name, fp8_format_name,
/// quant_family_name, allocation_strategy_name): a value outside the enum (a
/// cast such as DType(99)) is named "unknown(99)", never as a valid value, and
/// naming never throws.
std::string_view dtype_name(DType t);

/// Parses a safetensors dtype string; std::nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view name);

/// bfloat16 -> float (exact).
inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

/// float -> bfloat16, round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

/// IEEE binary16 -> float (exact, subnormals included).
float f16_to_f32(uint16_t h);

/// float -> IEEE binary16, round to nearest even, overflow to Inf.
uint16_t f32_to_f16(float f);

/// Converts n elements of type `src_t` at `src` to float.
/// Throws InvalidArgument for non-floating source types.
void convert_to_f32(DType src_t, const void* src, float* dst, size_t n);

/// Converts n floats at `src` to `dst_t` (F32, F16 or BF16; round to nearest
/// even, as f32_to_f16 / f32_to_bf16) at `dst`: exact for values that came
/// from that dtype. Throws InvalidArgument for other destination types.
void convert_from_f32(DType dst_t, const float* src, void* dst, size_t n);

}  // namespace kq
