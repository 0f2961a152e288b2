#pragma once
// For model tests that need a GPU: why a model cannot run on CUDA in this build and on this machine, and the
// skip (or, with KQ_REQUIRE_CUDA set, failure) that such a test starts with.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

namespace kq::testing {

/// Why a CUDA model cannot run here (a CPU-only build, no device), or "" when it can; asked once.
inline std::string cuda_model_unavailable() {
  static const std::string why = [] {
    try {
      (void)Model::random(tiny_gpt2_config(), 1, ExecContext{Device::CUDA, 2});
      return std::string();
    } catch (const Unsupported& e) {
      return std::string(e.what());
    }
  }();
  return why;
}

}  // namespace kq::testing

/// Skips the test where CUDA models cannot run; fails it instead when KQ_REQUIRE_CUDA is set (the GPU machine).
#define KQ_REQUIRE_CUDA_MODEL()                                                                \
  do {                                                                                         \
    const std::string why_ = ::kq::testing::cuda_model_unavailable();                          \
    if (!why_.empty()) {                                                                       \
      if (std::getenv("KQ_REQUIRE_CUDA")) FAIL() << "KQ_REQUIRE_CUDA set: " << why_;           \
      GTEST_SKIP() << why_;                                                                    \
    }                                                                                          \
  } while (0)
