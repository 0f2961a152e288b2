#include "quant/packed_weight.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "formats/double_quant.hpp"
#include "kq/error.hpp"

namespace kq {

using formats::WeightFormat;

formats::WeightFormat weight_format_of(const QuantSpec& spec) {
  switch (spec.format) {
    case PrecisionFormat::INT8: return WeightFormat::INT8;
    case PrecisionFormat::FP8_E4M3: return WeightFormat::FP8_E4M3;
    case PrecisionFormat::FP8_E5M2: return WeightFormat::FP8_E5M2;
    case PrecisionFormat::NF4: return WeightFormat::NF4;
    case PrecisionFormat::FP4: return WeightFormat::FP4;
    case PrecisionFormat::FP4_BNB: return WeightFormat::FP4_BNB;
    case PrecisionFormat::INT4: return spec.symmetric ? WeightFormat::INT4_SYM : WeightFormat::INT4_ASYM;
    default: raise<InvalidArgument>("{} is not a quantized weight format", precision_format_name(spec.format));
  }
}

WeightFormat PackedWeight::weight_format() const { return weight_format_of(spec); }

size_t PackedWeight::bytes() const {
  size_t b = 0;
  for (const Tensor* t : {&codes, &scales, &zeros, &dq_codes, &dq_scales, &dq_mean})
    if (t->defined()) b += t->nbytes();
  return b;
}

const uint8_t* PackedWeight::row_codes(int64_t n) const {
  return codes.data<uint8_t>() + n * formats::row_code_bytes(weight_format(), K);
}

void PackedWeight::row_scales(int64_t n, float* out) const {
  const int64_t nb = blocks_per_row;
  if (dq_codes.defined()) {
    // Groups of 256 cross row boundaries: decode element by element with its own group.
    const int8_t* q = dq_codes.data<int8_t>();
    const float* c = dq_scales.data<float>();
    const float* m = dq_mean.data<float>();
    const float mean = m ? *m : 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t i = n * nb + b;
      out[b] = formats::dq_decode(q[i], c[i / formats::kDqGroup], mean);
    }
    return;
  }
  const float* s = scales.data<float>();
  if (!s) return;
  if (scales.numel() == 1) {
    out[0] = s[0];
    return;
  }
  for (int64_t b = 0; b < nb; ++b) out[b] = s[n * nb + b];
}

uint8_t PackedWeight::zero(int64_t n, int64_t b) const {
  return zeros.defined() ? zeros.data<uint8_t>()[n * blocks_per_row + b] : uint8_t(0);
}

Tensor PackedWeight::dequantize() const {
  const formats::FormatTraits& tr = formats::format_traits(weight_format());
  Tensor out = Tensor::empty(DType::F32, {N, K});
  float* o = out.mutable_data<float>();
  const int64_t bk = tr.code_bits == 8 ? K : block;  // elements per scale within a row
  std::vector<float> s(static_cast<size_t>(blocks_per_row));
  for (int64_t n = 0; n < N; ++n) {
    row_scales(n, s.data());
    const uint8_t* rc = row_codes(n);
    for (int64_t b = 0; b < blocks_per_row; ++b) {
      const int64_t k0 = b * bk;
      const int64_t len = std::min(bk, K - k0);
      const uint8_t* bc = rc + (tr.code_bits == 8 ? k0 : k0 / 2);
      tr.dequantize_block(bc, len, s[size_t(b)], zero(n, b), o + n * K + k0);
    }
  }
  return out;
}

}  // namespace kq
