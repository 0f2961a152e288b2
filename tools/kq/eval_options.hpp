#pragma once
// Options that kq eval and kq compare declare alike: the evaluation text, the
// number of windows and the device. One place for their names, checks and help.
#include <CLI/CLI.hpp>
#include <string>

#include "int_option.hpp"
#include "path_option.hpp"

namespace kq::cli {

/// --text / -t: a required UTF-8 text file (input_text_path; '-' is refused).
inline void add_text_option(CLI::App* cmd, std::string& text) {
  cmd->add_option(
         "--text,-t", text,
         "UTF-8 text file, tokenized as one string (invalid UTF-8 is an error naming the byte offset; "
         "standard input is not read: '-' is an error)")
      ->required()
      ->check(input_text_path());
}

/// --samples: evaluate only the first N windows, N in [0, 2^30] (0 = all).
inline void add_samples_option(CLI::App* cmd, int& samples) {
  cmd->add_option("--samples", samples, "Evaluate only the first N windows (0 = all)")
      ->transform(integer_in(0, 1 << 30))
      ->capture_default_str();
}

/// --device: cpu, cuda or gpu (case-insensitive).
inline void add_device_option(CLI::App* cmd, std::string& device) {
  cmd->add_option("--device", device, "cpu or cuda (the GPU: BF16 activations, see docs/GPU.md)")
      ->check(CLI::IsMember({"cpu", "cuda", "gpu"}, CLI::ignore_case))
      ->capture_default_str();
}

}  // namespace kq::cli
