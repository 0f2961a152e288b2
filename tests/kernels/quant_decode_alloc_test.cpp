// The decode (M = 1) path of every quantized Linear performs no heap
// allocation once warmed up: scratch is per-thread and grow-only. Global
// operator new is replaced in this test program to count allocations.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "isa_test_util.hpp"
#include "kernels/quantized_linear.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};

void* counted_alloc(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(size_t n) { return counted_alloc(n); }
void* operator new[](size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace kq::testing {
namespace {

TEST(QuantDecode, NoHeapAllocationOnceWarm) {
  g_allocs = 0;  // the counter itself works
  g_counting = true;
  delete new int(1);
  g_counting = false;
  ASSERT_EQ(g_allocs.load(), 1);

  const int64_t N = 37, K = 300;
  std::vector<float> wv = gaussian(size_t(N * K), 3, 0.05f);
  Tensor w = Tensor::empty(DType::F32, {N, K});
  std::copy(wv.begin(), wv.end(), w.mutable_data<float>());
  const std::vector<float> x = gaussian(size_t(K), 4);
  std::vector<float> y(static_cast<size_t>(N));
  for (const char* mode : {"int8", "int8-wo", "fp8", "fp8-e5m2", "fp8-wo", "nf4", "fp4", "int4-g128",
                           "int4-g128-asym", "nf4-b32"}) {
    const auto op = quantize_linear(w, Tensor(), parse_quant_mode(mode));
    for (int threads : {1, 2}) {
      const ExecContext ctx{Device::CPU, threads};
      op->forward(x.data(), 1, y.data(), ctx);  // warm-up: scratch grows here
      op->forward(x.data(), 1, y.data(), ctx);
      g_allocs = 0;
      g_counting = true;
      for (int i = 0; i < 3; ++i) op->forward(x.data(), 1, y.data(), ctx);
      g_counting = false;
      EXPECT_EQ(g_allocs.load(), 0) << mode << " threads " << threads;
    }
  }
}

}  // namespace
}  // namespace kq::testing
