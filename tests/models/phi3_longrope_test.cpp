// Phi-3's longrope past original_max_position_embeddings, on a tiny random Phi-3 (tests/models/phi3_tiny.hpp) of
// original_max_position_embeddings 16 and max_position_embeddings 64, against the double-precision reference of
// tests/models/phi3_reference.hpp. What transformers does (modeling_rope_utils.py: dynamic_rope_update's
// longrope_frequency_update and _compute_longrope_parameters; modeling_phi3.py):
//  - a forward pass whose sequence ends at length L = max(position_ids) + 1 <= 16 rotates every position with the
//    short factors, one with L > 16 every position with the long factors; cos/sin times the one attention factor
//    sqrt(1 + ln(64/16) / ln 16) either way;
//  - keys already in the KV cache keep the rotation of the pass that stored them (the model's forward never
//    recomputes them): decoding one token at a time from a short prompt, position p uses the short factors for
//    p < 16 and the long ones from p = 16 on, for its query and its key alike;
//  - generate() (Phi3ForCausalLM.prepare_inputs_for_generation) drops the cache when the sequence first grows past
//    16 and runs it again as one pass: from then on every row is that of one pass over the sequence, all long.
// Each reference that the other rule would give differs from kq's logits by far more than the tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/config.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "models/phi3_reference.hpp"
#include "models/phi3_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
namespace {

using testing::rel_l2;
using testing::tokens_of;
using testing::phi3::RefRope;
using testing::phi3::reference_logits;
using testing::phi3::rope_of;
using testing::ref::Vec;

constexpr double kTol = 1e-5;      // kq F32 vs the double reference
constexpr double kDiffers = 1e-3;  // a reference with the other factors

testing::TinyPhi3 sizes() {
  testing::TinyPhi3 s;
  s.max_positions = 64;
  s.original_max_positions = 16;
  return s;
}

/// The tiny Phi-3 written to a folder and loaded, with its tensors for the reference.
struct Fixture {
  testing::TinyPhi3 s = sizes();
  std::map<std::string, Tensor> tensors = testing::tiny_phi3_tensors(s);
  testing::TempDir tmp;
  std::unique_ptr<Model> m =
      testing::load_quietly(testing::write_model_folder(tmp.path / "phi3", testing::tiny_phi3_config(s), tensors));
  RefRope shorts = rope_of(s), longs = rope_of(s, /*long_factors=*/true);
  /// The reference of one pass over `tokens` with the short or the long factors.
  Vec one_pass(const std::vector<int32_t>& tokens, bool long_factors) const {
    return reference_logits(tensors, s, long_factors ? longs : shorts, tokens);
  }
  /// The reference of positions computed one pass each from a prompt within the original context: the short
  /// factors before position 16, the long ones from it on.
  Vec by_position(const std::vector<int32_t>& tokens) const {
    const int64_t original = s.original_max_positions;
    return reference_logits(
        tensors, s, [&](int64_t pos) -> const RefRope& { return pos < original ? shorts : longs; }, tokens);
  }
};

/// Row i of logits [n, vocab] (F32 or double), as doubles.
template <class Logits>
Vec row(const Logits& logits, size_t i, size_t vocab) {
  return Vec(logits.begin() + std::ptrdiff_t(i * vocab), logits.begin() + std::ptrdiff_t((i + 1) * vocab));
}

TEST(Phi3LongRope, TheContextIsMaxPositionEmbeddings) {
  const Fixture f;
  const ModelConfig& c = f.m->config();
  EXPECT_EQ(c.max_positions, 64);
  EXPECT_EQ(c.rope_scaling.original_max_positions, 16);
  EXPECT_EQ(c.rope_scaling.long_factor, f.s.long_factor());
  EXPECT_DOUBLE_EQ(c.rope_scaling.attention_factor, std::sqrt(1 + std::log(4.0) / std::log(16.0)));
  EXPECT_EQ(f.m->make_cache(0).capacity(), 64);
}

// A prompt longer than the original context: every position with the long factors (the first 16 too).
TEST(Phi3LongRope, APromptPastTheOriginalContextUsesTheLongFactors) {
  const Fixture f;
  for (const size_t n : {17u, 40u, 64u}) {
    SCOPED_TRACE(n);
    const auto tokens = tokens_of(n, f.s.vocab);
    const std::vector<float> got = testing::prefill_logits(*f.m, tokens);
    const double err = rel_l2(got, f.one_pass(tokens, true));
    const double short_err = rel_l2(got, f.one_pass(tokens, false));
    const double mixed_err = rel_l2(got, f.by_position(tokens));
    std::printf("longrope prompt %zu: vs long factors %.3g, short %.3g, short before 16 %.3g\n", n, err, short_err,
                mixed_err);
    EXPECT_LT(err, kTol);
    EXPECT_GT(short_err, kDiffers);
    EXPECT_GT(mixed_err, kDiffers);
  }
}

// A prompt within the original context (up to exactly 16 tokens): the short factors.
TEST(Phi3LongRope, APromptWithinTheOriginalContextUsesTheShortFactors) {
  const Fixture f;
  for (const size_t n : {5u, 16u}) {
    SCOPED_TRACE(n);
    const auto tokens = tokens_of(n, f.s.vocab);
    const std::vector<float> got = testing::prefill_logits(*f.m, tokens);
    const double err = rel_l2(got, f.one_pass(tokens, false));
    const double long_err = rel_l2(got, f.one_pass(tokens, true));
    std::printf("longrope prompt %zu: vs short factors %.3g, long %.3g\n", n, err, long_err);
    EXPECT_LT(err, kTol);
    EXPECT_GT(long_err, kDiffers);
  }
}

// Model::forward's pass_end: one pass fed in chunks (an evaluation window) is the one call's pass, all long when
// it ends past 16, even for the chunks before position 16; without pass_end those chunks are passes of their own.
TEST(Phi3LongRope, OnePassInChunksIsThePassOfItsWholeLength) {
  const Fixture f;
  const size_t V = size_t(f.s.vocab);
  const auto tokens = tokens_of(40, f.s.vocab);
  const std::vector<float> whole = testing::prefill_logits(*f.m, tokens);
  KVCache cache = f.m->make_cache(40);
  std::vector<float> chunked(tokens.size() * V), alone(tokens.size() * V);
  for (size_t b = 0; b < tokens.size(); b += 8)
    f.m->forward(std::span(tokens).subspan(b, 8), cache, chunked.data() + b * V, true, /*pass_end=*/40);
  EXPECT_LT(rel_l2(chunked, whole), 1e-6);
  cache.reset();
  for (size_t b = 0; b < tokens.size(); b += 8)
    f.m->forward(std::span(tokens).subspan(b, 8), cache, alone.data() + b * V, true);
  EXPECT_LT(rel_l2(alone, f.by_position(tokens)), kTol);  // chunks ending at 8, 16: short; 24..40: long
  // pass_end below the call's end or past the context: refused before anything runs.
  cache.reset();
  EXPECT_THROW(f.m->forward(std::span(tokens).first(8), cache, nullptr, true, 7), InvalidArgument);
  EXPECT_THROW(f.m->forward(std::span(tokens).first(8), cache, nullptr, true, 65), InvalidArgument);
  EXPECT_EQ(cache.size(), 0);
}

// Decoding from a 10-token prompt across position 16 with the KV cache (Model::forward one token at a time, and
// decode_batch): the cached keys keep the short factors' rotation, the positions from 16 on use the long factors,
// as transformers' forward with past_key_values computes it. The reference: each position's query and key
// rotated with the factors of the pass that computed it (short before 16, long from 16).
TEST(Phi3LongRope, DecodingAcrossTheSwitchKeepsTheCachedKeysRotation) {
  const Fixture f;
  const size_t V = size_t(f.s.vocab), prefill = 10, n = 30;
  const auto tokens = tokens_of(n, f.s.vocab);
  const Vec want = f.by_position(tokens);
  const Vec all_long = f.one_pass(tokens, true);
  KVCache cache = f.m->make_cache(int64_t(n));
  std::vector<float> got(n * V);
  f.m->forward(std::span(tokens).first(prefill), cache, got.data(), true);
  for (size_t i = prefill; i < n; ++i) f.m->forward(std::span(tokens).subspan(i, 1), cache, got.data() + i * V, true);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_LT(rel_l2(row(got, i, V), row(want, i, V)), kTol) << "position " << i;
    // Past the switch, the stale short keys make the rows differ from one long pass's.
    if (i >= 16) {
      EXPECT_GT(rel_l2(row(got, i, V), row(all_long, i, V)), kDiffers) << "position " << i;
    }
  }
  // decode_batch: two sequences, one decoding at position 12 (short), one at 16 (long), each as forward() alone.
  KVCache a = f.m->make_cache(32), b = f.m->make_cache(32);
  std::vector<float> scratch(17 * V);
  f.m->forward(std::span(tokens).first(12), a, scratch.data(), true);
  f.m->forward(std::span(tokens).first(16), b, scratch.data(), true);
  const int32_t next[2] = {tokens[12], tokens[16]};
  KVCache* const caches[2] = {&a, &b};
  std::vector<float> batch(2 * V);
  f.m->decode_batch(next, caches, batch.data());
  EXPECT_LT(rel_l2(row(batch, 0, V), row(want, 12, V)), kTol);
  EXPECT_LT(rel_l2(row(batch, 1, V), row(want, 16, V)), kTol);
}

