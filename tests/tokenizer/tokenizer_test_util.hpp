#pragma once
// Helpers shared by the tokenizer tests: writing a file, loading a tokenizer
// while collecting its warnings, and expecting an error that names things.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"

namespace kq::testing {

/// Writes `text` to `p` (binary, replacing the file).
inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

/// Tokenizer::load(dir), with the warnings it gives appended to `warnings`
/// (the previous handler restored afterwards, also when load throws).
inline Tokenizer load_collecting_warnings(const std::filesystem::path& dir, std::vector<std::string>& warnings,
                                          const kq::LoadOptions& opts = {}) {
  const auto previous = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  struct Restore {
    WarningHandler h;
    ~Restore() { set_warning_handler(std::move(h)); }
  } restore{previous};
  return Tokenizer::load(dir, opts);
}

/// Expects `f` to throw E whose message contains every one of `needles`.
template <class E, class F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning '" << needles.at(0) << "'";
  } catch (const E& e) {
    for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

/// Expects `f` to throw E whose message contains `needle` (one needle: a
/// braced list of two C strings would also convert to std::string).
template <class E, class F>
void expect_error_containing(F&& f, const std::string& needle) {
  expect_error<E>(std::forward<F>(f), std::vector<std::string>{needle});
}

}  // namespace kq::testing
