#pragma once
// The non-empty check of the path options of kq eval, kq quantize and
// kq bench: an empty path is a malformed option value, so a usage error
// (exit status 2) naming the option, found while the command line is parsed.
#include <CLI/CLI.hpp>
#include <string>

namespace kq::cli {

/// CLI11 validator of path options (--model, --text, --out, --json,
/// --calibration): an empty value is a usage error (exit status 2); CLI11
/// prefixes the option's name.
inline CLI::Validator non_empty_path() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        return input.empty() ? std::string("the path is empty; give a file or folder") : std::string();
      },
      "PATH");
}

}  // namespace kq::cli
