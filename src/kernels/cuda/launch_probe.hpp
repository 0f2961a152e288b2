#pragma once
// A kernel that does nothing but what every kernel of a decode step must do
// (wait for its predecessor under programmatic dependent launch, then touch
// memory), so a chain of them in a CUDA graph measures the per-launch floor
// a decode step of ~260 dependent kernels pays (bench_model_ops --launch-floor).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace kq::cuda {

/// Launches `blocks` x `threads` of the probe on `stream` (launch_pdl: with
/// PDL where pdl_enabled()). Each block's thread 0 adds 1 to
/// counter[blockIdx.x % 64] after pdl_wait(). counter: 64 uint32 on the
/// device. Throws kq::Error when the launch fails.
void launch_probe(int blocks, int threads, uint32_t* counter, cudaStream_t stream);

}  // namespace kq::cuda
