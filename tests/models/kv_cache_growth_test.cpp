// KVCache::reserve (a host cache grown with its tokens kept, as `kq generate` grows its cache while it
// generates) and the uninitialized host storage: logits after a growth are bit-identical to those of a cache
// that was large enough from the start, and no kernel reads the positions not yet filled (NaN there changes
// nothing).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

using namespace kq;

namespace {

/// A small Llama with grouped-query attention (4 query heads, 2 KV heads).
ModelConfig tiny_llama() {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = 96;
  c.norm_eps = 1e-6;
  c.tie_word_embeddings = false;
  c.activation = "silu";
  return c;
}

std::vector<int32_t> prompt_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 37 + 7) % vocab);
  return t;
}

/// Fills positions [size(), capacity()) of every layer's keys and values with NaN.
void poison_unused(KVCache& c) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t l = 0; l < c.num_layers(); ++l)
    for (float* base : {c.keys(l), c.values(l)})
      for (int64_t g = 0; g < c.num_kv_heads(); ++g)
        std::fill(base + (g * c.capacity() + c.size()) * c.head_dim(), base + (g + 1) * c.capacity() * c.head_dim(),
                  nan);
}

int32_t argmax(const std::vector<float>& v) { return int32_t(std::max_element(v.begin(), v.end()) - v.begin()); }

/// A prompt of `prompt` tokens, then greedy decode until the model's context is full: once with a cache of
/// the whole context, once with one of `first` positions grown (doubled, at most the context) whenever
/// full. The logits of every step must be the same bits; the grown cache's unused part holds NaN.
/// `through_model`: grown by Model::reserve_cache instead of KVCache::reserve.
void expect_growth_bit_identical(Model& m, int64_t prompt, int64_t first, bool through_model = false) {
  const int64_t V = m.config().vocab_size, max_pos = m.config().max_positions;
  KVCache full = m.make_cache(max_pos), grown = m.make_cache(first);
  poison_unused(grown);
  std::vector<float> want(static_cast<size_t>(V)), got(static_cast<size_t>(V));
  const std::vector<int32_t> p = prompt_tokens(prompt, V);
  m.forward(p, full, want.data(), /*all_logits=*/false);
  m.forward(p, grown, got.data(), /*all_logits=*/false);
  ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << "prefill";
  int growths = 0;
  while (full.size() < max_pos) {
    const int32_t next = argmax(want);
    if (grown.size() == grown.capacity()) {
      const int64_t before = grown.size();
      if (through_model)
        m.reserve_cache(grown, std::min(max_pos, 2 * grown.capacity()));
      else
        grown.reserve(std::min(max_pos, 2 * grown.capacity()));
      ASSERT_EQ(grown.size(), before);
      poison_unused(grown);
      ++growths;
    }
    m.forward(std::span(&next, 1), full, want.data());
    m.forward(std::span(&next, 1), grown, got.data());
    ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << "position " << full.size();
    ASSERT_TRUE(std::isfinite(got[0]));
  }
  EXPECT_GE(growths, 2);
  EXPECT_EQ(grown.capacity(), max_pos);
  EXPECT_EQ(grown.bytes(), full.bytes());
}

}  // namespace

TEST(KvCacheGrowth, GrownCacheGivesBitIdenticalLogitsLlama) {
  auto m = Model::random(tiny_llama(), 5, ExecContext{Device::CPU, 2});
  expect_growth_bit_identical(*m, 12, 20);  // 12 rows: the GEMM (prefill) attention path; 20 -> 40 -> 80 -> 96
  expect_growth_bit_identical(*m, 3, 5);    // 3 rows: the direct (decode) path
}

TEST(KvCacheGrowth, ModelReserveCacheGrowsAHostCache) {
  auto m = Model::random(tiny_llama(), 6, ExecContext{Device::CPU, 2});
  expect_growth_bit_identical(*m, 12, 20, /*through_model=*/true);
  KVCache c = m->make_cache(8);
  c.advance(3);
  m->reserve_cache(c, 4);  // not larger: nothing changes
  EXPECT_EQ(c.capacity(), 8);
  EXPECT_THROW(m->reserve_cache(c, m->config().max_positions + 1), InvalidArgument);
  EXPECT_EQ(c.capacity(), 8);
  EXPECT_EQ(c.size(), 3);
  KVCache other(3, 2, 16, 8);  // three layers: not this model's
  EXPECT_THROW(m->reserve_cache(other, 16), InvalidArgument);
  EXPECT_EQ(other.capacity(), 8);
}

TEST(KvCacheGrowth, GrownCacheGivesBitIdenticalLogitsGpt2) {
  auto m = Model::load(kq::testing::demo_model(), ExecContext{Device::CPU, 2});
  expect_growth_bit_identical(*m, 9, 16);
}

