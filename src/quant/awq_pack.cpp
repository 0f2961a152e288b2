// kq INT4 weights into AutoAWQ's GEMM tensors (see awq_pack.hpp).
#include "quant/awq_pack.hpp"

#include <cmath>
#include <vector>

#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "quant/hub_int4.hpp"

namespace kq {

AwqGemmTensors pack_awq_gemm(const PackedWeight& w, const std::string& layer, std::span<const float> row_divisors,
                             GptqScaleRounding* rounding) {
  const formats::WeightFormat f = w.weight_format();
  const bool sym = f == formats::WeightFormat::INT4_SYM;
  if (!sym && f != formats::WeightFormat::INT4_ASYM)
    raise<InvalidArgument>("layer '{}' is {}, not INT4: AutoAWQ stores integer 4-bit groups", layer, w.spec.name());
  const int64_t N = w.N, K = w.K, B = w.block, G = w.blocks_per_row;
  if (N % 8 != 0)
    raise<InvalidArgument>("layer '{}' of weight [{}, {}] cannot be written as AutoAWQ: its out_features is not a "
                           "multiple of 8 (AutoAWQ packs eight 4-bit codes and zero points per int32 along the "
                           "output channels)",
                           layer, N, K);
  if (B < 1 || K % B != 0 || G != K / B)
    raise<InvalidArgument>("layer '{}' of weight [{}, {}] cannot be written as AutoAWQ: its in_features is not a "
                           "multiple of the group size {} (AutoAWQ's layers hold whole groups, K / group_size)",
                           layer, N, K, B);
  if (!row_divisors.empty() && int64_t(row_divisors.size()) != N)
    raise<InvalidArgument>("layer '{}': {} row divisors for {} output channels", layer, row_divisors.size(), N);
  for (size_t n = 0; n < row_divisors.size(); ++n)
    if (!std::isfinite(row_divisors[n]) || !(row_divisors[n] > 0.0f))
      raise<InvalidArgument>("layer '{}': row divisor {} of output channel {} is not finite and > 0", layer,
                             row_divisors[n], n);

  AwqGemmTensors t;
  t.qweight = Tensor::empty(DType::I32, {K, N / 8});
  t.qzeros = Tensor::empty(DType::I32, {G, N / 8});
  int32_t* qw = t.qweight.mutable_data<int32_t>();
  int32_t* qz = t.qzeros.mutable_data<int32_t>();

  // Codes: kq holds row n's codes two per byte along K (low nibble = even k); AutoAWQ packs eight output
  // channels per int32 along N, channel 8c + kAwqPackOrder[i] in nibble i.
  for (int64_t c = 0; c < N / 8; ++c) {
    const uint8_t* rows[8];
    for (int i = 0; i < 8; ++i) rows[i] = w.row_codes(8 * c + kAwqPackOrder[i]);
    for (int64_t k = 0; k < K; ++k) {
      uint32_t word = 0;
      for (int i = 0; i < 8; ++i) word |= uint32_t((rows[i][k / 2] >> (4 * (k % 2))) & 0xFu) << (4 * i);
      qw[k * (N / 8) + c] = int32_t(word);
    }
  }
  // Scales [G, N] (transposed from kq's [N, G]), each divided by its row's divisor, then rounded to FP16.
  t.scales = hub_f16_group_scales(w, layer, "AutoAWQ", row_divisors, rounding);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t c = 0; c < N / 8; ++c) {
      uint32_t word = 0;
      for (int i = 0; i < 8; ++i) {
        const int64_t n = 8 * c + kAwqPackOrder[i];
        word |= uint32_t(sym ? 8 : w.zero(n, g)) << (4 * i);
      }
      qz[g * (N / 8) + c] = int32_t(word);
    }
  return t;
}

}  // namespace kq
