#pragma once
// --keep (kq quantize, kq bench). A layer-name pattern must be a valid, bounded regular expression, checked
// while the command line is parsed, so a bad one is a usage error (exit
// status 2) naming the option, the pattern and what is wrong with it.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "kq/error.hpp"
#include "quant/keep_pattern.hpp"

namespace kq::cli {

/// CLI11 validator: the value is a keep pattern that KeepPattern compiles
/// (valid UTF-8 and PCRE2, at most kMaxKeepPatternLength bytes and
/// kMaxKeepPatternNesting nested parentheses, no catastrophic backtracking on
/// a layer name); the empty pattern, which would keep every layer, is
/// refused. The message (CLI11 prefixes the option's name) quotes the
/// pattern, e.g. "'((' is not a valid regular expression: missing closing
/// parenthesis (at offset 2)". Help shows "REGEX".
inline CLI::Validator regex_pattern() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        if (input.empty()) return "the pattern is empty (it would keep every layer); give a layer-name regex";
        try {
          const KeepPattern compiled(input);
          (void)compiled;
        } catch (const InvalidArgument& e) {
          return e.what();
        }
        return {};
      },
      "REGEX");
}

/// Adds the repeatable --keep option to `cmd`. Each occurrence is one pattern
/// taken verbatim: CLI11's list syntax is off for it (allow_extra_args
/// false: "[mlp]" stayed "mlp" and "[c_fc,c_proj]" became two patterns; no
/// delimiter: "a,b" stays one alternation-free pattern), so a character class
/// reaches the matcher unchanged. One value per occurrence, all occurrences
/// kept (expected(1), TakeAll), so help shows "--keep TEXT:REGEX", not the
/// "TEXT:REGEX ..." of a list, which suggested `--keep c_fc c_attn`.
inline CLI::Option* add_keep_option(CLI::App* cmd, std::vector<std::string>& keep, const std::string& help) {
  return cmd->add_option("--keep", keep, help)
      ->allow_extra_args(false)
      ->delimiter('\0')
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->check(regex_pattern());
}

}  // namespace kq::cli
