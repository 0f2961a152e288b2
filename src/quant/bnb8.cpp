// bitsandbytes 8-bit (LLM.int8()) layers into kq's INT8 format (see bnb8.hpp).
#include "quant/bnb8.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kq/error.hpp"

namespace kq {

PackedWeight import_bnb_int8(const TensorGetter& get, const std::string& prefix, bool w8a8, int64_t N, int64_t K) {
  if (N < 1 || K < 1) raise<InvalidArgument>("'{}': weight shape [{}, {}] must have N, K >= 1", prefix, N, K);
  auto need = [&](const std::string& name, DType dt, const Shape& shape) {
    Tensor t = get(name);
    if (!t.defined()) raise<FormatError>("tensor '{}' is missing (needed by a bitsandbytes 8-bit layer)", name);
    if (t.dtype() != dt || t.shape() != shape)
      raise<FormatError>("tensor '{}': expected {} {} for a bitsandbytes 8-bit layer [{}, {}], got {} {}", name,
                         dtype_name(dt), shape_str(shape), N, K, dtype_name(t.dtype()), shape_str(t.shape()));
    if (reinterpret_cast<uintptr_t>(t.raw()) % dtype_size(dt) != 0) t = t.clone();
    return t;
  };
  const std::string format_name = prefix + ".weight_format";
  if (const Tensor f = get(format_name); f.defined()) {
    if (f.dtype() != DType::U8 || f.numel() != 1)
      raise<FormatError>("tensor '{}': expected U8 [] (the code layout), got {} {}", format_name,
                         dtype_name(f.dtype()), shape_str(f.shape()));
    const unsigned v = f.data<uint8_t>()[0];
    if (v != 0)
      raise<FormatError>("tensor '{}': code layout {} ({}) is not supported: kq reads the row-major layout (0) that "
                         "bitsandbytes writes since version 0.45",
                         format_name, v, v == 1 ? "col32" : v == 2 ? "col_turing" : v == 3 ? "col_ampere" : "unknown");
  }
  const Tensor codes = need(prefix + ".weight", DType::I8, {N, K});
  const Tensor scb = need(prefix + ".SCB", DType::F32, {N});

  PackedWeight p;
  p.spec = parse_quant_mode(w8a8 ? "int8" : "int8-wo");
  p.N = N;
  p.K = K;
  p.block = K;
  p.blocks_per_row = 1;
  p.codes = codes.clone();
  p.scales = Tensor::empty(DType::F32, {N});
  const float* absmax = scb.data<float>();
  float* scale = p.scales.mutable_data<float>();
  int8_t* q = p.codes.mutable_data<int8_t>();
  for (int64_t n = 0; n < N; ++n) {
    const float a = absmax[n];
    if (!std::isfinite(a) || a < 0.0f)
      raise<FormatError>("tensor '{}.SCB': row {} has {} absmax {}", prefix, n, std::isfinite(a) ? "negative" : "non-finite",
                         a);
    // LLM.int8() rounds w · 127 / absmax: codes in [-127, 127]; -128 would dequantize beyond the row's absmax.
    const int8_t* row = q + n * K;
    if (const int8_t* bad = std::find(row, row + K, int8_t(-128)); bad != row + K)
      raise<FormatError>("tensor '{}.weight': code -128 at [{}, {}] (bitsandbytes 8-bit codes are in [-127, 127]: "
                         "a damaged file)",
                         prefix, n, bad - row);
    scale[n] = a * kBnbInt8Dequant;
    if (scale[n] == 0.0f) {  // an all-zero row (or an absmax below 2^-142, whose values round to 0 anyway)
      for (int64_t k = 0; k < K; ++k)
        if (a == 0.0f && q[n * K + k] != 0)
          raise<FormatError>("tensor '{}.weight': row {} has code {} at column {} but its absmax ('{}.SCB') is 0",
                             prefix, n, int(q[n * K + k]), k, prefix);
      std::memset(q + n * K, 0, size_t(K));
      scale[n] = 1.0f;
    }
  }
  return p;
}

}  // namespace kq