// The host storage is not initialized: a kernel reading past the filled positions (masked SIMD over the
// capacity, 0 x NaN in a GEMM) would show here.
TEST(KvCacheGrowth, UnfilledPositionsAreNeverRead) {
  auto m = Model::random(tiny_llama(), 7, ExecContext{Device::CPU, 2});
  const int64_t V = m->config().vocab_size;
  for (const int64_t prompt : {3, 20}) {  // the direct and the GEMM attention paths
    KVCache clean = m->make_cache(), poisoned = m->make_cache();
    for (int64_t l = 0; l < clean.num_layers(); ++l) {
      std::fill_n(clean.keys(l), clean.num_kv_heads() * clean.capacity() * clean.head_dim(), 0.0f);
      std::fill_n(clean.values(l), clean.num_kv_heads() * clean.capacity() * clean.head_dim(), 0.0f);
    }
    poison_unused(poisoned);
    const std::vector<int32_t> p = prompt_tokens(prompt, V);
    std::vector<float> want(static_cast<size_t>(prompt * V)), got(static_cast<size_t>(prompt * V));
    m->forward(p, clean, want.data());
    m->forward(p, poisoned, got.data());
    ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << "prompt " << prompt;
    for (int step = 0; step < 10; ++step) {
      const int32_t next = int32_t((step * 53 + 3) % V);
      m->forward(std::span(&next, 1), clean, want.data());
      m->forward(std::span(&next, 1), poisoned, got.data());
      ASSERT_EQ(std::memcmp(want.data(), got.data(), size_t(V) * sizeof(float)), 0) << "step " << step;
      ASSERT_TRUE(std::isfinite(got[0]));
    }
  }
}

TEST(KvCacheGrowth, ReserveKeepsASmallerCapacityAndRefusesDeviceCaches) {
  KVCache c(2, 2, 4, 8);
  c.advance(3);
  c.reserve(4);  // not larger: nothing changes
  EXPECT_EQ(c.capacity(), 8);
  EXPECT_EQ(c.size(), 3);
  c.reserve(20);
  EXPECT_EQ(c.capacity(), 20);
  EXPECT_EQ(c.size(), 3);
  EXPECT_EQ(c.bytes(), size_t(2 * 2 * 2 * 20 * 4) * sizeof(float));
  KVCache device(2, 2, 4, 8, Device::CUDA, std::make_shared<int>(0));
  EXPECT_THROW(device.reserve(16), Unsupported);
  EXPECT_EQ(device.capacity(), 8);
  KVCache moved_from;
  EXPECT_THROW(moved_from.reserve(16), InvalidArgument);
}

// An empty cache (default-constructed or moved-from) and one grown with KVCache::reserve past the model's
// max_positions are named as such (tester24 F8: forward said "the KV cache (layers 0, ...) was not made for this
// model" for both, KVCache::reserve "sizes must be positive (layers 0, ...)"); a cache of another shape still
// says it was not made for this model.
TEST(KvCacheGrowth, EmptyAndOverlongCachesAreNamedAsSuch) {
  using kq::testing::error_of;
  using kq::testing::has;
  auto m = Model::random(tiny_llama(), 8, ExecContext{Device::CPU, 2});
  const int64_t V = m->config().vocab_size;
  const std::vector<int32_t> t = prompt_tokens(3, V);
  std::vector<float> logits(static_cast<size_t>(3 * V));
  KVCache made = m->make_cache(16);
  KVCache taken = std::move(made);
  KVCache fresh;
  for (KVCache* empty : {&made, &fresh}) {  // NOLINT(bugprone-use-after-move): the documented moved-from state
    const std::string f = error_of<InvalidArgument>([&] { m->forward(t, *empty, logits.data()); });
    EXPECT_TRUE(has(f, "forward: the KV cache is empty (default-constructed or moved-from: no layers, capacity 0); "
                       "make one with this model's make_cache()"))
        << f;
    KVCache* one[] = {empty};
    const std::string d =
        error_of<InvalidArgument>([&] { m->decode_batch(std::span(t).first(1), one, logits.data()); });
    EXPECT_TRUE(has(d, "decode_batch: the KV cache is empty")) << d;
    const std::string g = error_of<InvalidArgument>([&] { m->reserve_cache(*empty, 32); });
    EXPECT_TRUE(has(g, "reserve_cache: the KV cache is empty")) << g;
    const std::string r = error_of<InvalidArgument>([&] { empty->reserve(16); });
    EXPECT_TRUE(has(r, "KVCache::reserve: the cache is empty (default-constructed or moved-from: no layers, "
                       "capacity 0); make one with Model::make_cache"))
        << r;
    EXPECT_FALSE(has(f + d + g + r, "was not made for this model") || has(r, "sizes must be positive")) << f << r;
  }
  EXPECT_NO_THROW(m->forward(t, taken, logits.data()));  // the cache moved into `taken` works

  // Grown by KVCache::reserve (which knows no model) past max_positions 96: named with max_positions.
  KVCache big = m->make_cache(96);
  big.reserve(200);
  const std::string f = error_of<InvalidArgument>([&] { m->forward(t, big, logits.data()); });
  EXPECT_TRUE(has(f, "forward: the KV cache's capacity of 200 positions exceeds the model's max_positions 96"))
      << f;
  EXPECT_FALSE(has(f, "was not made for this model")) << f;
  EXPECT_EQ(big.size(), 0);  // nothing run

  // Another model's shape (3 layers for 2).
  KVCache other(3, 2, 16, 8);
  const std::string o = error_of<InvalidArgument>([&] { m->forward(t, other, logits.data()); });
  EXPECT_TRUE(has(o, "forward: the KV cache (layers 3, kv heads 2, head_dim 16) was not made for this model "
                     "(layers 2, kv heads 2, head_dim 16)"))
      << o;
}
