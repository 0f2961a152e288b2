#pragma once
// Pre-tokenization: splits text into "words" with a regex run by PCRE2 (UTF +
// UCP, JIT when available): the GPT-2 one of openai/gpt-2 encoder.py (and of
// Hugging Face's ByteLevel pre-tokenizer with use_regex), or the pattern of a
// tokenizer.json's Split pre-tokenizer (Llama-3).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kq::tok {

/// The GPT-2 pre-tokenization pattern.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// A PCRE2 pattern that matches `text` literally (a Split pre-tokenizer's
/// {"String": text}): every ASCII character that is not a letter or digit is
/// escaped with a backslash (always a literal in PCRE2), all else is kept.
std::string literal_pattern(std::string_view text);

/// A compiled pre-tokenizer. Immutable; split() is thread-safe.
class Pretokenizer {
 public:
  /// Compiles `pattern` with PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF
  /// and JIT-compiles it when PCRE2 has a JIT. When PCRE2 rejects it: throws
  /// FormatError naming `source` (the file that gives the pattern), the
  /// pattern, PCRE2's message and the offset, or kq::Error when `source` is
  /// empty (kq's own pattern).
  explicit Pretokenizer(std::string_view pattern = kGpt2Pattern, std::string_view source = {});
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  /// Appends the pre-tokens of `text` to `out`, in order: the matches of the
  /// pattern and the runs of bytes between them (Hugging Face's Split with
  /// behavior "Isolated"; empty pieces are dropped). The pieces cover `text`
  /// exactly (their concatenation is `text`). Bytes between matches are only
  /// possible for a pattern that does not match everything or for invalid
  /// UTF-8, which never matches. As the regex iterator of Hugging Face
  /// tokenizers (Oniguruma's find_iter), an empty match ends the run before
  /// it, and one right where the previous match ended is skipped by one
  /// character. Throws kq::Error if PCRE2 reports a matching error (resource
  /// limits: a pattern that backtracks catastrophically) naming the file that
  /// gives the pattern, the pattern and the byte of `text` where the failing
  /// match attempt started.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

  /// true when the pattern was JIT-compiled.
  bool jit() const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> c_;
};

}  // namespace kq::tok
