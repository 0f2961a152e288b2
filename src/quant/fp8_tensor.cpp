// Tensor-level FP8 conversion (quantize_to_fp8 / dequantize_from_fp8).
#include <cmath>
#include <cstdint>

#include "formats/fp8.hpp"
#include "kq/error.hpp"
#include "kq/quantize.hpp"

namespace kq {

Fp8Tensor quantize_to_fp8(const Tensor& x_in, const FP8Config& cfg) {
  if (!x_in.defined()) raise<InvalidArgument>("quantize_to_fp8: input tensor is undefined");
  if (cfg.format != FP8Format::E4M3 && cfg.format != FP8Format::E5M2)
    raise<InvalidArgument>("quantize_to_fp8: FP8Config.format {} is neither E4M3 nor E5M2", int(cfg.format));
  const ScaleGranularity g = cfg.weight_scales;
  if (g != ScaleGranularity::PerTensor && g != ScaleGranularity::PerChannel && g != ScaleGranularity::PerToken)
    raise<InvalidArgument>("quantize_to_fp8: scale granularity {} is not supported (per-tensor, per-channel, per-token)",
                           scale_granularity_name(g));
  if (g != ScaleGranularity::PerTensor && x_in.ndim() < 1)
    raise<InvalidArgument>("quantize_to_fp8: {} scales need a tensor of at least 1 dimension",
                           scale_granularity_name(g));
  const DType dt = x_in.dtype();
  if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16 && dt != DType::F64)
    raise<InvalidArgument>("quantize_to_fp8: the input tensor's dtype is {}; expected F32, F16, BF16 or F64",
                           dtype_name(dt));
  Tensor x = dt == DType::F32 ? x_in : x_in.to_f32();
  if (reinterpret_cast<uintptr_t>(x.raw()) % alignof(float) != 0) x = x.clone();
  const int64_t rows = g == ScaleGranularity::PerTensor ? 1 : x.dim(0);
  const int64_t inner = rows > 0 ? x.numel() / rows : 0;

  Fp8Tensor t;
  t.format = cfg.format;
  t.granularity = g;
  t.codes = Tensor::empty(DType::U8, x.shape());
  t.scales = Tensor::empty(DType::F32, {rows});
  const float* xp = x.data<float>();
  uint8_t* c = t.codes.mutable_data<uint8_t>();
  float* s = t.scales.mutable_data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    s[r] = formats::fp8_scale_for(formats::finite_absmax(xp + r * inner, inner), cfg.format);
    formats::fp8_quantize_row(xp + r * inner, inner, s[r], cfg.format, cfg.saturate, c + r * inner);
  }
  return t;
}

Tensor dequantize_from_fp8(const Fp8Tensor& t) {
  if (t.format != FP8Format::E4M3 && t.format != FP8Format::E5M2)
    raise<InvalidArgument>("dequantize_from_fp8: format {} is neither E4M3 nor E5M2", int(t.format));
  if (!t.codes.defined() || t.codes.dtype() != DType::U8)
    raise<InvalidArgument>("dequantize_from_fp8: codes must be a U8 tensor");
  if (!t.scales.defined() || t.scales.dtype() != DType::F32 || t.scales.ndim() != 1)
    raise<InvalidArgument>("dequantize_from_fp8: scales must be a 1-D F32 tensor");
  const bool per_tensor = t.granularity == ScaleGranularity::PerTensor;
  if (!per_tensor && t.granularity != ScaleGranularity::PerChannel && t.granularity != ScaleGranularity::PerToken)
    raise<InvalidArgument>("dequantize_from_fp8: granularity {} is not supported", scale_granularity_name(t.granularity));
  if (!per_tensor && t.codes.ndim() < 1)
    raise<InvalidArgument>("dequantize_from_fp8: {} scales need codes of at least 1 dimension",
                           scale_granularity_name(t.granularity));
  const int64_t rows = per_tensor ? 1 : t.codes.dim(0);
  if (t.scales.dim(0) != rows)
    raise<InvalidArgument>("dequantize_from_fp8: {} scales of shape {} do not match codes {}",
                           scale_granularity_name(t.granularity), shape_str(t.scales.shape()),
                           shape_str(t.codes.shape()));
  Tensor scales = t.scales;
  if (reinterpret_cast<uintptr_t>(scales.raw()) % alignof(float) != 0) scales = scales.clone();
  for (int64_t r = 0; r < rows; ++r) {
    const float s = scales.data<float>()[r];
    if (!(s > 0.0f) || !std::isfinite(s))  // NaN / Inf / sign-flipped / all-zero outputs otherwise
      raise<InvalidArgument>("dequantize_from_fp8: Fp8Tensor::scales[{}] = {} must be finite and positive", r, s);
  }
  Tensor out = Tensor::empty(DType::F32, t.codes.shape());
  const int64_t inner = rows > 0 ? t.codes.numel() / rows : 0;
  for (int64_t r = 0; r < rows; ++r)
    formats::fp8_dequantize_row(t.codes.data<uint8_t>() + r * inner, inner, scales.data<float>()[r], t.format,
                                out.mutable_data<float>() + r * inner);
  return out;
}

}  // namespace kq
