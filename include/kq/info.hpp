#pragma once
// Build and machine information (`kq info`).
#include <string>

namespace kq {

/// CPU instruction-set features detected at run time (CPUID + OS support).
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false;  ///< vpdpbusd (INT8 dot products)
  bool avx512bf16 = false;  ///< vdpbf16ps
  bool avx512fp16 = false;  ///< native FP16 arithmetic
  bool avxvnni = false;     ///< VEX-encoded VNNI (AVX2 width)
};

/// Features of the CPU this process runs on (cached after the first call).
const CpuFeatures& cpu_features();

/// CPU model name from CPUID, e.g. "AMD EPYC 9654".
std::string cpu_model_name();

/// Library version, "MAJOR.MINOR.PATCH".
std::string version();

/// CMake build type the library was compiled with ("Release", "Debug", ...).
std::string build_type();

/// true when this library was built with the CUDA backend.
bool cuda_built();

}  // namespace kq
