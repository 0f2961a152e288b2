#pragma once
// Programmatic dependent launch (PDL; CUDA Programming Guide, "Programmatic
// Dependent Launch and Synchronization", compute capability 9.0+). A kernel
// launched with launch_pdl may be scheduled while the previous kernel of its
// stream is still running; it must call pdl_wait() (device side) before it
// touches any memory that earlier kernels write or read. On a decode step of
// one-row kernels this hides most of each launch's latency (block scheduling,
// the previous kernel's drain) behind the previous kernel. Host side only.
#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_check.hpp"

namespace kq::cuda {

/// Whether launch_pdl uses PDL: the current device has compute capability
/// >= 9.0 and the environment does not set KQ_CUDA_PDL=0. Read once per process.
bool pdl_enabled();

/// kernel<<<grid, block, smem, stream>>>(args...), with the programmatic
/// stream serialization attribute when pdl_enabled(). Throws kq::Error when
/// the launch fails.
template <class... KArgs, class... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  KQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

/// launch_pdl with thread-block clusters of `cluster` blocks (compute
/// capability >= 9.0; grid must be a multiple of cluster in each dimension;
/// clusters above 8 blocks need the kernel's non-portable-cluster attribute).
/// Throws kq::Error when the launch fails.
template <class... KArgs, class... Args>
void launch_pdl_cluster(void (*kernel)(KArgs...), dim3 grid, dim3 cluster, dim3 block, size_t smem,
                        cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2] = {};
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = cluster.x;
  attr[0].val.clusterDim.y = cluster.y;
  attr[0].val.clusterDim.z = cluster.z;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 2 : 1;
  KQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace kq::cuda
