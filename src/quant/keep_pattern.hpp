#pragma once
// Layer-name patterns of QuantizeOptions::keep_patterns (`--keep`), compiled
// and matched with PCRE2 within fixed bounds, so a hostile pattern fails with
// an InvalidArgument instead of overflowing the stack (std::regex recursed
// once per '(' and per character) or backtracking for hours.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kq {

/// Longest keep pattern accepted, in bytes (layer names are ~20-60 bytes).
inline constexpr size_t kMaxKeepPatternLength = 1024;
/// Deepest nesting of parentheses accepted in a keep pattern.
inline constexpr uint32_t kMaxKeepPatternNesting = 32;
/// PCRE2 match limit (backtracking steps) of one search of a layer name.
inline constexpr uint32_t kKeepPatternMatchLimit = 1'000'000;

/// A compiled keep pattern: a PCRE2 regular expression (Perl syntax, e.g.
/// lookbehind "(?<=h\\.0\\.)attn", "\\Q...\\E", possessive "++"; compiled with
/// no options: case-sensitive unless it says "(?i)", not UTF), checked and searched by PCRE2 alone
/// (also where a quantized folder's loader checks its keep_patterns), and
/// searched (not anchored) in the layer's module name.
class KeepPattern {
 public:
  /// Compiles `pattern`. Throws InvalidArgument (the message quotes the
  /// pattern, without a prefix naming the option) when it is longer than
  /// kMaxKeepPatternLength, is not valid UTF-8 (it is saved in a quantized
  /// folder's config.json), nests parentheses deeper than
  /// kMaxKeepPatternNesting, is not a valid regular expression, or
  /// backtracks catastrophically on a typical layer name such as
  /// "model.layers.31.self_attn.q_proj" (e.g. "(.*)*x$").
  explicit KeepPattern(std::string pattern);
  ~KeepPattern();
  KeepPattern(KeepPattern&&) noexcept;
  KeepPattern& operator=(KeepPattern&&) noexcept;
  KeepPattern(const KeepPattern&) = delete;
  KeepPattern& operator=(const KeepPattern&) = delete;

  /// True when the pattern occurs in `name`. Throws InvalidArgument naming
  /// the pattern and the name when the search exceeds kKeepPatternMatchLimit.
  bool search(std::string_view name) const;
  /// The pattern as given.
  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  std::string pattern_;
  std::unique_ptr<Compiled> c_;
};

/// Compiles every pattern (KeepPattern's checks), in order.
std::vector<KeepPattern> compile_keep_patterns(const std::vector<std::string>& patterns);

}  // namespace kq
