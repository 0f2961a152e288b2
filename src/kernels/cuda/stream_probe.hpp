#pragma once
// A decode step's memory traffic without its arithmetic: each phase streams a
// byte range of one large buffer (a GEMV's weights, the attention's K/V rows)
// across all SMs, or reads a few KB in one block (a norm, RoPE). Run as one
// kernel per phase chained with programmatic dependent launch (how the decode
// step runs today) or as one persistent kernel with a grid-wide barrier
// between phases (the "persistent decode kernel" of docs/GPU.md), the two
// times bound what removing launch boundaries could buy
// (bench_model_ops --stream-floor). A measuring probe, not a model op.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstddef>

namespace kq::cuda {

/// One phase of a probe step: `bytes` bytes from `offset` (both multiples of
/// 16) of the probe buffer, read by every block of the grid (each a contiguous
/// slice) or, with one_block, by block 0 alone (256 threads when launched alone).
struct StreamPhase {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  bool one_block = false;
};

/// Enqueues one kernel per phase (`count` StreamPhase on the host) on `stream` (launch_pdl: each waits for its
/// predecessor with griddepcontrol.wait after issuing its first loads, as the
/// W4A16 / W8A8 GEMVs do; one-block phases trigger their successor at entry,
/// as the model's one-row kernels do, and load only after their wait: their
/// input is their predecessor's output). `blocks` blocks of 768 threads per
/// streaming phase; `depth` (4 or 12) 16-byte loads in flight per thread (48 or
/// 144 KB per SM), the first `depth` issued before the wait. buffer: device memory holding every phase's range (16-byte
/// aligned); sink: `blocks` uint32 on the device (written only to keep the
/// loads alive). Throws kq::InvalidArgument for misaligned phases or another depth, kq::Error
/// when a launch fails.
void stream_probe_launched(const void* buffer, const StreamPhase* phases, size_t count, int blocks, int depth,
                           uint32_t* sink, cudaStream_t stream);

/// Enqueues the same phases as one persistent kernel of `blocks` blocks
/// (at most one per SM, all resident: checked), a grid-wide barrier (a
/// device-scope counter) between phases; before each barrier a block issues
/// its first loads of the next phase when that is a streaming phase, as the
/// launched kernels do before their wait (a one-block phase loads after it). phases: `count` StreamPhase on the device (aligned as above:
/// not checked here, they are device memory); counter: one
/// uint32 on the device, zeroed here (cudaMemsetAsync) before the kernel.
/// A barrier not reached within ~2^28 polls stops the kernel (sink[0] =
/// 0xdeadbeef) instead of hanging. Throws kq::InvalidArgument when `blocks`
/// cannot all be resident or depth is not 4 or 12, kq::Error when a launch fails.
void stream_probe_persistent(const void* buffer, const StreamPhase* phases, int count, int blocks, int depth,
                             uint32_t* counter, uint32_t* sink, cudaStream_t stream);

namespace detail {
// Unchecked launchers (stream_probe.cu) behind the two functions above.
void launch_stream_phase(const void* buffer, const StreamPhase& ph, int blocks, int depth, uint32_t* sink,
                         cudaStream_t stream);
int stream_persistent_blocks_per_sm();
void launch_stream_persistent(const void* buffer, const StreamPhase* phases, int count, int blocks, int depth,
                              uint32_t* counter, uint32_t* sink, cudaStream_t stream);
}  // namespace detail

}  // namespace kq::cuda