// Generation as transformers' generate() runs it: prefill a 10-token prompt, decode, and for the token after the
// 16th (longrope_recomputes_cache) run the whole sequence again as one pass; from there every row is that of one
// pass over the sequence so far, all long (the reference: one long pass). Before the switch, one short pass.
TEST(Phi3LongRope, GenerationRecomputesTheSequenceAtTheSwitch) {
  const Fixture f;
  const size_t V = size_t(f.s.vocab), prefill = 10, n = 30;
  const auto tokens = tokens_of(n, f.s.vocab);
  const Vec shorts = f.one_pass(tokens, false), longs = f.one_pass(tokens, true);
  KVCache cache = f.m->make_cache(int64_t(n));
  std::vector<float> last(V);
  f.m->forward(std::span(tokens).first(prefill), cache, last.data(), /*all_logits=*/false);
  EXPECT_LT(rel_l2(last, row(shorts, prefill - 1, V)), kTol);
  int recomputed = 0;
  for (size_t i = prefill; i < n; ++i) {
    if (longrope_recomputes_cache(f.m->config(), cache.size())) {
      ++recomputed;
      cache.reset();
      f.m->forward(std::span(tokens).first(i + 1), cache, last.data(), /*all_logits=*/false);
    } else {
      f.m->forward(std::span(tokens).subspan(i, 1), cache, last.data(), /*all_logits=*/false);
    }
    const Vec& want = i < 16 ? shorts : longs;
    EXPECT_LT(rel_l2(last, row(want, i, V)), kTol) << "position " << i;
  }
  EXPECT_EQ(recomputed, 1);
  EXPECT_EQ(cache.size(), int64_t(n));
}

}  // namespace
}  // namespace kq
