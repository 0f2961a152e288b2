#pragma once
// The validator of the quantization-mode options (`kq bench --modes`, `kq
// quantize --mode`): a mode name parse_quant_mode does not know is a usage
// error (exit status 2) before any work, like every other malformed option
// value; CLI11 prefixes the message with the option's name.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <string>

#include "adaptive_option.hpp"
#include "kq/adaptive.hpp"
#include "kq/error.hpp"
#include "kq/quantize.hpp"

namespace kq::cli {

/// How an int4 mode name reads, for the help of `kq quantize --mode` and `kq
/// bench --modes` (parse_quant_mode's ambiguity rule).
inline constexpr const char* kInt4NamingHelp =
    "int4 alone is nf4 (NF4, the specification's INT4); int4-gN, int4-sym, int4-asym are integer INT4 (groups of N, "
    "default 128); any other int4-... name (int4-b64, int4-bf16) is refused as ambiguous.";

/// The adaptive modes for the list of valid modes in the unknown-mode error
/// (valid_adaptive_mode_names), with what "adaptive" and P mean.
inline std::string adaptive_modes_for_list() {
  return fmt::format(
      "{} (adaptive = {}; P: the per cent of the linear layers' bytes (in their on-disk dtype) to remove, in "
      "(0, 100), e.g. adaptive-r85)",
      fmt::join(valid_adaptive_mode_names(), ", "), adaptive_mode_name(AdaptiveOptions{}));
}

/// Accepts what parse_quant_mode or (for names starting with "adaptive")
/// parse_adaptive_mode accepts; otherwise its message (the unknown name and
/// the valid modes, the adaptive ones included, or the adaptive form). An
/// adaptive target that no model can reach (adaptive_target_beyond_limit:
/// above NF4's 87.1 %) is refused too, so `kq bench --modes int8
/// adaptive-r99` fails before int8 runs.
inline CLI::Validator quant_mode() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        // `--modes --no-latency`: CLI11 gives the option to --modes as its required value.
        if (value.starts_with("--"))
          return "expected a mode name, got the option '" + value + "'";
        try {
          if (is_adaptive_mode(value))  // adaptive, adaptive-r85, ... (kq/adaptive.hpp)
            return adaptive_target_beyond_limit(parse_adaptive_mode(value), "mode '" + shown_mode(value) + "'");
          else
            (void)parse_quant_mode(value, adaptive_modes_for_list());
          return {};
        } catch (const InvalidArgument& e) {
          return e.what();
        }
      },
      "MODE");
}

}  // namespace kq::cli
