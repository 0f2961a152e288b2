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

/// Lets the next kernel of the stream be scheduled now
/// (griddepcontrol.launch_dependents), before this one's pdl_wait(). For the
/// one-row kernels between two GEMVs: the GEMV after this kernel is then
/// launched while the GEMV before it drains, so its blocks take the SMs that
/// the earlier GEMV's blocks leave and issue their weight loads (which need no
/// wait) during that GEMV's tail. Safe because every kernel still waits before
/// touching memory that earlier kernels write or read, and a kernel's wait
/// returns only after its predecessor completed, which waited for its own.
/// A no-op when the kernel was launched without PDL.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

}  // namespace kq::cuda
