#pragma once
// Each `kq` subcommand lives in its own file and registers itself here.
#include <CLI/CLI.hpp>

namespace kq::cli {

void add_info_command(CLI::App& app);

}  // namespace kq::cli
