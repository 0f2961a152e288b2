#include "kernels/cuda/device_info.hpp"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <mutex>

#include "kernels/cuda/cuda_check.hpp"
#include "kq/error.hpp"

namespace kq::cuda {

DeviceQuery query_device(int device) noexcept {
  DeviceQuery q;
  q.device = device;
  try {
    cudaRuntimeGetVersion(&q.runtime_version);
    if (cudaDriverGetVersion(&q.driver_version) != cudaSuccess) q.driver_version = 0;
    q.cublaslt_version = cublasLtGetVersion();
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      q.error = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
      cudaGetLastError();  // reset the runtime's last-error state
      return q;
    }
    if (device < 0 || device >= count) {
      q.error = count == 0 ? "no CUDA device found"
                           : "CUDA device " + std::to_string(device) + " does not exist (" +
                                 std::to_string(count) + " found)";
      return q;
    }
    cudaDeviceProp p{};
    const cudaError_t pe = cudaGetDeviceProperties(&p, device);
    if (pe != cudaSuccess) {
      q.error = std::string("cannot read CUDA device properties: ") + cudaGetErrorString(pe);
      return q;
    }
    q.found = true;
    q.name = p.name;
    q.cc_major = p.major;
    q.cc_minor = p.minor;
    q.multiprocessors = p.multiProcessorCount;
    q.memory_bytes = p.totalGlobalMem;
    q.l2_bytes = size_t(p.l2CacheSize);
    q.smem_per_block_optin = p.sharedMemPerBlockOptin;
  } catch (...) {
    q.found = false;
    q.error = "unexpected failure while querying the CUDA device";
  }
  return q;
}

const DeviceQuery& current_device() {
  constexpr int kMaxDevices = 64;
  static std::array<DeviceQuery, kMaxDevices> cache;
  static std::array<std::once_flag, kMaxDevices> once;
  int dev = 0;
  KQ_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kMaxDevices) raise<Error>("CUDA device ordinal {} out of range", dev);
  std::call_once(once[size_t(dev)], [dev] { cache[size_t(dev)] = query_device(dev); });
  const DeviceQuery& q = cache[size_t(dev)];
  if (!q.found) raise<Error>("CUDA device {}: {}", dev, q.error);
  return q;
}

}  // namespace kq::cuda
