// Failed allocations that name what they were for (include/kq/out_of_memory.hpp, src/core/out_of_memory.hpp):
// the byte sizes and the message, and naming_allocation's rethrow.
#include "core/out_of_memory.hpp"

#include <gtest/gtest.h>

#include <new>
#include <string>
#include <vector>

namespace kq {
namespace {

TEST(OutOfMemory, ByteSizesInBinaryUnits) {
  EXPECT_EQ(byte_size_text(0), "0 B");
  EXPECT_EQ(byte_size_text(1023), "1023 B");
  EXPECT_EQ(byte_size_text(1024), "1.0 KiB");
  EXPECT_EQ(byte_size_text(1536), "1.5 KiB");
  EXPECT_EQ(byte_size_text(size_t(3) << 20), "3.00 MiB");
  // The FP32 copy of a [4194304, 256] embedding (tester round 23): 4 GiB.
  EXPECT_EQ(byte_size_text(size_t(4194304) * 256 * 4), "4.00 GiB");
  EXPECT_EQ(byte_size_text((size_t(5) << 40) / 4), "1.25 TiB");
  EXPECT_EQ(byte_size_text(~size_t(0)), "16.00 EiB");
}

TEST(OutOfMemory, MessageNamesTheAllocationAndItsSize) {
  EXPECT_EQ(out_of_memory_message("converting tensor 'w' [2, 3] of model.safetensors from BF16 to F32", 24),
            "converting tensor 'w' [2, 3] of model.safetensors from BF16 to F32 needs 24 B: out of memory");
  const OutOfMemory e("x needs 1 B: out of memory");
  const std::bad_alloc& as_bad_alloc = e;  // caught where std::bad_alloc is
  EXPECT_STREQ(as_bad_alloc.what(), "x needs 1 B: out of memory");
  const OutOfMemory copy = e;  // the message is shared, not copied
  EXPECT_EQ(copy.what(), e.what());
  // A plain std::bad_alloc says nothing more than "out of memory"; a note follows either.
  EXPECT_EQ(out_of_memory_text(std::bad_alloc()), "out of memory");
  EXPECT_EQ(out_of_memory_text(std::bad_alloc(), " (note)"), "out of memory (note)");
  EXPECT_EQ(out_of_memory_text(e, " (note)"), "x needs 1 B: out of memory (note)");
}

TEST(OutOfMemory, NamingAllocationRethrowsNamed) {
  int asked = 0;
  const auto what = [&] {
    ++asked;
    return std::string("the buffer");
  };
  // No failure: the value, and the name is never formatted.
  EXPECT_EQ(naming_allocation(8, what, [] { return std::vector<int>{1, 2}; }).size(), 2u);
  EXPECT_EQ(asked, 0);
  // A std::bad_alloc becomes an OutOfMemory naming the allocation and its bytes.
  try {
    naming_allocation(size_t(3) << 30, what, []() -> int { throw std::bad_alloc(); });
    ADD_FAILURE() << "no exception";
  } catch (const OutOfMemory& e) {
    EXPECT_STREQ(e.what(), "the buffer needs 3.00 GiB: out of memory");
  }
  EXPECT_EQ(asked, 1);
  // An OutOfMemory from inside (a more precise allocation) passes unchanged.
  try {
    naming_allocation(1, what, []() -> int { throw OutOfMemory("inner needs 2 B: out of memory"); });
    ADD_FAILURE() << "no exception";
  } catch (const OutOfMemory& e) {
    EXPECT_STREQ(e.what(), "inner needs 2 B: out of memory");
  }
  EXPECT_EQ(asked, 1);
}

}  // namespace
}  // namespace kq
