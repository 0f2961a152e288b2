// bitsandbytes NF4 and FP4 layers into kq's NF4 and FP4_BNB formats (see bnb4.hpp).
#include "quant/bnb4.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

#include "formats/fp4_bnb.hpp"
#include "formats/nf4.hpp"
#include "formats/traits.hpp"
#include "kq/error.hpp"

namespace kq {

PackedWeight import_bnb_4bit(const TensorGetter& get, const std::string& weight, const Bnb4State& st, int64_t N,
                             int64_t K) {
  if (N < 1 || K < 1) raise<InvalidArgument>("'{}': weight shape [{}, {}] must have N, K >= 1", weight, N, K);
  const char* type = st.fp4 ? "FP4" : "NF4";
  const std::string state = weight + ".quant_state.bitsandbytes__" + bnb4_type_name(st.fp4);
  if (st.rows != N || st.cols != K)
    raise<FormatError>("tensor '{}': shape [{}, {}] in the quant state, but the layer is [{}, {}]", state, st.rows,
                       st.cols, N, K);
  // The quant state is JSON (any integer): the range first, as the block counts below add blocksize - 1 to the
  // element count in int64. bitsandbytes' kernels take both sizes as C ints (its blocksizes are 32 to 4096).
  constexpr int64_t kMaxBlocksize = std::numeric_limits<int32_t>::max();
  for (const auto& [key, value, used] : {std::tuple{"blocksize", st.blocksize, true},
                                         std::tuple{"nested_blocksize", st.nested_blocksize, st.nested}})
    if (used && (value < 1 || value > kMaxBlocksize))
      raise<FormatError>("tensor '{}': {} {} is out of range (1 to {}, a C int as in bitsandbytes' kernels)", state,
                         key, value, kMaxBlocksize);
  if (!std::isfinite(st.nested_offset))
    raise<FormatError>("tensor '{}': nested_offset {} is not finite", state, st.nested_offset);
  // kq's block: a power of two in [32, 256] dividing blocksize and K (each kq block in one bitsandbytes block,
  // none across rows).
  int64_t B = 256;
  while (B >= 32 && (st.blocksize % B != 0 || K % B != 0)) B /= 2;
  if (B < 32 || K % 2 != 0)
    raise<FormatError>("tensor '{}': blocksize {} over rows of K = {} has no kq block size (a power of two in "
                       "[32, 256] dividing both, K even)",
                       state, st.blocksize, K);
  const int64_t total = N * K, nb_bnb = (total + st.blocksize - 1) / st.blocksize;
  auto need = [&](const std::string& name, DType dt, const Shape& shape) {
    Tensor t = get(name);
    if (!t.defined()) raise<FormatError>("tensor '{}' is missing (needed by a bitsandbytes {} layer)", name, type);
    if (t.dtype() != dt || t.shape() != shape)
      raise<FormatError>("tensor '{}': expected {} {} for a bitsandbytes {} layer [{}, {}] with blocksize {}, got "
                         "{} {}",
                         name, dtype_name(dt), shape_str(shape), type, N, K, st.blocksize, dtype_name(t.dtype()),
                         shape_str(t.shape()));
    if (reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(dt) != 0) t = t.clone();
    return t;
  };
  const Tensor codes = need(weight, DType::U8, {(total + 1) / 2, 1});
  // The code values kq's format decodes with. Compared by value: bitsandbytes saves FP4's code 8 as +0 (its
  // table's "-0" is a Python integer) where its kernel, and kq's kFP4Bnb, give -0; a NaN never matches.
  const float* values = st.fp4 ? formats::kFP4Bnb.data() : formats::kNF4.data();
  const Tensor qmap = need(weight + ".quant_map", DType::F32, {16});
  for (int c = 0; c < 16; ++c)
    if (!(qmap.data<float>()[c] == values[c]))
      raise<FormatError>("tensor '{}.quant_map': value {} at index {} is not bitsandbytes {}'s {} (kq converts "
                         "the code values of bitsandbytes' NF4 and FP4 only)",
                         weight, qmap.data<float>()[c], c, type, values[c]);

  // bitsandbytes' absmax per block, decoded from the nested 8-bit codes as dequantize_blockwise does.
  std::vector<float> absmax(static_cast<size_t>(nb_bnb));
  if (st.nested) {
    const Tensor a = need(weight + ".absmax", DType::U8, {nb_bnb});
    const int64_t n2 = (nb_bnb + st.nested_blocksize - 1) / st.nested_blocksize;
    const Tensor a2 = need(weight + ".nested_absmax", DType::F32, {n2});
    const Tensor code2 = need(weight + ".nested_quant_map", DType::F32, {256});
    for (int64_t j = 0; j < nb_bnb; ++j) {
      float v = code2.data<float>()[a.data<uint8_t>()[j]] * a2.data<float>()[j / st.nested_blocksize];
      v += st.nested_offset;  // a separate rounding, as bitsandbytes adds the offset after the product
      absmax[size_t(j)] = v;
    }
  } else {
    const Tensor a = need(weight + ".absmax", DType::F32, {nb_bnb});
    std::memcpy(absmax.data(), a.data<float>(), absmax.size() * sizeof(float));
  }
  for (int64_t j = 0; j < nb_bnb; ++j)
    if (!std::isfinite(absmax[size_t(j)]) || absmax[size_t(j)] < 0.0f)
      raise<FormatError>("tensor '{}.absmax': block {} has {} absmax {}{}", weight, j,
                         std::isfinite(absmax[size_t(j)]) ? "negative" : "non-finite", absmax[size_t(j)],
                         st.nested ? " (decoded from the nested codes)" : "");

  PackedWeight p;
  p.spec = parse_quant_mode(fmt::format("{}-b{}-nodq", st.fp4 ? "fp4-bnb" : "nf4", B));
  p.N = N;
  p.K = K;
  p.block = B;
  p.blocks_per_row = formats::blocks_per_row(K, B);
  const int64_t nb = p.blocks_per_row, row_bytes = K / 2;
  p.codes = Tensor::empty(DType::U8, {N, row_bytes});
  p.scales = Tensor::empty(DType::F32, {N, nb});
  const uint8_t* src = codes.data<uint8_t>();
  uint8_t* dst = p.codes.mutable_data<uint8_t>();
  float* s = p.scales.mutable_data<float>();
#pragma omp parallel for schedule(static) if (total > (1 << 20))
  for (int64_t n = 0; n < N; ++n) {
    // K even: element n·K + k has k's parity, so byte j of the row swaps its nibbles (high first -> low first).
    const uint8_t* in = src + n * row_bytes;
    uint8_t* out = dst + n * row_bytes;
    for (int64_t j = 0; j < row_bytes; ++j) out[j] = uint8_t((in[j] >> 4) | (in[j] << 4));
    for (int64_t b = 0; b < nb; ++b) s[n * nb + b] = absmax[size_t((n * K + b * B) / st.blocksize)];
  }
  return p;
}

}  // namespace kq
