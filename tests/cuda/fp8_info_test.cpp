// kq::get_fp8_info / require_cuda in every build: a CPU-only build must say why
// FP8 is unavailable and refuse CUDA ops with kq::Unsupported; a CUDA build
// must report the device consistently (or why there is none).
#include <gtest/gtest.h>

#include <string>

#include "kq/error.hpp"
#include "kq/fp8.hpp"

namespace {

#ifndef KQ_WITH_CUDA

TEST(Fp8Info, CpuOnlyBuildIsNotAvailableAndSaysWhy) {
  const kq::FP8Info& i = kq::get_fp8_info();
  EXPECT_FALSE(i.cuda_built);
  EXPECT_FALSE(i.available);
  EXPECT_FALSE(i.device_found);
  EXPECT_FALSE(kq::is_fp8_available());
  EXPECT_NE(i.reason.find("CPU-only"), std::string::npos) << i.reason;
  EXPECT_NE(kq::fp8_info_report().find("not available"), std::string::npos);
}

TEST(Fp8Info, CpuOnlyBuildRefusesCudaOpsWithUnsupported) {
  try {
    kq::require_cuda("fp8_w8a8_linear", true);
    FAIL() << "require_cuda returned in a CPU-only build";
  } catch (const kq::Unsupported& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fp8_w8a8_linear"), std::string::npos) << msg;
    EXPECT_NE(msg.find("CPU-only"), std::string::npos) << msg;
  }
  EXPECT_THROW(kq::require_cuda("gemm_bf16"), kq::Unsupported);
}

#else

TEST(Fp8Info, CudaBuildReportsDeviceConsistently) {
  const kq::FP8Info& i = kq::get_fp8_info();
  EXPECT_TRUE(i.cuda_built);
  EXPECT_GT(i.cuda_runtime_version, 0);
  EXPECT_GT(i.cublaslt_version, 0u);
  const std::string report = kq::fp8_info_report();
  if (!i.device_found) {
    EXPECT_FALSE(i.available);
    EXPECT_FALSE(i.reason.empty());
    EXPECT_THROW(kq::require_cuda("gemm_bf16"), kq::Unsupported);
    EXPECT_NE(report.find("none"), std::string::npos) << report;
    return;
  }
  EXPECT_FALSE(i.device_name.empty());
  EXPECT_GT(i.cc_major, 0);
  EXPECT_GT(i.multiprocessors, 0);
  EXPECT_GT(i.memory_bytes, 0u);
  EXPECT_EQ(i.fp8_tensor_cores, i.cc_major * 10 + i.cc_minor >= 89);
  EXPECT_EQ(i.available, i.fp8_tensor_cores);
  EXPECT_EQ(i.reason.empty(), i.available) << i.reason;
  EXPECT_NE(report.find(i.device_name), std::string::npos) << report;
  EXPECT_NO_THROW(kq::require_cuda("gemm_bf16"));
  if (i.available)
    EXPECT_NO_THROW(kq::require_cuda("fp8_w8a8_linear", true));
  else
    EXPECT_THROW(kq::require_cuda("fp8_w8a8_linear", true), kq::Unsupported);
}

#endif

}  // namespace
