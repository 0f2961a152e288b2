#pragma once
// GPT-2 pre-tokenization: splits text into "words" with the regex of
// openai/gpt-2 encoder.py, run by PCRE2 (UTF + UCP, JIT when available).
#include <memory>
#include <string_view>
#include <vector>

namespace kq::tok {

/// The GPT-2 pre-tokenization pattern.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// A compiled GPT-2 pre-tokenizer. Immutable; split() is thread-safe.
class Pretokenizer {
 public:
  /// Compiles kGpt2Pattern with PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF
  /// and JIT-compiles it when PCRE2 has a JIT. Throws kq::Error if PCRE2 rejects it.
  Pretokenizer();
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  /// Appends the pre-tokens of `text` to `out`, in order. The pieces cover
  /// `text` exactly (their concatenation is `text`): bytes that no regex
  /// match covers (only possible for invalid UTF-8, which never matches)
  /// form pieces of their own, one per maximal uncovered run.
  /// Throws kq::Error if PCRE2 reports a matching error (resource limits).
  void split(std::string_view text, std::vector<std::string_view>& out) const;

  /// true when the pattern was JIT-compiled.
  bool jit() const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> c_;
};

}  // namespace kq::tok
