#pragma once
// A test-side packer of bitsandbytes 4-bit NF4 and FP4 layers as transformers saves them (Params4bit + packed
// QuantState), written from bitsandbytes' published layout, not from kq's loader: W [N, K] flattened row-major,
// two codes per byte with the even element in the HIGH nibble, one absmax per block of `blocksize` elements
// (or, nested, U8 codes into a 256-entry map times a per-256-blocks absmax plus an offset), the NF4 or FP4
// values as "quant_map", and the other fields as JSON bytes in "<w>.quant_state.bitsandbytes__nf4" (__fp4).
// And of 8-bit layers (LLM.int8(), Linear8bitLt with has_fp16_weights false): the I8 codes [N, K] as "<w>", the
// row absmax as F32 [N] "<prefix>.SCB", and the layout (0 = row-major) as a U8 scalar "<prefix>.weight_format";
// bitsandbytes dequantizes them as codes · SCB · 7.874015718698502e-3 (its int8_vectorwise_dequant).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kq/tensor.hpp"

namespace kq::testing {

/// bitsandbytes' NF4 code values (create_normal_map), as published.
inline constexpr float kBnbNf4[16] = {-1.0f,
                                      -0.6961928009986877f,
                                      -0.5250730514526367f,
                                      -0.39491748809814453f,
                                      -0.28444138169288635f,
                                      -0.18477343022823334f,
                                      -0.09105003625154495f,
                                      0.0f,
                                      0.07958029955625534f,
                                      0.16093020141124725f,
                                      0.24611230194568634f,
                                      0.33791524171829224f,
                                      0.44070982933044434f,
                                      0.5626170039176941f,
                                      0.7229568362236023f,
                                      1.0f};

/// bitsandbytes' FP4 table before normalisation, in code order, as bitsandbytes.functional.get_4bit_type("fp4")
/// lists it: [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3], where the "-0" is a Python
/// integer (so +0 once in a tensor).
inline constexpr double kBnbFp4Raw[16] = {0,  0.0625,  8,   12,  4,  6,  2,  3,
                                          +0, -0.0625, -8, -12, -4, -6, -2, -3};

/// The FP4 quant_map bitsandbytes saves: the table above as F32 divided by its absmax 12 (data /= data.abs().max()).
inline float bnb_fp4_map(int c) { return float(kBnbFp4Raw[c]) / 12.0f; }

/// Known codes and block scales of one 4-bit layer W [N, K], NF4 or (fp4) FP4.
struct BnbCodes {
  bool fp4 = false;
  int64_t N = 0, K = 0, blocksize = 64;
  std::vector<uint8_t> q;       ///< [N·K] codes, flat row-major
  bool nested = false;
  std::vector<float> absmax;    ///< [nb] (not nested)
  std::vector<uint8_t> a8;      ///< [nb] nested codes
  std::vector<float> a2;        ///< [ceil(nb / 256)] nested absmax
  std::vector<float> code2;     ///< [256] nested map
  float offset = 0.0f;
  int64_t blocks() const { return (N * K + blocksize - 1) / blocksize; }
  /// The quant_map entry of code c.
  float code_value(int c) const { return fp4 ? bnb_fp4_map(c) : kBnbNf4[c]; }
  /// "nf4" / "fp4".
  const char* type() const { return fp4 ? "fp4" : "nf4"; }
  /// Block j's absmax as bitsandbytes decodes it (F32 product, then the offset).
  float block_absmax(int64_t j) const {
    if (!nested) return absmax[size_t(j)];
    float v = code2[a8[size_t(j)]] * a2[size_t(j / 256)];
    v += offset;
    return v;
  }
};

/// Deterministic codes, absmax in [0.01, 0.1) (nested: a linear 256-entry map in [-1, 1), codes, absmax 0.02
/// per 256 blocks and offset 0.05, so every decoded absmax is positive); NF4, or FP4 with `fp4`.
inline BnbCodes bnb_codes(int64_t N, int64_t K, int64_t blocksize, bool nested, uint64_t seed, bool fp4 = false) {
  uint64_t st = seed * 0x9E3779B97F4A7C15ull + 99;
  auto next = [&] {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return st;
  };
  BnbCodes c;
  c.fp4 = fp4;
  c.N = N;
  c.K = K;
  c.blocksize = blocksize;
  c.nested = nested;
  c.q.resize(size_t(N * K));
  for (uint8_t& v : c.q) v = uint8_t(next() % 16);
  const int64_t nb = c.blocks();
  if (!nested) {
    c.absmax.resize(size_t(nb));
    for (float& a : c.absmax) a = 0.01f + 0.09f * float(next() % 10000) / 10000.0f;
  } else {
    c.code2.resize(256);
    for (int i = 0; i < 256; ++i) c.code2[size_t(i)] = -1.0f + float(i) / 128.0f;
    c.a8.resize(size_t(nb));
    for (uint8_t& v : c.a8) v = uint8_t(next() % 256);
    c.a2.assign(size_t((nb + 255) / 256), 0.02f);
    c.offset = 0.05f;
  }
  return c;
}

/// The reference dequantization F32 [N, K] as bitsandbytes' dequantize_4bit kernels compute it, before their
/// rounding to the compute dtype: NF4 value times the block's absmax in F32; FP4 (dDequantizeFP4Tree) the
/// magnitude's value times absmax, times the sign of bit 3: the quant_map product, except that code 8 gives -0.
inline Tensor bnb_reference(const BnbCodes& c) {
  Tensor w = Tensor::empty(DType::F32, {c.N, c.K});
  float* p = w.mutable_data<float>();
  for (int64_t i = 0; i < c.N * c.K; ++i) {
    const int code = c.q[size_t(i)];
    const float absmax = c.block_absmax(i / c.blocksize);
    p[i] = c.fp4 ? c.code_value(code & 7) * absmax * ((code & 8) ? -1.0f : 1.0f) : c.code_value(code) * absmax;
  }
  return w;
}

/// bitsandbytes' formula in double: table value / 12 (FP4) or NF4 value, times the block absmax, a nested one
/// decoded in double (code2 · nested absmax + offset), with no rounding before the result. F64 [N, K] as a vector.
inline std::vector<double> bnb_reference_f64(const BnbCodes& c) {
  std::vector<double> w(size_t(c.N * c.K));
  for (int64_t i = 0; i < c.N * c.K; ++i) {
    const int code = c.q[size_t(i)];
    const int64_t j = i / c.blocksize;
    const double value = c.fp4 ? kBnbFp4Raw[code] / 12.0 : double(kBnbNf4[code]);
    const double absmax = c.nested ? double(c.code2[c.a8[size_t(j)]]) * double(c.a2[size_t(j / 256)]) + c.offset
                                   : double(c.absmax[size_t(j)]);
    w[size_t(i)] = value * absmax;
  }
  return w;
}

/// The tensors of the layer under `prefix` as transformers saves a bitsandbytes Linear4bit.
inline std::map<std::string, Tensor> bnb_layer_tensors(const BnbCodes& c, const std::string& prefix) {
  const std::string w = prefix + ".weight";
  const int64_t total = c.N * c.K, nb = c.blocks();
  std::map<std::string, Tensor> out;
  Tensor packed = Tensor::empty(DType::U8, {(total + 1) / 2, 1});
  uint8_t* b = packed.mutable_data<uint8_t>();
  for (int64_t j = 0; j < (total + 1) / 2; ++j) {
    const uint8_t hi = c.q[size_t(2 * j)], lo = 2 * j + 1 < total ? c.q[size_t(2 * j + 1)] : 0;
    b[j] = uint8_t(hi << 4 | lo);
  }
  out[w] = packed;
  Tensor qmap = Tensor::empty(DType::F32, {16});
  for (int i = 0; i < 16; ++i) qmap.mutable_data<float>()[i] = c.code_value(i);
  out[w + ".quant_map"] = qmap;
  nlohmann::json state = {{"quant_type", c.type()}, {"blocksize", c.blocksize}, {"dtype", "bfloat16"},
                          {"shape", {c.N, c.K}}};
  if (!c.nested) {
    Tensor a = Tensor::empty(DType::F32, {nb});
    for (int64_t j = 0; j < nb; ++j) a.mutable_data<float>()[j] = c.absmax[size_t(j)];
    out[w + ".absmax"] = a;
  } else {
    Tensor a = Tensor::empty(DType::U8, {nb});
    for (int64_t j = 0; j < nb; ++j) a.mutable_data<uint8_t>()[j] = c.a8[size_t(j)];
    out[w + ".absmax"] = a;
    Tensor a2 = Tensor::empty(DType::F32, {int64_t(c.a2.size())});
    for (size_t j = 0; j < c.a2.size(); ++j) a2.mutable_data<float>()[j] = c.a2[j];
    out[w + ".nested_absmax"] = a2;
    Tensor m = Tensor::empty(DType::F32, {256});
    for (int i = 0; i < 256; ++i) m.mutable_data<float>()[i] = c.code2[size_t(i)];
    out[w + ".nested_quant_map"] = m;
    state["nested_blocksize"] = 256;
    state["nested_dtype"] = "float32";
    state["nested_offset"] = double(c.offset);
  }
  const std::string text = state.dump();
  Tensor s = Tensor::empty(DType::U8, {int64_t(text.size())});
  for (size_t i = 0; i < text.size(); ++i) s.mutable_data<uint8_t>()[i] = uint8_t(text[i]);
  out[w + ".quant_state.bitsandbytes__" + c.type()] = s;
  return out;
}

/// Known codes and row absmax values of one 8-bit layer W [N, K].
struct Bnb8Codes {
  int64_t N = 0, K = 0;
  std::vector<int8_t> q;   ///< [N·K] codes in [-127, 127], flat row-major
  std::vector<float> scb;  ///< [N] row absmax
};

/// Deterministic codes, absmax in [0.05, 0.5); row `zero_row` (when < N) all zeros with absmax 0, as
/// bitsandbytes leaves an all-zero row.
inline Bnb8Codes bnb8_codes(int64_t N, int64_t K, uint64_t seed, int64_t zero_row = -1) {
  uint64_t st = seed * 0x9E3779B97F4A7C15ull + 7;
  auto next = [&] {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return st;
  };
  Bnb8Codes c;
  c.N = N;
  c.K = K;
  c.q.resize(size_t(N * K));
  for (int8_t& v : c.q) v = int8_t(int(next() % 255) - 127);
  c.scb.resize(size_t(N));
  for (float& a : c.scb) a = 0.05f + 0.45f * float(next() % 10000) / 10000.0f;
  if (zero_row >= 0 && zero_row < N) {
    c.scb[size_t(zero_row)] = 0.0f;
    for (int64_t k = 0; k < K; ++k) c.q[size_t(zero_row * K + k)] = 0;
  }
  return c;
}

/// bitsandbytes' dequantization F32 [N, K]: (code · SCB) · 7.874015718698502e-3, two F32 roundings.
inline Tensor bnb8_reference(const Bnb8Codes& c) {
  Tensor w = Tensor::empty(DType::F32, {c.N, c.K});
  float* p = w.mutable_data<float>();
  for (int64_t i = 0; i < c.N * c.K; ++i) {
    const float prod = float(c.q[size_t(i)]) * c.scb[size_t(i / c.K)];
    p[i] = prod * 7.874015718698502e-3f;
  }
  return w;
}

/// The tensors of the layer under `prefix` as transformers saves a bitsandbytes Linear8bitLt.
inline std::map<std::string, Tensor> bnb8_layer_tensors(const Bnb8Codes& c, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  Tensor w = Tensor::empty(DType::I8, {c.N, c.K});
  for (int64_t i = 0; i < c.N * c.K; ++i) w.mutable_data<int8_t>()[i] = c.q[size_t(i)];
  out[prefix + ".weight"] = w;
  Tensor scb = Tensor::empty(DType::F32, {c.N});
  for (int64_t n = 0; n < c.N; ++n) scb.mutable_data<float>()[n] = c.scb[size_t(n)];
  out[prefix + ".SCB"] = scb;
  Tensor f = Tensor::empty(DType::U8, {});
  f.mutable_data<uint8_t>()[0] = 0;
  out[prefix + ".weight_format"] = f;
  return out;
}

}  // namespace kq::testing
