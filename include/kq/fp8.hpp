#pragma once
// FP8 / GPU availability: what this build and this machine can run.
//
// FP8 E4M3 GEMMs (OCP OFP8 rev 1.0) run on tensor cores of compute capability
// 8.9 or newer (Ada, Hopper, Blackwell) through cuBLASLt; KernelQuant's CUDA
// backend is compiled only when CMake finds nvcc
// (KQ_CUDA=AUTO/ON). In a CPU-only build every function here still works and
// says why FP8 is not available.
#include <cstddef>
#include <string>
#include <string_view>

namespace kq {

/// What `get_fp8_info()` found: the build, the first CUDA device and its
/// libraries. Fields that could not be read stay 0 / empty.
struct FP8Info {
  /// FP8 E4M3 tensor-core GEMMs can run here: CUDA build, a device found, cc >= 8.9.
  bool available = false;
  /// This library was built with the CUDA backend (-DKQ_CUDA=AUTO/ON and nvcc found).
  bool cuda_built = false;
  /// A CUDA device was found and its properties read.
  bool device_found = false;
  /// Device 0's name, e.g. "NVIDIA H200".
  std::string device_name;
  /// Compute capability of device 0, e.g. 9 and 0 for Hopper.
  int cc_major = 0, cc_minor = 0;
  /// Tensor cores with FP8 E4M3/E5M2 inputs: compute capability >= 8.9.
  bool fp8_tensor_cores = false;
  /// Streaming multiprocessors of device 0.
  int multiprocessors = 0;
  /// Global memory of device 0 in bytes.
  size_t memory_bytes = 0;
  /// L2 cache of device 0 in bytes.
  size_t l2_bytes = 0;
  /// CUDA runtime version as 1000*major + 10*minor (13000 = 13.0); 0 when unknown.
  int cuda_runtime_version = 0;
  /// Newest CUDA version the installed driver supports, same encoding; 0 when no driver.
  int cuda_driver_version = 0;
  /// cuBLASLt version as 10000*major + 100*minor + patch (130100 = 13.1.0); 0 when unknown.
  size_t cublaslt_version = 0;
  /// Why FP8 is not available (CPU-only build, no device or driver, GPU older
  /// than cc 8.9); empty when `available`.
  std::string reason;
};

/// Queries the build and CUDA device 0 (cached after the first call; the
/// device list of a process does not change). Never throws.
const FP8Info& get_fp8_info();

/// get_fp8_info().available.
bool is_fp8_available();

/// Human-readable lines for `kq info` (labels padded to 10 columns), e.g.
///   "GPU:      NVIDIA H200 (cc 9.0, 132 SMs, 139.8 GiB, L2 60.0 MiB)\n"
///   "CUDA:     runtime 13.0, driver 13.0, cuBLASLt 13.1.0\n"
///   "FP8:      E4M3 tensor cores available (cc >= 8.9)\n"
/// or "FP8:      not available: <reason>". Every line ends with '\n'.
std::string fp8_info_report();

/// Throws kq::Unsupported naming `op` when a CUDA op cannot run here: CPU-only
/// build ("... this build is CPU-only; reconfigure with -DKQ_CUDA=ON ..."), no
/// usable CUDA device, or, when `needs_fp8`, a device older than cc 8.9.
/// Returns normally otherwise.
void require_cuda(std::string_view op, bool needs_fp8 = false);

}  // namespace kq
