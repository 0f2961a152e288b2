#pragma once
// The non-empty check of the path options of kq eval, kq quantize and
// kq bench: an empty path (and, for an input text, "-") is a malformed option
// value, so a usage error (exit status 2) naming the option, found while the
// command line is parsed.
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

/// CLI11 validator of the input text options (--text of kq eval and kq bench,
/// --calibration of kq quantize and kq bench): as non_empty_path("file"), and
/// "-" (standard input, which kq does not read: the text is tokenized as one
/// string, and kq bench reads it once per mode) is a usage error (exit status
/// 2) too, as --help says ("'-' is an error"); it was exit status 1.
inline CLI::Validator input_text_path() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        if (input.empty()) return "the path is empty; give a file";
        if (input == "-")
          return "'-': reading the text from standard input is not supported; save it to a file and give its path";
        return std::string();
      },
      "PATH");
}

}  // namespace kq::cli
