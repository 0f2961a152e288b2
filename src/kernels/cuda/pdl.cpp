#include "kernels/cuda/pdl.hpp"

#include <cstdlib>
#include <cstring>

namespace kq::cuda {

bool pdl_enabled() {
  static const bool enabled = [] {
    const char* e = std::getenv("KQ_CUDA_PDL");
    if (e && std::strcmp(e, "0") == 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return enabled;
}

}  // namespace kq::cuda
