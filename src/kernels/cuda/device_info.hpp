#pragma once
// CUDA device and library query for the CUDA backend. Plain types only (no
// CUDA headers), so CPU-side code such as src/api/fp8_info.cpp can include it.
#include <cstddef>
#include <string>

namespace kq::cuda {

/// Properties of one CUDA device plus the runtime, driver and cuBLASLt versions.
struct DeviceQuery {
  bool found = false;       ///< the device exists and its properties were read
  std::string error;        ///< why not found (driver missing, no device, ...)
  int device = 0;           ///< device ordinal
  std::string name;         ///< e.g. "NVIDIA H200"
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  size_t memory_bytes = 0;          ///< global memory
  size_t l2_bytes = 0;              ///< L2 cache
  size_t smem_per_block_optin = 0;  ///< largest dynamic shared memory a block may opt in to
  int runtime_version = 0;          ///< 1000*major + 10*minor
  int driver_version = 0;           ///< same encoding; 0 when no driver
  size_t cublaslt_version = 0;      ///< 10000*major + 100*minor + patch
};

/// Reads device `device`'s properties. Never throws: failures are reported in
/// DeviceQuery::error with found == false.
DeviceQuery query_device(int device = 0) noexcept;

/// Cached query_device() of the current device (cudaGetDevice), for kernels'
/// launch heuristics. Throws kq::Error when there is no usable device.
const DeviceQuery& current_device();

}  // namespace kq::cuda
