// make_cuda_backend in a CPU-only build (the CUDA build defines it in
// src/gpu/cuda_backend.cpp): models on CUDA fail with a clear message.
#ifndef KQ_WITH_CUDA
#include "kq/error.hpp"
#include "models/backend.hpp"

namespace kq::models {

std::unique_ptr<Backend> make_cuda_backend(const ExecContext&) {
  raise<Unsupported>(
      "running a model on 'cuda' needs the CUDA backend, but this build is CPU-only; reconfigure with "
      "-DKQ_CUDA=ON on a machine with the CUDA toolkit (nvcc), or use ExecContext::device = Device::CPU");
}

}  // namespace kq::models
#endif
