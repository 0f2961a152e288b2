// ISA detection, the KQ_ISA override and the per-ISA kernel tables.
#include "kernels/cpu/dispatch.hpp"

#include <cstdlib>

#include "formats/fp8.hpp"
#include "formats/int8.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"
#include "kernels/cpu/quant_kernels_avx512.hpp"
#include "kernels/cpu/quant_kernels_avx512vnni.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"

namespace kq::cpu {
namespace {

constexpr Isa kAllIsas[] = {Isa::Ref, Isa::Avx2, Isa::Avx512Vnni};

void quantize_rows_s8_ref(const float* x, int64_t M, int64_t K, int8_t* xq, float* xs, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (M > 1)
  for (int64_t m = 0; m < M; ++m) xs[m] = formats::int8_quantize_dynamic(x + m * K, K, xq + m * K);
}

void quantize_rows_fp8_ref(const float* x, int64_t M, int64_t K, FP8Format f, bool saturate, float* xd, float* xs,
                           int threads) {
  const float* table = formats::fp8_table(f).data();
#pragma omp parallel for num_threads(threads) schedule(static) if (M > 1)
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    xs[m] = formats::fp8_scale_for(formats::finite_absmax(xr, K), f);
    for (int64_t k = 0; k < K; ++k) xd[m * K + k] = table[formats::fp8_encode(xr[k] / xs[m], f, saturate)];
  }
}

uint64_t stream_read_ref(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __builtin_prefetch(p + i + 128);  // 1 KB ahead
    s0 += (p[i] + p[i + 1]) + (p[i + 2] + p[i + 3]);
    s1 += (p[i + 4] + p[i + 5]) + (p[i + 6] + p[i + 7]);
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1;
}

// W8A8 INT8 on AVX-512 VNNI machines: vpdpbusd for prefill (M > 1; 4.8x the
// AVX2 GEMM at 128 x 2048 x 2048 on 2 Sapphire Rapids cores), the AVX2 GEMV for
// decode (M = 1): it streams 23.9 GB/s from memory there against 16.2 for the
// VNNI GEMV (which also sums each weight row per call) and is faster from
// cache (52 vs 40 GB/s at 2048 x 2048). Both are bit-identical to the reference.
void gemm_s8s8_f32_rowwise_vnni_table(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M,
                                      float* y, int threads) {
  if (M == 1)
    avx2::gemm_s8s8_f32_rowwise(w, xq, xs, M, y, threads);
  else
    avx512vnni::gemm_s8s8_f32_rowwise(w, xq, xs, M, y, threads);
}

// 4-bit weights on AVX-512 machines: one `vpermps` looks up 16 codes
// (gemm_q4_avx512.cpp); prefill from avx2::kQ4SgemmMinM tokens on, and what it
// does not handle (compute dtype BF16), take the AVX2 kernel: dequantized
// panels and oneDNN sgemm, or (BF16 below the threshold) the reference.
void gemm_f32q4_f32_blockwise_avx512_table(const Q4WeightView& w, const float* x, int64_t M, float* y,
                                           int threads) {
  if (M >= avx2::kQ4SgemmMinM || !avx512::gemm_f32q4_f32_blockwise(w, x, M, y, threads))
    avx2::gemm_f32q4_f32_blockwise(w, x, M, y, threads);
}

const QuantKernels kRefTable = {Isa::Ref,
                                quantize_rows_s8_ref,
                                gemm_s8s8_f32_rowwise_ref,
                                gemm_f32s8_f32_rowwise_ref,
                                quantize_rows_fp8_ref,
                                gemm_f32fp8_f32_rowwise_ref,
                                gemm_f32q4_f32_blockwise_ref,
                                gemm_f32w16_f32_ref,
                                stream_read_ref};

const QuantKernels kAvx2Table = {Isa::Avx2,
                                 avx2::quantize_rows_s8,
                                 avx2::gemm_s8s8_f32_rowwise,
                                 avx2::gemm_f32s8_f32_rowwise,
                                 avx2::quantize_rows_fp8,
                                 avx2::gemm_f32fp8_f32_rowwise,
                                 avx2::gemm_f32q4_f32_blockwise,
                                 avx2::gemm_f32w16_f32,
                                 avx2::stream_read};

// AVX-512 VNNI: its own W8A8 INT8 GEMM and 4-bit kernels; the other entries
// are the AVX2 kernels (every AVX-512 CPU has AVX2, FMA and F16C).
const QuantKernels kAvx512VnniTable = {Isa::Avx512Vnni,
                                       avx2::quantize_rows_s8,
                                       gemm_s8s8_f32_rowwise_vnni_table,
                                       avx2::gemm_f32s8_f32_rowwise,
                                       avx2::quantize_rows_fp8,
                                       avx2::gemm_f32fp8_f32_rowwise,
                                       gemm_f32q4_f32_blockwise_avx512_table,
                                       avx2::gemm_f32w16_f32,
                                       avx2::stream_read};

/// Empty when `isa` is available, else why not.
std::string unavailable_reason(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::Ref: return {};
    case Isa::Avx2:
      if (!(f.avx2 && f.fma && f.f16c)) return "this CPU lacks AVX2, FMA or F16C";
      return {};
    case Isa::Avx512Vnni:
      if (!(f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni))
        return "this CPU lacks AVX-512F/BW/VL with VNNI";
      return {};
  }
  return "unknown ISA";
}

