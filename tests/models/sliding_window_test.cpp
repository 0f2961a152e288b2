// Sliding-window attention on sequences longer than the window (tests/models/sliding_window_tiny.hpp): a tiny
// random Mistral (every layer windowed, window 7) and a tiny Qwen2 whose layer_types window only layer 1 give on
// the CPU the logits of a double-precision forward with transformers' sliding_window_causal mask, in one prefill
// (two row blocks of the GEMM attention path), in chunks, and token by token with the KV cache; the context is
// max_position_embeddings, not the window.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "models/sliding_window_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
namespace {

const ExecContext kCpu{Device::CPU, 2};

using testing::rel_l2;
using testing::tokens_of;

/// Rows [from, to) of logits [rows, vocab].
std::vector<float> rows_of(const std::vector<float>& all, size_t from, size_t to, size_t vocab) {
  return {all.begin() + std::ptrdiff_t(from * vocab), all.begin() + std::ptrdiff_t(to * vocab)};
}

/// Checks the model of sizes `s` written to a temporary folder: its prefill logits of 70 tokens against the
/// double-precision reference with its layers' windows (and, to show the windows matter, against references
/// with other windows: `other_windows`, each far off); a prefill in chunks of 30 and 40 rows and 5 rows then
/// one token at a time through the KV cache give the full pass's rows.
void expect_windowed_model_matches(const testing::TinyWindowed& s,
                                   const std::vector<std::vector<int64_t>>& other_windows) {
  const auto tensors = testing::tiny_windowed_tensors(s);
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "m", testing::tiny_windowed_config(s), tensors);
  auto m = Model::load(dir, kCpu);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.max_positions, s.max_positions);  // not capped at the window
  EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
  EXPECT_EQ(c.sliding_window, s.window);
  for (int64_t l = 0; l < s.layers; ++l) EXPECT_EQ(layer_window(c, l), s.windows()[size_t(l)]) << "layer " << l;

  const auto tokens = tokens_of(70, s.vocab);  // 10 windows of 7; two 64-row blocks of the GEMM path
  const std::vector<float> got = testing::prefill_logits(*m, tokens);
  const std::vector<double> want = testing::windowed_reference_logits(tensors, s, tokens, s.windows());
  ASSERT_EQ(got.size(), want.size());
  const double err = rel_l2(got, want);
  std::printf("%s window %lld: CPU F32 vs double reference logits, relative L2 %.3g\n", s.model_type.c_str(),
              static_cast<long long>(s.window), err);
  EXPECT_LT(err, 1e-5);
  for (const auto& w : other_windows) {
    const double other = rel_l2(got, testing::windowed_reference_logits(tensors, s, tokens, w));
    std::printf("  vs a reference with other windows: %.3g\n", other);
    EXPECT_GT(other, 1e-3);
  }

  const size_t V = size_t(s.vocab);
  {  // two chunks: the second (pos0 30) starts past several windows
    KVCache cache = m->make_cache(int64_t(tokens.size()));
    std::vector<float> a(30 * V), b(40 * V);
    m->forward(std::span(tokens).first(30), cache, a.data(), /*all_logits=*/true);
    m->forward(std::span(tokens).subspan(30), cache, b.data(), /*all_logits=*/true);
    EXPECT_LT(rel_l2(a, rows_of(got, 0, 30, V)), 1e-6);
    EXPECT_LT(rel_l2(b, rows_of(got, 30, 70, V)), 1e-6);
  }
  // Decode: 5 tokens of prefill, then one at a time through the KV cache (the direct attention path).
  KVCache cache = m->make_cache(int64_t(tokens.size()));
  std::vector<float> step(5 * V);
  m->forward(std::span(tokens).first(5), cache, step.data(), /*all_logits=*/true);
  EXPECT_LT(rel_l2(step, rows_of(got, 0, 5, V)), 1e-6);
  for (size_t i = 5; i < tokens.size(); ++i) {
    std::vector<float> row(V);
    m->forward(std::span(tokens).subspan(i, 1), cache, row.data(), /*all_logits=*/true);
    EXPECT_LT(rel_l2(row, rows_of(got, i, i + 1, V)), 1e-6) << "decode step " << i;
  }
}

TEST(SlidingWindowModel, TinyMistralLongerThanItsWindowMatchesADoubleReference) {
  const testing::TinyWindowed s;  // every layer windowed (7)
  expect_windowed_model_matches(s, {{0, 0, 0}, {8, 8, 8}, {6, 6, 6}});
}

TEST(SlidingWindowModel, TinyQwen2WindowsOnlyItsSlidingAttentionLayers) {
  testing::TinyWindowed s;
  s.model_type = "qwen2";
  s.seed = 9;
  ASSERT_EQ(s.windows(), (std::vector<int64_t>{0, 7, 0}));  // layer_types: layer 1 only
  expect_windowed_model_matches(s, {{0, 0, 0}, {7, 7, 7}, {7, 0, 0}});
}

// A config built in code: a sliding_layers list that is neither empty nor one flag per layer is refused, naming
// the field; one flag per layer (or none: every layer) is taken.
TEST(SlidingWindowModel, ASlidingLayersListOfTheWrongLengthIsRefused) {
  const testing::TinyWindowed s;
  testing::TempDir tmp;
  ModelConfig c = load_model_config(testing::write_model_folder(tmp.path / "m", testing::tiny_windowed_config(s),
                                                                testing::tiny_windowed_tensors(s)));
  c.sliding_layers = {true, false};  // 3 layers
  const std::string e = testing::error_of<InvalidArgument>([&] { (void)Model::random(c, 1, kCpu); });
  EXPECT_TRUE(testing::has(e, "sliding_layers has 2 flags, expected none (every layer) or one per layer "
                              "(num_layers = 3)"))
      << e;
  c.sliding_layers = {true, false, true};
  EXPECT_NO_THROW((void)Model::random(c, 1, kCpu));
}

}  // namespace
}  // namespace kq
