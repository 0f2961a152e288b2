// Checked entry points of the decode-step stream probe (see stream_probe.hpp).
#include "kernels/cuda/stream_probe.hpp"

#include "kernels/cuda/cuda_check.hpp"
#include "kq/error.hpp"

namespace kq::cuda {

void stream_probe_launched(const void* buffer, const StreamPhase* phases, size_t count, int blocks, int depth,
                           uint32_t* sink, cudaStream_t stream) {
  if (depth != 4 && depth != 12) raise<InvalidArgument>("stream_probe: depth must be 4 or 12, got {}", depth);
  const StreamPhase* end = phases + count;
  if (blocks < 1) raise<InvalidArgument>("stream_probe: blocks must be >= 1, got {}", blocks);
  for (const StreamPhase* ph = phases; ph != end; ++ph)
    if (ph->offset % 16 || ph->bytes % 16)
      raise<InvalidArgument>("stream_probe: phase offset {} / bytes {} not multiples of 16", ph->offset, ph->bytes);
  for (const StreamPhase* ph = phases; ph != end; ++ph) detail::launch_stream_phase(buffer, *ph, blocks, depth, sink, stream);
}

void stream_probe_persistent(const void* buffer, const StreamPhase* phases, int count, int blocks, int depth,
                             uint32_t* counter, uint32_t* sink, cudaStream_t stream) {
  if (depth != 4 && depth != 12) raise<InvalidArgument>("stream_probe: depth must be 4 or 12, got {}", depth);
  int dev = 0, sms = 0;
  KQ_CUDA_CHECK(cudaGetDevice(&dev));
  KQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int per_sm = detail::stream_persistent_blocks_per_sm();
  if (blocks < 1 || blocks > sms || per_sm < 1)
    raise<InvalidArgument>("stream_probe: {} persistent blocks cannot all be resident ({} SMs, {} per SM)", blocks,
                           sms, per_sm);
  detail::launch_stream_persistent(buffer, phases, count, blocks, depth, counter, sink, stream);
}

}  // namespace kq::cuda
