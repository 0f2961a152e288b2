// kq INT4 weights into AutoGPTQ's v1 tensors (see gptq_pack.hpp).
#include "quant/gptq_pack.hpp"

#include <cmath>
#include <vector>

#include "kq/dtype.hpp"
#include "kq/error.hpp"

namespace kq {

float gptq_f16_scale(float scale) { return f16_to_f32(f32_to_f16(scale)); }

Tensor hub_f16_group_scales(const PackedWeight& w, const std::string& layer, const char* format,
                            std::span<const float> row_divisors, GptqScaleRounding* rounding) {
  const int64_t N = w.N, G = w.blocks_per_row;
  Tensor scales = Tensor::empty(DType::F16, {G, N});
  uint16_t* sc = scales.mutable_data<uint16_t>();
  std::vector<float> s(static_cast<size_t>(G));
  int64_t flushed = 0;
  for (int64_t n = 0; n < N; ++n) {
    w.row_scales(n, s.data());
    const float d = row_divisors.empty() ? 1.0f : row_divisors[size_t(n)];
    for (int64_t g = 0; g < G; ++g) {
      const float v = s[size_t(g)] / d;
      const uint16_t h = f32_to_f16(v);
      if (!std::isfinite(f16_to_f32(h)))
        raise<InvalidArgument>("layer '{}': scale {} of group {}, output channel {} is beyond FP16's range (largest "
                               "65504); {} stores FP16 scales, so this layer cannot be written as {}",
                               layer, v, g, n, format, format);
      if (v != 0.0f && f16_to_f32(h) == 0.0f) ++flushed;
      sc[g * N + n] = h;
    }
  }
  if (rounding) rounding->flushed = flushed;
  return scales;
}

GptqV1Tensors pack_gptq_v1(const PackedWeight& w, const std::string& layer, GptqScaleRounding* rounding) {
  const formats::WeightFormat f = w.weight_format();
  const bool sym = f == formats::WeightFormat::INT4_SYM;
  if (!sym && f != formats::WeightFormat::INT4_ASYM)
    raise<InvalidArgument>("layer '{}' is {}, not INT4 (int4-gB or int4-gB-asym): GPTQ stores integer 4-bit groups",
                           layer, w.spec.name());
  const int64_t N = w.N, K = w.K, B = w.block, G = w.blocks_per_row;
  if (N % 8 != 0 || K % 8 != 0)
    raise<InvalidArgument>("layer '{}' of weight [{}, {}] cannot be written as GPTQ: its {} is not a multiple of 8 "
                           "(GPTQ packs eight 4-bit codes per int32 along the input channels, and eight zero points "
                           "along the output channels)",
                           layer, N, K, N % 8 != 0 ? "out_features" : "in_features");
  if (B < 1 || G != (K + B - 1) / B)
    raise<InvalidArgument>("layer '{}': group {} and {} groups per row do not fit K = {}", layer, B, G, K);

  GptqV1Tensors t;
  t.qweight = Tensor::empty(DType::I32, {K / 8, N});
  t.qzeros = Tensor::empty(DType::I32, {G, N / 8});
  t.g_idx = Tensor::empty(DType::I32, {K});
  int32_t* qw = t.qweight.mutable_data<int32_t>();
  int32_t* qz = t.qzeros.mutable_data<int32_t>();
  int32_t* gi = t.g_idx.mutable_data<int32_t>();

  // Codes: kq's packed row bytes are GPTQ's int32s along K (low nibble = even k), row by row.
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* row = w.row_codes(n);
    for (int64_t r = 0; r < K / 8; ++r) {
      const uint32_t word = uint32_t(row[4 * r]) | uint32_t(row[4 * r + 1]) << 8 | uint32_t(row[4 * r + 2]) << 16 |
                            uint32_t(row[4 * r + 3]) << 24;
      qw[r * N + n] = int32_t(word);
    }
  }
  // Scales [G, N] (transposed from kq's [N, G]) in FP16; zero points likewise.
  t.scales = hub_f16_group_scales(w, layer, "GPTQ", {}, rounding);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t c = 0; c < N / 8; ++c) {
      uint32_t word = 0;
      for (int i = 0; i < 8; ++i) {
        const int64_t n = 8 * c + i;
        const int z = sym ? 8 : int(w.zero(n, g));
        if (z == 0)
          raise<InvalidArgument>("layer '{}': group {}, output channel {} has zero point 0, which GPTQ v1 cannot "
                                 "store (it stores zero point − 1, and AutoGPTQ's −1 wraps and damages the packed "
                                 "word); quantize with the symmetric mode {} instead",
                                 layer, g, n, fmt::format("int4-g{}", B));
        word |= uint32_t(z - 1) << (4 * i);
      }
      qz[g * (N / 8) + c] = int32_t(word);
    }
  for (int64_t k = 0; k < K; ++k) gi[k] = int32_t(k / B);
  return t;
}

}  // namespace kq
