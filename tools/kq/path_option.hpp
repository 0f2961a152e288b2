#pragma once
// The non-empty check of the path options of kq eval, kq quantize and
// kq bench: an empty path is a malformed option value, so a usage error
// (exit status 2) naming the option, found while the command line is parsed.
#include <CLI/CLI.hpp>
#include <string>

namespace kq::cli {

/// CLI11 validator of path options: an empty value is a usage error (exit
/// status 2) saying what to give, `what`: "file" (--text, --json,
/// --calibration) or "folder" (--model, --out); CLI11 prefixes the option's name.
inline CLI::Validator non_empty_path(const std::string& what) {
  return CLI::Validator(
      [what](std::string& input) -> std::string {
        return input.empty() ? "the path is empty; give a " + what : std::string();
      },
      "PATH");
}

}  // namespace kq::cli
