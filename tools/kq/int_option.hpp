#pragma once
// The one validator of every integer option of the `kq` CLI (--ctx, --samples,
// --threads, --runs, --seed, ...). CLI11's own Range said "Value abc not in
// range" for a value that is not a number at all, and its conversion
// (strtoll/strtoull, base 0) took "010" for octal 8 and turned "-1" into
// 2^64-1 for an unsigned option. This one reads decimal integers only and
// says which of three things is wrong: not a number, not an integer, or out
// of range. CLI11 prefixes the message with the option's name and the CLI
// exits with the usage status 2.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace kq::cli {

namespace detail {

/// A signed integer as a sign and a magnitude (covers int64 and uint64 alike).
struct SignedMagnitude {
  bool negative = false;
  uint64_t magnitude = 0;
};

template <typename T>
SignedMagnitude to_signed_magnitude(T v) {
  if constexpr (std::is_signed_v<T>) {
    if (v < 0) return {true, uint64_t(0) - uint64_t(int64_t(v))};  // exact for INT64_MIN too
  }
  return {false, uint64_t(v)};
}

/// a <= b.
inline bool less_equal(SignedMagnitude a, SignedMagnitude b) {
  if (a.negative != b.negative) return a.negative;
  return a.negative ? a.magnitude >= b.magnitude : a.magnitude <= b.magnitude;
}

}  // namespace detail

/// Reads `text` as a decimal integer in [lo, hi]: an optional '+' or '-' and
/// one or more digits, nothing else (no spaces, no hex or octal prefixes).
/// On success stores it in `value` and returns ""; otherwise returns the
/// message, without the option's name: "'abc' is not a number (expected an
/// integer in [0, 100])", "'1.5' is not an integer (...)" or "'-1' is out of
/// range (...)".
template <typename T>
std::string parse_integer_in(std::string_view text, T lo, T hi, T& value) {
  static_assert(std::is_integral_v<T> && sizeof(T) <= sizeof(uint64_t));
  const std::string expected = fmt::format("expected an integer in [{}, {}]", lo, hi);
  std::string_view digits = text;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  const bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0;
  });
  if (!all_digits) {
    double d = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    const bool is_number = ec == std::errc() && end == text.data() + text.size() && !text.empty();
    return fmt::format("'{}' is not {} ({})", text, is_number ? "an integer" : "a number", expected);
  }
  uint64_t magnitude = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
  (void)end;  // all digits: consumed entirely unless out of range
  const std::string out_of_range = fmt::format("'{}' is out of range ({})", text, expected);
  if (ec != std::errc()) return out_of_range;  // more than 2^64-1
  const detail::SignedMagnitude v{negative && magnitude != 0, magnitude};
  if (!detail::less_equal(detail::to_signed_magnitude(lo), v) ||
      !detail::less_equal(v, detail::to_signed_magnitude(hi)))
    return out_of_range;
  // In [lo, hi], so it fits T.
  if constexpr (std::is_signed_v<T>) {
    value = v.negative ? T(-int64_t(v.magnitude - 1) - 1) : T(v.magnitude);
  } else {
    value = T(v.magnitude);
  }
  return {};
}

/// The CLI11 validator of an integer option of type T taking values in
/// [lo, hi] (parse_integer_in). A valid value is rewritten in plain decimal,
/// so CLI11's own conversion afterwards reads the same number: add it with
/// Option::transform(), not check() (check() discards the rewrite, and "010"
/// would become octal 8 again). Help shows "INT in [lo - hi]" ("UINT ..." for
/// unsigned T).
template <typename T>
CLI::Validator integer_in(T lo, T hi) {
  return CLI::Validator(
      [lo, hi](std::string& input) {
        T value{};
        std::string error = parse_integer_in<T>(input, lo, hi, value);
        if (error.empty()) input = std::to_string(value);
        return error;
      },
      fmt::format("{} in [{} - {}]", std::is_signed_v<T> ? "INT" : "UINT", lo, hi));
}

/// The validator of --ctx (kq eval, kq bench), a window length in tokens: 0
/// (the model's context length) or 2 .. 2^30. 1 is out of range for every
/// model (a window of one token has no next token to score), so it is a usage
/// error too, not an error of the run. Add it with transform(), as integer_in.
inline CLI::Validator window_length() {
  return CLI::Validator(
      [](std::string& input) {
        int value = 0;
        std::string error = parse_integer_in<int>(input, 0, 1 << 30, value);
        // The range as the help gives it (1 is not a window), not parse_integer_in's "[0, 1073741824]".
        if (const size_t at = error.find("[0, 1073741824]"); at != std::string::npos)
          error.replace(at, 15, "[2, 1073741824] or 0 (the model's context length)");
        if (error.empty() && value == 1)
          error = "'1' is out of range: a window of 1 token scores nothing (give 0 = the model's context length, or "
                  "2 to 1073741824)";
        if (error.empty()) input = std::to_string(value);
        return error;
      },
      "INT 0 or in [2 - 1073741824]");
}

}  // namespace kq::cli
