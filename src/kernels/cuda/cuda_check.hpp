#pragma once
// Checks for CUDA runtime and cuBLASLt return codes in host code: a failure
// throws kq::Error naming the call, the file and the line. Kernels never throw.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

namespace kq::cuda {

/// Throws kq::Error "CUDA error <name> (<text>) in <expr> at <file>:<line>".
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line);
/// Throws kq::Error "cuBLASLt error <status> in <expr> at <file>:<line>".
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line);

}  // namespace kq::cuda

/// Evaluates a cudaError_t expression; throws kq::Error unless cudaSuccess.
#define KQ_CUDA_CHECK(expr)                                                      \
  do {                                                                           \
    const cudaError_t kq_cuda_err_ = (expr);                                     \
    if (kq_cuda_err_ != cudaSuccess)                                             \
      ::kq::cuda::throw_cuda_error(kq_cuda_err_, #expr, __FILE__, __LINE__);     \
  } while (0)

/// Evaluates a cublasStatus_t expression; throws kq::Error unless CUBLAS_STATUS_SUCCESS.
#define KQ_CUBLAS_CHECK(expr)                                                    \
  do {                                                                           \
    const cublasStatus_t kq_cublas_st_ = (expr);                                 \
    if (kq_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                  \
      ::kq::cuda::throw_cublas_error(kq_cublas_st_, #expr, __FILE__, __LINE__);  \
  } while (0)

/// Checks the launch of the kernel just issued (configuration errors).
#define KQ_CUDA_CHECK_LAUNCH() KQ_CUDA_CHECK(cudaGetLastError())
