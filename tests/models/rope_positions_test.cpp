// RoPE tables sized to the positions run, not to max_position_embeddings:
// the values are those of a table built for every position (bit for bit),
// and a config with a huge max_position_embeddings allocates no big table.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "common/test_data.hpp"
#include "kq/model.hpp"
#include "models/backend.hpp"

using namespace kq;
using kq::testing::shared_dir;

namespace {

ModelConfig llama_config(int64_t max_positions) {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = max_positions;
  c.activation = "silu";
  return c;
}

/// Host bytes of cos + sin F32 tables for `positions` positions.
size_t rope_bytes(int64_t positions, int64_t head_dim) { return size_t(2 * positions * (head_dim / 2)) * 4; }

std::vector<int32_t> ids(size_t n, int64_t vocab) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  return v;
}

std::vector<float> run(Model& m, const std::vector<int32_t>& tokens, int64_t capacity) {
  std::vector<float> out(tokens.size() * size_t(m.config().vocab_size));
  KVCache cache = m.make_cache(capacity);
  m.forward(tokens, cache, out.data());
  return out;
}

TEST(RopePositions, SmallerTableIsAPrefixOfALargerOne) {
  const models::Rope small = models::make_rope(500000.0, 128, 256);
  const models::Rope large = models::make_rope(500000.0, 128, 4096);
  ASSERT_EQ(small.table.max_positions, 256);
  ASSERT_EQ(small.cos.host.shape(), (Shape{256, 64}));
  ASSERT_EQ(large.cos.host.shape(), (Shape{4096, 64}));
  const size_t n = 256 * 64;
  EXPECT_EQ(std::memcmp(small.table.cos.data(), large.table.cos.data(), n * 4), 0);
  EXPECT_EQ(std::memcmp(small.table.sin.data(), large.table.sin.data(), n * 4), 0);
  EXPECT_EQ(std::memcmp(small.cos.host.raw(), large.cos.host.raw(), n * 4), 0);
  EXPECT_EQ(std::memcmp(small.sin.host.raw(), large.sin.host.raw(), n * 4), 0);
  EXPECT_EQ(std::memcmp(small.cos.host.raw(), small.table.cos.data(), n * 4), 0);
}

// 10^6 and 10^8 positions: the tables start at one prefill chunk (256
// positions) and grow only to the KV caches actually run.
TEST(RopePositions, HugeMaxPositionsAllocatesNoBigTable) {
  for (const int64_t max_pos : {int64_t(1'000'000), int64_t(100'000'000)}) {
    SCOPED_TRACE(max_pos);
    auto m = Model::random(llama_config(max_pos), 7);
    EXPECT_EQ(m->buffer_bytes(), rope_bytes(256, 16));
    const auto tokens = ids(40, 97);
    run(*m, tokens, 40);
    EXPECT_EQ(m->buffer_bytes(), rope_bytes(256, 16));  // 40 positions fit
    run(*m, std::vector<int32_t>(tokens.begin(), tokens.begin() + 3), 300);
    EXPECT_EQ(m->buffer_bytes(), rope_bytes(512, 16));  // at least doubles
    run(*m, std::vector<int32_t>(tokens.begin(), tokens.begin() + 3), 2000);
    EXPECT_EQ(m->buffer_bytes(), rope_bytes(2000, 16));
    run(*m, std::vector<int32_t>(tokens.begin(), tokens.begin() + 3), 1000);
    EXPECT_EQ(m->buffer_bytes(), rope_bytes(2000, 16));  // never shrinks
  }
  // Capped at max_position_embeddings.
  auto m = Model::random(llama_config(300), 7);
  EXPECT_EQ(m->buffer_bytes(), rope_bytes(256, 16));
  run(*m, ids(3, 97), 257);
  EXPECT_EQ(m->buffer_bytes(), rope_bytes(300, 16));
  // GPT-2 has no position buffer (its position embeddings are weights).
  ModelConfig g = llama_config(64);
  g.arch = Arch::GPT2;
  g.num_kv_heads = 4;
  g.intermediate_size = 256;
  g.activation = "gelu_new";
  g.tie_word_embeddings = true;
  EXPECT_EQ(Model::random(g, 7)->buffer_bytes(), 0u);
}

// decode_batch sizes the tables to its largest cache.
TEST(RopePositions, DecodeBatchGrowsToTheLargestCache) {
  auto m = Model::random(llama_config(1'000'000), 7);
  KVCache a = m->make_cache(40), b = m->make_cache(700);
  KVCache* caches[] = {&a, &b};
  const std::vector<int32_t> tokens = {3, 4};
  m->decode_batch(tokens, caches, nullptr);
  EXPECT_EQ(m->buffer_bytes(), rope_bytes(700, 16));
}

// The same weights with max_position_embeddings 40 (the whole table built
// at once, as before tables were sized on demand) and 10^6: identical logits.
TEST(RopePositions, LogitsIndependentOfMaxPositions) {
  auto small = Model::random(llama_config(40), 11);
  auto huge = Model::random(llama_config(1'000'000), 11);
  const auto tokens = ids(40, 97);
  EXPECT_EQ(run(*small, tokens, 40), run(*huge, tokens, 40));
}

// llama-small (512 positions): 200 tokens on a model whose tables cover 256
// positions give bit-identical logits to a model whose tables were first
// grown to all 512 (the table every model had before), prefill and decode.
TEST(RopePositions, SharedLlamaLogitsIdenticalWithGrownTable) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto dir = shared_dir() / "models/llama-small";
  auto fresh = Model::load(dir, ExecContext{Device::CPU, 2});
  auto full = Model::load(dir, ExecContext{Device::CPU, 2});
  const int64_t vocab = fresh->config().vocab_size, hd = fresh->config().head_dim;
  run(*full, {1}, fresh->config().max_positions);
  ASSERT_EQ(full->buffer_bytes(), rope_bytes(512, hd));
  ASSERT_EQ(fresh->buffer_bytes(), rope_bytes(256, hd));

  const auto tokens = ids(200, vocab);
  EXPECT_EQ(run(*fresh, tokens, 200), run(*full, tokens, 200));
  EXPECT_EQ(fresh->buffer_bytes(), rope_bytes(256, hd));

  // Decode past position 256 after a prefill: the cache of 300 grows the table.
  const auto longer = ids(300, vocab);
  auto decode = [&](Model& m) {
    KVCache cache = m.make_cache(300);
    std::vector<float> last(static_cast<size_t>(vocab));
    m.forward(std::span(longer).first(250), cache, nullptr);
    std::vector<float> out;
    for (size_t i = 250; i < longer.size(); ++i) {
      m.forward(std::span(longer).subspan(i, 1), cache, last.data());
      out.insert(out.end(), last.begin(), last.end());
    }
    return out;
  };
  EXPECT_EQ(decode(*fresh), decode(*full));
  EXPECT_EQ(fresh->buffer_bytes(), rope_bytes(512, hd));
}

}  // namespace
