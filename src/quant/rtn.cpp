// Round-to-nearest quantization of a weight matrix into a PackedWeight.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "formats/double_quant.hpp"
#include "kq/error.hpp"
#include "quant/packed_weight.hpp"

namespace kq {
namespace {

Tensor as_f32_matrix(const Tensor& w) {
  if (!w.defined()) raise<InvalidArgument>("quantize_weight: weight tensor is undefined");
  if (w.ndim() != 2 || w.dim(0) < 1 || w.dim(1) < 1)
    raise<InvalidArgument>("quantize_weight: weight must be 2-D [N, K] with N, K >= 1, got {}", shape_str(w.shape()));
  Tensor f = w.dtype() == DType::F32 ? w : w.to_f32();
  if (reinterpret_cast<uintptr_t>(f.raw()) % alignof(float) != 0) f = f.clone();
  const float* p = f.data<float>();
  const int64_t K = f.dim(1);
  for (int64_t i = 0; i < f.numel(); ++i)
    if (!std::isfinite(p[i]))
      raise<InvalidArgument>("quantize_weight: weight has a non-finite value {} at [{}, {}]", p[i], i / K, i % K);
  return f;
}

}  // namespace

PackedWeight quantize_weight(const Tensor& w_in, const QuantSpec& spec) {
  validate_quant_spec(spec);
  if (spec.awq)
    raise<InvalidArgument>(
        "quantize_weight: {} needs calibration activations (AWQ searches its input-channel scales on them); "
        "quantize the scaled weight with the plain int4 spec, or use quantize_model with calibration tokens",
        spec.name());
  const Tensor w = as_f32_matrix(w_in);
  const float* wp = w.data<float>();
  const int64_t N = w.dim(0), K = w.dim(1);
  const formats::WeightFormat wf = weight_format_of(spec);
  const formats::FormatTraits& tr = formats::format_traits(wf);

  PackedWeight p;
  p.spec = spec;
  p.N = N;
  p.K = K;
  uint8_t unused_zero = 0;

  if (tr.code_bits == 8) {
    const bool per_tensor = spec.weight_scales == ScaleGranularity::PerTensor;
    p.block = per_tensor ? N * K : K;
    p.blocks_per_row = 1;
    p.codes = Tensor::empty(wf == formats::WeightFormat::INT8 ? DType::I8 : DType::U8, {N, K});
    p.scales = Tensor::empty(DType::F32, {per_tensor ? 1 : N});
    float* s = p.scales.mutable_data<float>();
    uint8_t* c = p.codes.mutable_data<uint8_t>();
    if (per_tensor) tr.block_params(wp, N * K, &s[0], &unused_zero);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      uint8_t z = 0;
      if (!per_tensor) tr.block_params(wp + n * K, K, &s[n], &z);
      tr.quantize_block(wp + n * K, K, s[per_tensor ? 0 : n], 0, c + n * K);
    }
    return p;
  }

  // 4-bit block formats.
  const int64_t B = spec.block_size;
  const int64_t nb = formats::blocks_per_row(K, B);
  const int64_t total = N * nb;
  p.block = B;
  p.blocks_per_row = nb;
  std::vector<float> raw(static_cast<size_t>(total));
  std::vector<uint8_t> zero(static_cast<size_t>(total), 0);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t k0 = b * B, len = std::min(B, K - k0);
      tr.block_params(wp + n * K + k0, len, &raw[size_t(n * nb + b)], &zero[size_t(n * nb + b)]);
    }

  std::vector<float> final_scales;
  if (spec.double_quant) {
    p.dq_codes = Tensor::empty(DType::I8, {N, nb});
    p.dq_scales = Tensor::empty(DType::F32, {(total + formats::kDqGroup - 1) / formats::kDqGroup});
    p.dq_mean = Tensor::empty(DType::F32, {1});
    const float mean = formats::double_quantize(raw.data(), total, p.dq_codes.mutable_data<int8_t>(),
                                                p.dq_scales.mutable_data<float>());
    p.dq_mean.mutable_data<float>()[0] = mean;
    final_scales.resize(size_t(total));
    formats::double_dequantize(p.dq_codes.data<int8_t>(), p.dq_scales.data<float>(), mean, total,
                               final_scales.data());
  } else {
    p.scales = Tensor::empty(DType::F32, {N, nb});
    std::copy(raw.begin(), raw.end(), p.scales.mutable_data<float>());
    final_scales = std::move(raw);
  }
  if (wf == formats::WeightFormat::INT4_ASYM) {
    p.zeros = Tensor::empty(DType::U8, {N, nb});
    std::copy(zero.begin(), zero.end(), p.zeros.mutable_data<uint8_t>());
  }

  const int64_t row_bytes = (K + 1) / 2;
  p.codes = Tensor::zeros(DType::U8, {N, row_bytes});
  uint8_t* c = p.codes.mutable_data<uint8_t>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t k0 = b * B, len = std::min(B, K - k0);
      const size_t i = size_t(n * nb + b);
      tr.quantize_block(wp + n * K + k0, len, final_scales[i], zero[i], c + n * row_bytes + k0 / 2);
    }
  return p;
}

}  // namespace kq
