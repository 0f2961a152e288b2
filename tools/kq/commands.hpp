#pragma once
// Each `kq` subcommand lives in its own file and registers itself here.
#include <CLI/CLI.hpp>

namespace kq::cli {

void add_info_command(CLI::App& app);
void add_eval_command(CLI::App& app);      // tools/kq/eval.cpp
void add_generate_command(CLI::App& app);  // tools/kq/generate.cpp
void add_quantize_command(CLI::App& app);  // tools/kq/quantize.cpp
void add_bench_command(CLI::App& app);     // tools/kq/bench.cpp
void add_compare_command(CLI::App& app);   // tools/kq/compare.cpp
void add_tokenize_command(CLI::App& app);  // tools/kq/tokenize.cpp

}  // namespace kq::cli
