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
#include "kq/error.hpp"
#include "kq/warning.hpp"

namespace kq::cli {

/// Warns (kq::warn; the CLI prints each distinct warning once) when `text`,
/// a --threads value, is more than kq::usable_cpus() (its CPU affinity; not
/// warned when that is unknown, i.e. 0). Oversubscribed OpenMP threads share
/// the cores and usually make kq slower, never faster.
inline void warn_if_more_threads_than_cores(const std::string& text) {
  int threads = 0;
  if (!parse_integer_in<int>(text, 0, kMaxThreads, threads).empty()) return;  // the range check reports it
  const unsigned cores = usable_cpus();
  if (cores == 0 || unsigned(threads) <= cores) return;
  warn(fmt::format(
      "--threads {}: more threads than the {} CPUs kq may run on (its CPU affinity); "
      "the extra threads share the cores and usually make kq slower, not faster",
      threads, cores));
}

/// Applies `cmd`'s (the command run) --threads N > 0 as OpenMP's default
/// (kq::set_default_threads), so that N bounds every parallel region, those
/// that take no ExecContext (quantization, AWQ's search, weight loading)
/// included, whatever OMP_NUM_THREADS says. Without --threads, or with
/// --threads 0, checks OpenMP's default, which the command then takes: above
/// kq::kMaxThreads (e.g. OMP_NUM_THREADS=100000, which crashes libgomp)
/// kq::resolve_threads throws InvalidArgument naming OMP_NUM_THREADS (and
/// ExecContext::threads, which the CLI reads as --threads); for a command
/// that has no --threads (`kq info`) the InvalidArgument names only
/// OMP_NUM_THREADS, the one setting such a command takes. With
/// OMP_NUM_THREADS set above the CPUs kq may run on it is warned as --threads
/// is (the warning names --threads only for a command that has it). Called
/// once the command line is parsed, before the command runs any parallel
/// region.
inline void apply_threads(const CLI::App& cmd) {
  const CLI::Option* option = cmd.get_option_no_throw("--threads");
  if (option && option->count() > 0)
    if (const int n = option->as<int>(); n > 0) return kq::set_default_threads(n);
  const char* env = std::getenv("OMP_NUM_THREADS");
  int threads = 0;
  try {
    threads = kq::resolve_threads(0);
  } catch (const InvalidArgument&) {
    if (option) throw;
    raise<InvalidArgument>("{}: OpenMP's default is more than {} threads, the most kq runs with; set "
                           "OMP_NUM_THREADS to at most {} (or unset it: one thread per core)",
                           env ? fmt::format("OMP_NUM_THREADS={}", env) : std::string("omp_get_max_threads()"),
                           kMaxThreads, kMaxThreads);
  }
  const unsigned cores = usable_cpus();
  if (!env || cores == 0 || unsigned(threads) <= cores) return;
  warn(fmt::format(
      "OMP_NUM_THREADS={} (OpenMP's default{}): more threads than the {} CPUs kq may run on (its CPU affinity); the "
      "extra threads share the cores and usually make kq slower, not faster",
      env, option ? ", used without --threads or with --threads 0" : "", cores));
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
