// The launch-floor probe kernel (see launch_probe.hpp).
#include "kernels/cuda/launch_probe.hpp"

#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/pdl.hpp"

namespace kq::cuda {
namespace {

__global__ void probe_kernel(uint32_t* __restrict__ counter) {
  pdl_wait();
  if (threadIdx.x == 0) atomicAdd(counter + (blockIdx.x & 63u), 1u);
}

}  // namespace

void launch_probe(int blocks, int threads, uint32_t* counter, cudaStream_t stream) {
  launch_pdl(probe_kernel, dim3(unsigned(blocks)), dim3(unsigned(threads)), 0, stream, counter);
}

}  // namespace kq::cuda
