#pragma once
// Runtime ISA dispatch of the quantized Linear kernels (INT8, FP8, NF4/FP4/FP4_BNB/INT4)
// and of the 16-bit (BF16/F16) Linear that holds a quantized model's
// unquantized layers in their on-disk dtype.
//
// One table of kernel function pointers per instruction set; the ops pick a
// table once, when they are built (never inside a kernel). The choice is
// made from CPUID (kq::cpu_features()) and can be forced with the
// environment variable KQ_ISA. The values it accepts are listed once, in
// isa_env_values() (dispatch.cpp), which the parser, its error messages and
// `kq info` all use:
//   KQ_ISA=ref         the scalar reference kernels (the test oracle)
//   KQ_ISA=avx2        AVX2 + FMA + F16C kernels
//   KQ_ISA=avx512vnni  AVX-512 VNNI W8A8 INT8 GEMM (prefill, M > 1) and
//                      AVX-512 4-bit GEMV / GEMM; every other entry, INT8
//                      decode included, is the AVX2 kernel
//   KQ_ISA=generic     ref, and the FP32/vector ops too take their baseline
//                      x86-64 path (ops_vec.hpp, linear_f32)
// (There is no separate non-VNNI AVX-512 table, so "avx512" is not a value.)
// An unknown value, or an ISA this CPU lacks, is a clear kq::InvalidArgument
// from the op factories and from active_isa().
//
// Every table computes the same function. Differences between ISAs:
//   INT8 W8A8 (integer dot products) and the activation quantizers are bit-identical
//   to the reference; the F32-accumulating kernels (weight-only INT8, FP8,
//   4-bit) sum in a different order and agree within
//   tests/common/tolerances.hpp forward_tolerance(). Within one table the
//   result of a row never depends on M (decode = prefill bits) or on threads,
//   except where an optimized table's prefill runs oneDNN sgemm (its own
//   summation order) over weight panels dequantized to F32 (dequant_gemm.hpp),
//   as the FP32 Linear does: the 16-bit Linear (a GEMV for M = 1, one reading
//   each weight once for all tokens for M = 2..4, sgemm for M > 4), and FP8 and
//   4-bit from avx2::kFp8SgemmMinM / kQ4SgemmMinM tokens on
//   (quant_kernels_avx2.hpp; the Ref table never does).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu/linear_fp8_ref.hpp"
#include "kernels/cpu/linear_int4_ref.hpp"
#include "kernels/cpu/linear_int8_ref.hpp"
#include "kernels/cpu/linear_w16_ref.hpp"
#include "kq/quantize.hpp"

namespace kq::cpu {

/// Instruction sets with a kernel table in this build, in increasing order.
enum class Isa { Ref, Avx2, Avx512Vnni };

/// "ref", "avx2", "avx512vnni".
std::string_view isa_name(Isa isa);

/// One value KQ_ISA accepts: its spelling, the kernel table it selects and
/// what it means (one line, for `kq info`).
struct IsaEnvValue {
  std::string_view name;
  Isa isa;
  std::string_view meaning;
};

/// Every value KQ_ISA accepts, the one list parse_isa(), its error messages,
/// `kq info` and the README (checked by a test) use: ref, avx2, avx512vnni, generic.
const std::vector<IsaEnvValue>& isa_env_values();

/// The names of isa_env_values() joined by `sep`, e.g. "ref|avx2|avx512vnni|generic".
std::string isa_env_value_names(std::string_view sep);

/// Parses a KQ_ISA value (case-sensitive; one of isa_env_values(); "generic"
/// selects the Ref table). Throws InvalidArgument naming the value and the valid names.
Isa parse_isa(std::string_view name);

/// true when this build has kernels for `isa` and the CPU (and OS) supports it.
bool isa_available(Isa isa);

/// Every available ISA, ascending (always starts with Ref).
std::vector<Isa> available_isas();

/// The fastest available ISA.
Isa best_isa();

/// The ISA that KQ_ISA=`value` selects: best_isa() for nullptr or "", else the
/// named one. Throws InvalidArgument when the value is unknown or the ISA is
/// not available, e.g. "KQ_ISA=avx512vnni: this CPU lacks AVX-512F/BW/VL with
/// VNNI (available: ref, avx2)".
Isa isa_for_env_value(const char* value);

/// The ISA the quantized ops use: isa_for_env_value(getenv("KQ_ISA")). Decided
/// once per process; when KQ_ISA is invalid every call throws the same InvalidArgument.
Isa selected_isa();

/// One ISA's kernels. Every function is thread-safe, never throws, and
/// splits its work over `threads` OpenMP threads (static schedule, so the
/// result does not depend on the thread count). M >= 1; y is F32 [M, N],
/// overwritten. Layouts are those of the weight views (src/formats/*.hpp).
struct QuantKernels {
  Isa isa = Isa::Ref;

