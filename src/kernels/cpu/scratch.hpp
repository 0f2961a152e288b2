#pragma once
// Per-thread scratch memory of the quantized kernels, allocated by this
// baseline-compiled file. ISA-specific files (*_avx2.cpp, *_avx512*.cpp) must
// not instantiate std::vector or other shared templates themselves: the
// linker keeps one copy of such code, possibly compiled with -mavx512f, and
// baseline callers on a CPU without those instructions would then fault.
#include <cstddef>

namespace kq::cpu {

/// Scratch slots. A kernel's calling thread uses the Call slots; every thread
/// of its parallel region (the caller included) uses the Worker slots.
enum ScratchSlot : int { kScratchCall0 = 0, kScratchCall1 = 1, kScratchWorker0 = 2, kScratchWorker1 = 3,
                         kScratchWorker2 = 4, kScratchSlots = 5 };

/// At least `bytes` bytes, 64-byte aligned, owned by the calling thread's
/// `slot`; grows (reallocates) only when a larger size is asked, so steady-state
/// calls allocate nothing. The previous contents are not kept when it grows.
/// Aborts via std::bad_alloc on exhaustion (like any allocation).
void* thread_scratch(int slot, size_t bytes);

/// Typed helper: n elements of T from thread_scratch.
template <class T>
T* thread_scratch_as(int slot, size_t n) {
  return static_cast<T*>(thread_scratch(slot, n * sizeof(T)));
}

}  // namespace kq::cpu
