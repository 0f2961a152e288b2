#pragma once
// Small helpers the test programs share: substring checks and counts, writing and
// reading whole files, the shipped demo model, the message of an expected
// exception, captured warnings, a tiny model shape.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "kq/config.hpp"
#include "kq/warning.hpp"

namespace kq::testing {

/// true when `needle` occurs in `s`.
inline bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

/// How many times `needle` occurs in `s` (overlapping occurrences counted).
inline size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

/// Writes `text` to `p` byte for byte (created, or replaced), and returns `p`.
inline std::filesystem::path write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  return p;
}

/// The whole content of `p` ("" when it cannot be opened).
inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// The repository root: the KQ_SOURCE_DIR environment variable when set (the test programs run from another
/// checkout, e.g. carried to the GPU machine by scripts/gpu-run.sh), else the source tree they were built from.
inline std::filesystem::path source_dir() {
  if (const char* e = std::getenv("KQ_SOURCE_DIR"); e && *e) return e;
  return KQ_SOURCE_DIR;
}

/// The shipped demo model (always present), under source_dir().
inline std::filesystem::path demo_model() { return source_dir() / "models" / "gpt2-tiny"; }

/// Expects folders `a` and `b` to hold the same file names with the same bytes (top level only): e.g. two saved
/// quantized folders that must be identical. Names the first missing or differing file.
inline void expect_same_folder_files(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::vector<std::string> names_a, names_b;
  for (const auto& e : std::filesystem::directory_iterator(a)) names_a.push_back(e.path().filename().string());
  for (const auto& e : std::filesystem::directory_iterator(b)) names_b.push_back(e.path().filename().string());
  std::sort(names_a.begin(), names_a.end());
  std::sort(names_b.begin(), names_b.end());
  ASSERT_EQ(names_a, names_b) << a << " vs " << b;
  for (const auto& name : names_a) EXPECT_TRUE(read_all(a / name) == read_all(b / name)) << name << " differs";
}

/// The message of the E that `f` throws; a test failure (and "") when it throws nothing.
template <class E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception";
  return {};
}

/// Collects the library's warnings (kq::set_warning_handler) from its
/// construction to its destruction, which puts the previous handler back
/// (also when the test throws).
class CapturedWarnings {
 public:
  CapturedWarnings() : previous_(set_warning_handler([this](const std::string& w) { list.push_back(w); })) {}
  ~CapturedWarnings() { set_warning_handler(previous_); }
  CapturedWarnings(const CapturedWarnings&) = delete;
  CapturedWarnings& operator=(const CapturedWarnings&) = delete;

  std::vector<std::string> list;  ///< the warnings so far, in order

 private:
  WarningHandler previous_;
};

/// A small consistent GPT-2 shape (ModelConfig's defaults: gelu_new, tied
/// lm_head, eps 1e-5) for Model::random / random_quantized: vocab 64, hidden
/// 32, one layer of 2 heads of 16, MLP 64, 16 positions.
inline ModelConfig tiny_gpt2_config() {
  ModelConfig c;
  c.arch = Arch::GPT2;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = 16;
  return c;
}

}  // namespace kq::testing
