#pragma once
// Device side of programmatic dependent launch (see pdl.hpp).
namespace kq::cuda {

/// Waits until the kernels this one depends on have completed and their
/// memory is visible (griddepcontrol.wait), then allows the next kernel of
/// the stream to be scheduled (griddepcontrol.launch_dependents). A no-op
/// when the kernel was launched without PDL. Call it from every thread before
/// the first access to memory that earlier kernels write or read.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

}  // namespace kq::cuda
