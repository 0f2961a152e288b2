#include "kernels/cpu/scratch.hpp"

#include <cstdint>
#include <memory>

namespace kq::cpu {
namespace {

struct Buffer {
  std::unique_ptr<std::byte[]> mem;
  size_t size = 0;
};

}  // namespace

void* thread_scratch(int slot, size_t bytes) {
  thread_local Buffer buffers[kScratchSlots];
  Buffer& b = buffers[slot];
  if (b.size < bytes) {
    b.mem = std::make_unique<std::byte[]>(bytes + 64);
    b.size = bytes;
  }
  const auto p = reinterpret_cast<uintptr_t>(b.mem.get());
  return b.mem.get() + (64 - p % 64) % 64;
}

}  // namespace kq::cpu
