// Sliding-window attention on the GPU, whole models: a tiny random Mistral (every layer windowed) and a tiny Qwen2
// (layer_types: layer 1 windowed), head_dim 64 so that prefill runs the tensor-core kernel, on sequences ten times
// their window of 7, loaded on CUDA (BF16 activations and KV cache) against the double-precision reference of
// tests/models/sliding_window_tiny.hpp: one prefill, and 5 tokens then one at a time through the KV cache (CUDA
// graph replays). Skips without a CUDA build and device (KQ_REQUIRE_CUDA=1 makes that a failure).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "models/sliding_window_tiny.hpp"

namespace kq {
namespace {

template <class A, class B>
double rel_l2(const A& got, const B& want, size_t from, size_t count) {
  double num = 0, den = 0;
  for (size_t i = from; i < from + count; ++i) {
    num += (double(got[i - from]) - double(want[i])) * (double(got[i - from]) - double(want[i]));
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num / den);
}

/// The model in `dir` on CUDA, or nullptr (the test skipped, or failed with KQ_REQUIRE_CUDA) when this build or
/// machine cannot run it.
std::unique_ptr<Model> load_on_cuda(const std::filesystem::path& dir, std::string& why) {
  try {
    return Model::load(dir, ExecContext{Device::CUDA, 2});
  } catch (const Unsupported& e) {
    why = e.what();
    return nullptr;
  }
}

void expect_windowed_model_on_cuda(const testing::TinyWindowed& s) {
  const auto tensors = testing::tiny_windowed_tensors(s);
  testing::TempDir tmp;
  const auto dir = testing::write_model_folder(tmp.path / "m", testing::tiny_windowed_config(s), tensors);
  std::string why;
  auto m = load_on_cuda(dir, why);
  if (!m) {
    if (std::getenv("KQ_REQUIRE_CUDA")) FAIL() << "KQ_REQUIRE_CUDA set: " << why;
    GTEST_SKIP() << why;
  }
  std::vector<int32_t> tokens(70);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 37 + 11) % size_t(s.vocab));
  const std::vector<double> want = testing::windowed_reference_logits(tensors, s, tokens, s.windows());
  const std::vector<double> unwindowed =
      testing::windowed_reference_logits(tensors, s, tokens, std::vector<int64_t>(size_t(s.layers), 0));
  const size_t V = size_t(s.vocab);
  const std::vector<float> got = testing::prefill_logits(*m, tokens);
  const double err = rel_l2(got, want, 0, want.size());
  std::printf("%s window %lld on CUDA: prefill vs double reference %.3g (reference without windows: %.3g)\n",
              s.model_type.c_str(), static_cast<long long>(s.window), err, rel_l2(got, unwindowed, 0, want.size()));
  EXPECT_LE(err, 2e-2);
  EXPECT_GT(rel_l2(got, unwindowed, 0, want.size()), 0.1);  // the windows matter far beyond BF16 rounding

  KVCache cache = m->make_cache(int64_t(tokens.size()));
  std::vector<float> step(5 * V);
  m->forward(std::span(tokens).first(5), cache, step.data(), /*all_logits=*/true);
  EXPECT_LE(rel_l2(step, want, 0, 5 * V), 2e-2);
  for (size_t i = 5; i < tokens.size(); ++i) {
    std::vector<float> row(V);
    m->forward(std::span(tokens).subspan(i, 1), cache, row.data(), /*all_logits=*/true);
    EXPECT_LE(rel_l2(row, want, i * V, V), 2e-2) << "decode step " << i;
  }
  EXPECT_GT(m->cuda_graph_replays(), 0) << "decode steps should replay CUDA graphs";
}

/// head_dim 64 (the prefill tensor-core kernel runs), GQA 4 over 2, vocabulary 128.
testing::TinyWindowed cuda_sizes() {
  testing::TinyWindowed s;
  s.hidden = 256;
  s.ffn = 256;
  s.vocab = 128;
  return s;
}

TEST(SlidingWindowCuda, TinyMistralMatchesADoubleReference) { expect_windowed_model_on_cuda(cuda_sizes()); }

TEST(SlidingWindowCuda, TinyQwen2WithLayerTypesMatchesADoubleReference) {
  testing::TinyWindowed s = cuda_sizes();
  s.model_type = "qwen2";
  s.seed = 9;
  expect_windowed_model_on_cuda(s);
}

}  // namespace
}  // namespace kq
