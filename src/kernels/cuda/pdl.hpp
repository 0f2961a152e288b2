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

/// kernel<<<grid, block, smem, stream>>>(args...) in thread-block clusters of
/// `cluster` blocks (none when cluster is 1 x 1 x 1; otherwise compute
/// capability >= 9.0, grid a multiple of cluster in each dimension, and more
/// than 8 blocks need the kernel's non-portable-cluster attribute), with the
/// programmatic stream serialization attribute when pdl_enabled(). Throws
/// kq::Error when the launch fails.
template <class... KArgs, class... Args>
void launch_pdl_cluster(void (*kernel)(KArgs...), dim3 grid, dim3 cluster, dim3 block, size_t smem,
                        cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2] = {};
  unsigned n = 0;
  if (pdl_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n++].val.clusterDim.z = cluster.z;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  KQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

/// kernel<<<grid, block, smem, stream>>>(args...), with the programmatic
/// stream serialization attribute when pdl_enabled(). Throws kq::Error when
/// the launch fails.
template <class... KArgs, class... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                Args&&... args) {
  launch_pdl_cluster(kernel, grid, dim3(1, 1, 1), block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace kq::cuda
