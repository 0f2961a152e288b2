#include "kernels/cuda/cuda_check.hpp"

#include "kq/error.hpp"

namespace kq::cuda {

void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  raise<Error>("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(e), cudaGetErrorString(e), expr,
               file, line);
}

void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line) {
  raise<Error>("cuBLASLt error {} ({}) in {} at {}:{}", int(s), cublasLtGetStatusName(s), expr, file,
               line);
}

}  // namespace kq::cuda
