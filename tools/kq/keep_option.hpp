#pragma once
// The validator of --keep (kq quantize, kq bench): a layer-name pattern must
// be a valid regular expression, checked while the command line is parsed, so
// a bad one is a usage error (exit status 2) naming the option, the pattern
// and what is wrong with it.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <regex>
#include <string>

namespace kq::cli {

/// CLI11 validator: the value compiles as a std::regex in ECMAScript syntax,
/// the syntax quantize_model() uses for QuantizeOptions::keep_patterns. The
/// message (CLI11 prefixes the option's name) quotes the pattern and the
/// std::regex_error, e.g. "'((' is not a valid regular expression (ECMAScript):
/// Mismatched '(' and ')' in regular expression". Help shows "REGEX".
inline CLI::Validator regex_pattern() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        try {
          const std::regex compiled(input, std::regex::ECMAScript);
          (void)compiled;
        } catch (const std::regex_error& e) {
          return fmt::format("'{}' is not a valid regular expression (ECMAScript): {}", input, e.what());
        }
        return {};
      },
      "REGEX");
}

}  // namespace kq::cli
