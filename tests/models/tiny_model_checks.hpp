#pragma once
// Helpers of the tiny-random-model tests (qwen3_test, phi3_test, gemma3_test, sliding_window_test): the relative
// L2 distance of two logit arrays, deterministic token ids, and a CPU load that must warn about nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "common/test_util.hpp"
#include "kq/model.hpp"

namespace kq::testing {

/// ||got − want||₂ / ||want||₂ over want.size() elements, in double.
template <class A, class B>
double rel_l2(const A& got, const B& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double(got[i]) - double(want[i])) * (double(got[i]) - double(want[i]));
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num / den);
}

/// n token ids spread over a vocabulary of `vocab`.
inline std::vector<int32_t> tokens_of(size_t n, int64_t vocab) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t((i * 37 + 11) % size_t(vocab));
  return v;
}

/// The model in `dir`, loaded on the CPU (2 threads), with no warning (every tensor read, none unused).
inline std::unique_ptr<Model> load_quietly(const std::filesystem::path& dir) {
  CapturedWarnings warnings;
  auto m = Model::load(dir, ExecContext{Device::CPU, 2});
  EXPECT_TRUE(warnings.list.empty()) << warnings.list.front();
  return m;
}

}  // namespace kq::testing
