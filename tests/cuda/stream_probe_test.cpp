// The decode-step stream probe (bench_model_ops --stream-floor): its checks, and
// that the persistent kernel's grid barrier completes every phase.
#ifdef KQ_WITH_CUDA
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "cuda/gpu_test_util.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/stream_probe.hpp"
#include "kq/error.hpp"

namespace {

using kq::cuda::DeviceBuffer;
using kq::cuda::StreamPhase;

int sm_count() {
  int dev = 0, sms = 0;
  KQ_CUDA_CHECK(cudaGetDevice(&dev));
  KQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

TEST(StreamProbe, BadArgumentsAreRefused) {
  KQ_REQUIRE_GPU();
  DeviceBuffer<uint8_t> buf(4096);
  DeviceBuffer<uint32_t> sink(1024), counter(1);
  const StreamPhase misaligned{8, 64, false};
  EXPECT_THROW(kq::cuda::stream_probe_launched(buf.data(), &misaligned, 1, 4, 4, sink.data(), nullptr),
               kq::InvalidArgument);
  const StreamPhase ok{0, 64, false};
  EXPECT_THROW(kq::cuda::stream_probe_launched(buf.data(), &ok, 1, 4, 5, sink.data(), nullptr), kq::InvalidArgument);
  DeviceBuffer<StreamPhase> dph(1);
  EXPECT_THROW(kq::cuda::stream_probe_persistent(buf.data(), dph.data(), 1, sm_count() + 1, 4, counter.data(),
                                                 sink.data(), nullptr),
               kq::InvalidArgument);
}

TEST(StreamProbe, PersistentKernelPassesEveryBarrier) {
  KQ_REQUIRE_GPU();
  const int sms = sm_count();
  DeviceBuffer<uint8_t> buf(size_t(1) << 22);
  buf.fill_bytes(0x11, nullptr);
  // streaming and one-block phases alternating, some empty for most blocks
  std::vector<StreamPhase> ph;
  for (int i = 0; i < 40; ++i) ph.push_back({uint64_t(i % 7) * 65536, uint64_t(16 * (1 + 97 * i)), i % 3 == 1});
  DeviceBuffer<StreamPhase> dph(ph.size());
  KQ_CUDA_CHECK(cudaMemcpy(dph.data(), ph.data(), ph.size() * sizeof(StreamPhase), cudaMemcpyHostToDevice));
  for (int depth : {4, 12}) {
    DeviceBuffer<uint32_t> sink(static_cast<size_t>(sms)), counter(1);
    sink.fill_bytes(0, nullptr);
    kq::cuda::stream_probe_persistent(buf.data(), dph.data(), int(ph.size()), sms, depth, counter.data(), sink.data(),
                                      nullptr);
    kq::cuda::stream_probe_launched(buf.data(), ph.data(), ph.size(), sms, depth, sink.data(), nullptr);
    KQ_CUDA_CHECK(cudaDeviceSynchronize());
    uint32_t s0 = 0, arrived = 0;
    KQ_CUDA_CHECK(cudaMemcpy(&s0, sink.data(), sizeof(s0), cudaMemcpyDeviceToHost));
    KQ_CUDA_CHECK(cudaMemcpy(&arrived, counter.data(), sizeof(arrived), cudaMemcpyDeviceToHost));
    EXPECT_NE(s0, 0xdeadbeefu) << "depth " << depth << ": a grid barrier timed out";
    EXPECT_EQ(arrived, uint32_t(ph.size()) * uint32_t(sms)) << "depth " << depth;
  }
}

}  // namespace
#endif  // KQ_WITH_CUDA
