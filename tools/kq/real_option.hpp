#pragma once
// The CLI11 validator of the floating-point options of `kq` (--temperature,
// --top-p): a finite decimal number in an interval, checked while the command
// line is parsed, so a value out of range is a usage error (exit status 2)
// like an out-of-range integer (int_option.hpp), and --help shows the range.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>

namespace kq::cli {

/// An interval of real numbers; an infinite bound means "no bound" on that side.
struct RealInterval {
  double lo = 0, hi = 0;
  bool lo_open = false, hi_open = false;  ///< (lo, ... excludes lo; ..., hi) excludes hi

  bool contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
  /// "[0, 1]", "(0, 1]", "[0, inf)".
  std::string text() const {
    const auto bound = [](double b) { return std::isinf(b) ? std::string(b > 0 ? "inf" : "-inf") : fmt::format("{}", b); };
    return fmt::format("{}{}, {}{}", lo_open || std::isinf(lo) ? '(' : '[', bound(lo), bound(hi),
                       hi_open || std::isinf(hi) ? ')' : ']');
  }
};

/// Reads `text` as a finite decimal number (std::from_chars: optional '-',
/// digits, optional fraction and exponent; no spaces, no "nan" or "inf") in
/// `range`. On success stores it in `value` and returns ""; otherwise the
/// message, without the option's name: "'abc' is not a number (expected a
/// finite number in (0, 1])", "'nan' is not a finite number (...)", "'1.5' is
/// out of range (...)".
inline std::string parse_real_in(std::string_view text, const RealInterval& range, double& value) {
  const std::string expected = fmt::format("expected a finite number in {}", range.text());
  std::string_view digits = text;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);  // "+0.5" (from_chars takes '-' only)
  double d = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), d);
  if (digits.empty() || end != digits.data() + digits.size() ||
      (ec != std::errc() && ec != std::errc::result_out_of_range))
    return fmt::format("'{}' is not a number ({})", text, expected);
  if (!std::isfinite(d) && ec == std::errc()) return fmt::format("'{}' is not a finite number ({})", text, expected);
  if (ec == std::errc::result_out_of_range || !range.contains(d))
    return fmt::format("'{}' is out of range ({})", text, expected);
  value = d;
  return {};
}

/// The CLI11 validator of a floating-point option of type T (float or
/// double) taking finite values in `range` (parse_real_in), checked as the T
/// the option holds: a value finite as a double but not as a T (1e39 for a
/// float) is out of range, and so is one that a T rounds to a value out of
/// range (--top-p 1e-50 becomes a float 0, outside (0, 1]: the message names
/// the value given and what it rounds to). One that rounds to a value in range
/// is that value (--temperature 1e-46 is a float 0: greedy, as --temperature 0,
/// with its warnings). Help shows "FLOAT in (0, 1]".
template <typename T>
CLI::Validator real_in(RealInterval range) {
  return CLI::Validator(
      [range](std::string& input) {
        double value = 0;
        std::string error = parse_real_in(input, range, value);
        if (error.empty() && std::fabs(value) > double(std::numeric_limits<T>::max()))
          error = fmt::format("'{}' is out of range (expected a finite number in {})", input, range.text());
        else if (error.empty() && !range.contains(double(T(value))))
          error = fmt::format("'{}' is out of range (expected a finite number in {}; as a {} it is {})", input,
                              range.text(), sizeof(T) == sizeof(float) ? "float" : "double", T(value));
        return error;
      },
      fmt::format("FLOAT in {}", range.text()));
}

}  // namespace kq::cli
