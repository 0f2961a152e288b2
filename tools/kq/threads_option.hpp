#pragma once
// The --threads option, the same in every `kq` command: an integer in
// [0, kq::kMaxThreads] (0 = OpenMP's default), and a warning when it asks for more
// threads than the machine has.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <string>
#include <thread>

#include "int_option.hpp"
#include "kq/context.hpp"
#include "kq/warning.hpp"

namespace kq::cli {

/// Warns (kq::warn; the CLI prints each distinct warning once) when `text`,
/// a --threads value, is more than std::thread::hardware_concurrency() (not
/// warned when that is unknown, i.e. 0). Oversubscribed OpenMP threads share
/// the cores and usually make kq slower, never faster.
inline void warn_if_more_threads_than_cores(const std::string& text) {
  int threads = 0;
  if (!parse_integer_in<int>(text, 0, kMaxThreads, threads).empty()) return;  // the range check reports it
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores == 0 || unsigned(threads) <= cores) return;
  warn(fmt::format(
      "--threads {}: more threads than the {} this machine has (std::thread::hardware_concurrency()); "
      "the extra threads share the cores and usually make kq slower, not faster",
      threads, cores));
}

/// Checks OpenMP's default thread count, which a command takes when `cmd` (the
/// command run) has no --threads given: above kq::kMaxThreads (e.g.
/// OMP_NUM_THREADS=100000, which crashes libgomp) kq::resolve_threads throws
/// InvalidArgument naming OMP_NUM_THREADS; with OMP_NUM_THREADS set above
/// std::thread::hardware_concurrency() it is warned as --threads is. Called
/// once the command line is parsed, before the command runs any parallel region.
inline void check_default_threads(const CLI::App& cmd) {
  if (const CLI::Option* o = cmd.get_option_no_throw("--threads"); o && o->count() > 0) return;
  const int threads = kq::resolve_threads(0);
  const char* env = std::getenv("OMP_NUM_THREADS");
  const unsigned cores = std::thread::hardware_concurrency();
  if (!env || cores == 0 || unsigned(threads) <= cores) return;
  warn(fmt::format(
      "OMP_NUM_THREADS={} (OpenMP's default, used without --threads): more threads than the {} this machine has "
      "(std::thread::hardware_concurrency()); the extra threads share the cores and usually make kq slower, not "
      "faster",
      env, cores));
}

/// Adds --threads to `cmd`, stored in `threads`: range-checked while parsing
/// (integer_in: a usage error, exit 2) and warned when above the machine's
/// hardware threads (warn_if_more_threads_than_cores).
inline CLI::Option* add_threads_option(CLI::App* cmd, int& threads) {
  return cmd->add_option("--threads", threads,
                         "CPU threads (0 = OpenMP's default: OMP_NUM_THREADS when set, else every core kq may run "
                         "on; kq info prints it)")
      ->transform(integer_in(0, kMaxThreads))  // runs first (transform() puts it in front)
      ->each(warn_if_more_threads_than_cores)
      ->capture_default_str();
}

}  // namespace kq::cli
