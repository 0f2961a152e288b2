// kq — the KernelQuant command-line tool.
#include <cstdio>
#include <exception>

#include <fmt/core.h>

#include "commands.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"

int main(int argc, char** argv) {
  CLI::App app{"kq — quantize transformer language models and run them fast (KernelQuant " +
               kq::version() + ")"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kq::version());
  kq::cli::add_info_command(app);
  kq::cli::add_eval_command(app);
  kq::cli::add_generate_command(app);
  kq::cli::add_quantize_command(app);
  kq::cli::add_bench_command(app);
  try {
    (void)kq::active_isa();  // a bad KQ_ISA fails every command the same way, up front
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kq::Error& e) {
    fmt::print(stderr, "kq: error: {}\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "kq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "kq: internal error: {}\n", e.what());
    return 2;
  }
  return 0;
}