  /// Per-token dynamic INT8 quantization of x F32 [M, K]: xs[m] and xq[m, :]
  /// exactly as formats::int8_quantize_dynamic (absmax / 127, round half to even).
  void (*quantize_rows_s8)(const float* x, int64_t M, int64_t K, int8_t* xq, float* xs, int threads);

  /// W8A8 INT8: y = float(Σ xq·wq) · (xs[m] · ws[n]) + bias[n], INT32 accumulation
  /// (bit-identical in every table). xq: I8 [M, K] codes in [−127, 127].
  void (*gemm_s8s8_f32_rowwise)(const Int8WeightView& w, const int8_t* xq, const float* xs, int64_t M, float* y,
                                int threads);

  /// Weight-only INT8: y = (Σ x·wq) · ws[n] + bias[n], F32 accumulation.
  void (*gemm_f32s8_f32_rowwise)(const Int8WeightView& w, const float* x, int64_t M, float* y, int threads);

  /// Per-token dynamic FP8 quantization of x F32 [M, K] for W8A8 FP8:
  /// xs[m] = fp8_scale_for(finite_absmax(x[m, :])) and xd[m, k] = the FP8 value
  /// nearest to x[m, k] / xs[m] (formats::fp8_encode, then decode: exact in F32),
  /// bit-identical in every table (NaN payloads aside).
  void (*quantize_rows_fp8)(const float* x, int64_t M, int64_t K, FP8Format f, bool saturate, float* xd, float* xs,
                            int threads);

  /// FP8 (E4M3/E5M2) weights: y = (Σ x·decode(wq)) · (xs[m] · ws[n]) + bias[n];
  /// xs == nullptr for weight-only (taken as 1). See linear_fp8_ref.hpp.
  void (*gemm_f32fp8_f32_rowwise)(const Fp8WeightView& w, const float* x, const float* xs, int64_t M, float* y,
                                  int threads);

  /// 4-bit weights (NF4, FP4, FP4_BNB, INT4 sym/asym; F32 or BF16 compute): y = Σ x·ŵ + bias.
  /// (ŵ: q4_decode_block_ref's values; the optimized kernels may apply the block
  /// scale to partial sums below their sgemm threshold.)
  void (*gemm_f32q4_f32_blockwise)(const Q4WeightView& w, const float* x, int64_t M, float* y, int threads);

  /// 16-bit unquantized weights (BF16 or F16, converted to F32 exactly as
  /// read): y = Σ x·f32(w) + bias[n], F32 accumulation. See linear_w16_ref.hpp;
  /// the AVX2 kernel's M = 1, M = 2..4 and M > 4 paths sum in different orders (above).
  void (*gemm_f32w16_f32)(const W16WeightView& w, const float* x, int64_t M, float* y, int threads);

  /// Memory probe (not a Linear kernel): the wrapping sum of the 64-bit words
  /// p[0, n), read once, front to back, with the ISA's widest loads and a
  /// software prefetch ahead: the streaming-read reference of bench_kernels.
  /// Single-threaded (callers split the buffer over threads).
  uint64_t (*stream_read)(const uint64_t* p, size_t n);
};

/// The kernels of `isa`. Throws InvalidArgument when it is not available.
const QuantKernels& quant_kernels(Isa isa);

/// The kernels of selected_isa(). Throws as selected_isa() does.
const QuantKernels& quant_kernels();

}  // namespace kq::cpu

namespace kq {

/// Name of the ISA the quantized CPU kernels run with ("ref", "avx2", ...),
/// for `kq info` and benchmark reports. Throws InvalidArgument for a bad KQ_ISA.
std::string active_isa();

}  // namespace kq
