#include "formats/traits.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "formats/fp4.hpp"
#include "formats/fp4_bnb.hpp"
#include "formats/fp8.hpp"
#include "formats/int4.hpp"
#include "formats/int8.hpp"
#include "formats/nf4.hpp"
#include "formats/packed4.hpp"

namespace kq::formats {
namespace {

// ---- INT8 -------------------------------------------------------------------
void int8_params(const float* w, int64_t n, float* scale, uint8_t* zero) {
  *scale = int8_scale_for(absmax(w, n));
  *zero = 0;
}
void int8_quant(const float* w, int64_t n, float scale, uint8_t, uint8_t* codes) {
  int8_quantize_row(w, n, scale, reinterpret_cast<int8_t*>(codes));
}
void int8_dequant(const uint8_t* codes, int64_t n, float scale, uint8_t, float* out) {
  int8_dequantize_row(reinterpret_cast<const int8_t*>(codes), n, scale, out);
}

// ---- FP8 --------------------------------------------------------------------
template <FP8Format F>
void fp8_params(const float* w, int64_t n, float* scale, uint8_t* zero) {
  *scale = fp8_scale_for(finite_absmax(w, n), F);
  *zero = 0;
}
template <FP8Format F>
void fp8_quant(const float* w, int64_t n, float scale, uint8_t, uint8_t* codes) {
  fp8_quantize_row(w, n, scale, F, /*saturate=*/true, codes);
}
template <FP8Format F>
void fp8_dequant(const uint8_t* codes, int64_t n, float scale, uint8_t, float* out) {
  fp8_dequantize_row(codes, n, scale, F, out);
}

// ---- 4-bit ------------------------------------------------------------------
/// NF4 and bitsandbytes FP4: the block's absmax (codebooks normalised to a largest magnitude of 1).
void absmax_params(const float* w, int64_t n, float* scale, uint8_t* zero) {
  *scale = absmax(w, n);
  *zero = 0;
}
void fp4_params(const float* w, int64_t n, float* scale, uint8_t* zero) {
  *scale = absmax(w, n) / kE2M1Max;
  *zero = 0;
}
void int4_sym_params(const float* w, int64_t n, float* scale, uint8_t* zero) {
  *scale = int4_sym_scale(absmax(w, n));
  *zero = 0;
}
void int4_asym_block_params(const float* w, int64_t n, float* scale, uint8_t* zero) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  int4_asym_params(lo, hi, scale, zero);
}

template <WeightFormat F>
uint8_t encode4(float w, float scale, uint8_t zero) {
  if constexpr (F == WeightFormat::NF4) {
    return scale != 0.0f ? nf4_encode(w / scale) : uint8_t(7);
  } else if constexpr (F == WeightFormat::FP4) {
    return scale != 0.0f ? fp4_encode(w / scale) : uint8_t(0);
  } else if constexpr (F == WeightFormat::FP4_BNB) {
    // bitsandbytes' kQuantizeBlockwise multiplies by the F32 reciprocal of the absmax (not w / absmax).
    return scale != 0.0f ? fp4_bnb_encode(w * (1.0f / scale)) : uint8_t(0);
  } else if constexpr (F == WeightFormat::INT4_SYM) {
    return int4_sym_encode(w, scale);
  } else {
    return int4_asym_encode(w, scale, zero);
  }
}

template <WeightFormat F>
void quant4(const float* w, int64_t n, float scale, uint8_t zero, uint8_t* codes) {
  for (int64_t i = 0; i < n; i += 2) {
    const uint8_t lo = encode4<F>(w[i], scale, zero);
    const uint8_t hi = i + 1 < n ? encode4<F>(w[i + 1], scale, zero) : uint8_t(0);
    codes[i >> 1] = uint8_t(lo | (hi << 4));
  }
}

template <WeightFormat F>
void dequant4(const uint8_t* codes, int64_t n, float scale, uint8_t zero, float* out) {
  float lut[16];
  q4_block_lut(F, scale, zero, lut);
  for (int64_t i = 0; i < n; ++i) out[i] = lut[get_nibble(codes, i)];
}

constexpr int kF32Bytes = 4;

const std::array<FormatTraits, 8> kTraits = {{
    {WeightFormat::INT8, "int8", 8, 0, 0, 0, kF32Bytes, 0, int8_params, int8_quant, int8_dequant},
    {WeightFormat::FP8_E4M3, "fp8_e4m3", 8, 0, 0, 0, kF32Bytes, 0, fp8_params<FP8Format::E4M3>,
     fp8_quant<FP8Format::E4M3>, fp8_dequant<FP8Format::E4M3>},
    {WeightFormat::FP8_E5M2, "fp8_e5m2", 8, 0, 0, 0, kF32Bytes, 0, fp8_params<FP8Format::E5M2>,
     fp8_quant<FP8Format::E5M2>, fp8_dequant<FP8Format::E5M2>},
    {WeightFormat::NF4, "nf4", 4, 64, 32, 256, kF32Bytes, 0, absmax_params, quant4<WeightFormat::NF4>,
     dequant4<WeightFormat::NF4>},
    {WeightFormat::FP4, "fp4", 4, 64, 32, 256, kF32Bytes, 0, fp4_params, quant4<WeightFormat::FP4>,
     dequant4<WeightFormat::FP4>},
    {WeightFormat::INT4_SYM, "int4_sym", 4, 128, 32, 256, kF32Bytes, 0, int4_sym_params,
     quant4<WeightFormat::INT4_SYM>, dequant4<WeightFormat::INT4_SYM>},
    {WeightFormat::INT4_ASYM, "int4_asym", 4, 128, 32, 256, kF32Bytes, 1, int4_asym_block_params,
     quant4<WeightFormat::INT4_ASYM>, dequant4<WeightFormat::INT4_ASYM>},
    {WeightFormat::FP4_BNB, "fp4_bnb", 4, 64, 32, 256, kF32Bytes, 0, absmax_params, quant4<WeightFormat::FP4_BNB>,
     dequant4<WeightFormat::FP4_BNB>},
}};

}  // namespace

const FormatTraits& format_traits(WeightFormat f) { return kTraits[size_t(f)]; }

}  // namespace kq::formats