std::string available_list() {
  std::string s;
  for (Isa i : available_isas()) s += (s.empty() ? "" : ", ") + std::string(isa_name(i));
  return s;
}

struct Selection {
  Isa isa = Isa::Ref;
  std::string error;  ///< non-empty when KQ_ISA is invalid
};

Selection select_from_env() {
  Selection s;
  try {
    s.isa = isa_for_env_value(std::getenv("KQ_ISA"));
  } catch (const InvalidArgument& e) {
    s.error = e.what();
  }
  return s;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Ref: return "ref";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512Vnni: return "avx512vnni";
  }
  return "unknown";
}

const std::vector<IsaEnvValue>& isa_env_values() {
  static const std::vector<IsaEnvValue> values = {
      {"ref", Isa::Ref, "scalar reference quantized kernels (the test oracle)"},
      {"avx2", Isa::Avx2, "AVX2 + FMA + F16C quantized kernels"},
      {"avx512vnni", Isa::Avx512Vnni, "AVX-512 VNNI INT8 prefill GEMM, AVX-512 4-bit kernels, AVX2 for the rest"},
      {"generic", Isa::Ref, "ref, and baseline x86-64 FP32/vector ops as well"},
  };
  return values;
}

std::string isa_env_value_names(std::string_view sep) {
  std::string s;
  for (const IsaEnvValue& v : isa_env_values()) s.append(s.empty() ? "" : sep).append(v.name);
  return s;
}

Isa parse_isa(std::string_view name) {
  for (const IsaEnvValue& v : isa_env_values())
    if (name == v.name) return v.isa;
  const char* hint = name == "avx512" ? " (this build has no separate non-VNNI AVX-512 kernels)" : "";
  raise<InvalidArgument>("KQ_ISA='{}' is not an instruction set{}; valid values: {}", name, hint,
                         isa_env_value_names(", "));
}

bool isa_available(Isa isa) { return unavailable_reason(isa).empty(); }

std::vector<Isa> available_isas() {
  std::vector<Isa> v;
  for (Isa i : kAllIsas)
    if (isa_available(i)) v.push_back(i);
  return v;
}

Isa best_isa() { return available_isas().back(); }

Isa isa_for_env_value(const char* value) {
  if (!value || !*value) return best_isa();
  const Isa isa = parse_isa(value);
  if (const std::string why = unavailable_reason(isa); !why.empty())
    raise<InvalidArgument>("KQ_ISA={}: {} (available: {})", value, why, available_list());
  return isa;
}

Isa selected_isa() {
  static const Selection sel = select_from_env();
  if (!sel.error.empty()) raise<InvalidArgument>("{}", sel.error);
  return sel.isa;
}

const QuantKernels& quant_kernels(Isa isa) {
  if (const std::string why = unavailable_reason(isa); !why.empty())
    raise<InvalidArgument>("quantized kernels for ISA '{}' are not available: {}", isa_name(isa), why);
  switch (isa) {
    case Isa::Avx2: return kAvx2Table;
    case Isa::Avx512Vnni: return kAvx512VnniTable;
    default: return kRefTable;
  }
}

const QuantKernels& quant_kernels() { return quant_kernels(selected_isa()); }

}  // namespace kq::cpu

namespace kq {

std::string active_isa() { return std::string(cpu::isa_name(cpu::selected_isa())); }

}  // namespace kq
