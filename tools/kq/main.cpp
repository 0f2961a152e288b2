// kq — the KernelQuant command-line tool.
//
// Exit status: 0 success; 1 an error in the input or the run (a kq::Error:
// missing or malformed files, option values the model cannot take, ...);
// 2 a usage error (unknown command or option, missing required option, a
// value of the wrong type or out of range); 3 `kq bench` ran but a mode
// failed its threshold; 70 an internal error (a bug: please report it).
// Output that cannot be written to standard output (a full disk, /dev/full,
// a closed stream or pipe) is an error: "kq: error writing to standard output:
// ...", 1; the result file a command was asked for (--json FILE, the --out
// folder) is written all the same (print_report, format_util.hpp). SIGPIPE is
// ignored, so a pipe closed early is such a write error (EPIPE), not the end
// of the process. Standard error carries diagnostics: a write to it that fails
// loses the message, never the exit status (diag.hpp).
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "core/out_of_memory.hpp"
#include "diag.hpp"
#include "format_util.hpp"
#include "io/atomic_dir.hpp"
#include "io/utf8_text.hpp"
#include "kernels/cpu/dispatch.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"
#include "kq/warning.hpp"
#include "omp_num_threads.hpp"
#include "option_names.hpp"
#include "progress.hpp"
#include "threads_option.hpp"
#include "wait_policy.hpp"

namespace {

constexpr int kUsageError = 2;
constexpr int kInternalError = 70;  // sysexits.h EX_SOFTWARE

/// The command word: the first argument when it is not an option (an option
/// first, e.g. `kq --threads 4 bench`, is left to CLI11, which names it).
const char* command_word(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]).starts_with("-")) return nullptr;
  return argv[1];
}

/// Levenshtein distance of two short strings (option names).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

/// The number of arguments CLI11 takes as the values of `opt` when it is
/// given without "=VALUE": the arguments right after it, whatever they start
/// with (`--prompt "-- Robert Frost"`, `-t -notes.txt`); 0 for a flag.
int values_taken(const CLI::Option& opt) {
  return std::max(0, std::min(opt.get_type_size_min(), opt.get_items_expected_min()));
}

/// The first "--name" (or "--name=value") or "-x" among the arguments after
/// the command word that `cmd` has no option for, with the closest option
/// name when one is near ("unknown option --modle (did you mean --model?)").
/// CLI11 checks required options before it reports unknown ones, so a
/// mistyped --model read "--model is required". The value of an option that
/// takes one (values_taken) is not an option even when it starts with '-'
/// (as CLI11 reads it), and arguments after "--" are not options.
std::optional<std::string> unknown_option(const CLI::App& cmd, int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    const std::string_view a(argv[i]);
    if (a == "--") return std::nullopt;
    // A short option: exactly "-x" with x a letter (not a negative number such as "-1").
    if (a.size() == 2 && a[0] == '-' && std::isalpha(static_cast<unsigned char>(a[1]))) {
      if (const CLI::Option* o = cmd.get_option_no_throw(std::string(a))) {
        i += values_taken(*o);
        continue;
      }
      return fmt::format("unknown option {} for 'kq {}'", a, cmd.get_name());
    }
    if (!a.starts_with("--") || a.size() < 3) continue;
    const std::string name(a.substr(0, a.find('=')));
    if (const CLI::Option* o = cmd.get_option_no_throw(name)) {
      if (name.size() == a.size()) i += values_taken(*o);  // "--name=value" carries its value
      continue;
    }
    std::string best;
    size_t best_d = 3;  // suggest only close names
    for (const CLI::Option* o : cmd.get_options()) {
      for (const std::string& l : o->get_lnames()) {
        const size_t d = edit_distance(name.substr(2), l);
        if (d < best_d) best_d = d, best = "--" + l;
      }
    }
    return best.empty() ? fmt::format("unknown option {} for 'kq {}'", name, cmd.get_name())
                        : fmt::format("unknown option {} for 'kq {}' (did you mean {}?)", name, cmd.get_name(), best);
  }
  return std::nullopt;
}

/// OpenMP threads that spin between parallel regions are a disaster on a
/// machine shared with other work (gpt2-tiny decode with 2 busy processes on
/// 2 cores: 16.6 tokens/s spinning vs 1,033 sleeping). libgomp reads
/// OMP_WAIT_POLICY when it is loaded, before main, so the CLI makes PASSIVE its
/// default by re-executing itself once with it set. A user's own setting
/// (e.g. ACTIVE for benchmarks on a dedicated machine) is left alone; one the
/// runtime would ignore (parse_wait_policy) is replaced by PASSIVE, with a
/// warning, since the runtime would otherwise spin as if it were unset.
void default_passive_wait(char** argv) {
  const char* env = std::getenv("OMP_WAIT_POLICY");
  if (env && kq::cli::parse_wait_policy(env)) return;
  if (env)
    kq::cli::print_diag(
        "kq: warning: OMP_WAIT_POLICY={} is not ACTIVE or PASSIVE (the OpenMP runtime ignores it); kq uses PASSIVE\n",
        kq::io::escape_for_terminal(env));
  if (::setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  ::execv("/proc/self/exe", argv);  // returns only when it fails: carry on with the default policy
}

/// OMP_NUM_THREADS that libgomp does not take (omp_num_threads_valid: "abc",
/// "0", ...) is ignored by it, with its own line "libgomp: Invalid value for
/// environment variable OMP_NUM_THREADS", printed by libgomp's constructor when
/// it is loaded, before main: that first line cannot be avoided. kq says what
/// the value means for it (the runtime's default, one thread per CPU; --threads
/// still applies) and unsets the variable, which changes nothing in this
/// process (libgomp has read it already) but spares the process that
/// default_passive_wait re-executes a second libgomp line, and kq a second
/// warning. Called before default_passive_wait.
void drop_invalid_omp_num_threads() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (!env || kq::cli::omp_num_threads_valid(env)) return;
  kq::cli::print_diag(
      "kq: warning: OMP_NUM_THREADS={} is not a positive integer (or a comma-separated list of them), so the OpenMP "
      "runtime ignores it; kq runs as if it were unset: OpenMP's default of one thread per CPU kq may run on, or "
      "--threads N\n",
      kq::io::escape_for_terminal(env));
  (void)::unsetenv("OMP_NUM_THREADS");
}

/// CLI11's message for an option given more often than it takes values,
/// "--prompt: At Most 1 required but received 2", said plainly: "--prompt was
/// given 2 times; it takes one value (give it once; quote a value with
/// spaces)"; its "The following argument was not expected: x" in kq's words,
/// naming the command (`command`: its word, or empty for kq itself). Other
/// messages are returned unchanged.
std::string plain_usage_message(std::string message, const std::string& command) {
  static const std::regex extras(R"(^The following arguments? (?:was|were) not expected: (.*)$)");
  static const std::regex at_most(R"(^(\S+): At Most (\d+) required but received (\d+)$)");
  std::smatch m;
  if (std::regex_match(message, m, extras)) {
    const std::string cmd = command.empty() ? "kq" : "kq " + command;
    std::vector<std::string> words;  // CLI11 lists them last first ("b a" for `kq info a b`)
    std::istringstream in(m[1].str());
    for (std::string w; in >> w;) words.insert(words.begin(), w);
    return fmt::format("unexpected argument{} {} for '{}' (see '{} --help' for what it takes)",
                       words.size() == 1 ? "" : "s", fmt::join(words, " "), cmd, cmd);
  }
  if (!std::regex_match(message, m, at_most)) return message;
  if (m[2] == "1")
    return fmt::format(
        "{} was given {} times; it takes one value (give it once; quote a value that has spaces)", m[1].str(),
        m[3].str());
  return fmt::format("{} takes at most {} values; it was given {}", m[1].str(), m[2].str(), m[3].str());
}

/// Flushes standard output (C stdio and std::cout, which CLI11's help and
/// --version use) and says whether everything written to it arrived. On a
/// failure prints "kq: error writing to standard output: <strerror>" to
/// stderr: a command whose output is lost has failed, whatever it computed.
/// `err` is the errno of a write that failed earlier (fmt::print and
/// cli::flush_stdout throw std::system_error), 0 if none is known (then that
/// of a report's failed write, cli::report_error).
bool stdout_ok(int err = 0) {
  if (err == 0) err = kq::cli::report_error(stdout);
  errno = 0;
  if (std::fflush(stdout) != 0 && errno != 0 && err == 0) err = errno;
  std::cout.flush();  // (synced with stdio: already flushed above)
  if (!std::ferror(stdout) && !std::cout.fail() && err == 0) return true;
  kq::cli::print_diag("kq: error writing to standard output: {}\n", err ? std::strerror(err) : "a write failed");
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  drop_invalid_omp_num_threads();
  default_passive_wait(argv);
  // A pipe closed early (`kq bench --json r.json | head -3`) makes writes to it fail with EPIPE, reported like
  // any failed write (stdout_ok), instead of killing kq by SIGPIPE before it writes the --json file or folder.
  (void)std::signal(SIGPIPE, SIG_IGN);
  // The weights are memory-mapped: a model file truncated while kq runs
  // raises SIGBUS at the next read of a page past its new end. Say so and
  // exit 1 (removing the staging folders of `kq quantize`) instead of dying
  // by the signal without a word.
  kq::io::exit_on_mapped_file_fault(
      "kq: error: a model file changed or was truncated while it was being read\n");
  CLI::App app{"kq — quantize transformer language models and run them fast (KernelQuant " +
               kq::version() + ")"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kq::version());
  // Usage errors (exit status 2) start with "kq: error:" like every other error.
  app.failure_message([&argc, &argv](const CLI::App*, const CLI::Error& e) {
    const char* word = command_word(argc, argv);
    return fmt::format(
        "kq: error: {}\nRun with --help for more information.\n",
        kq::io::escape_for_terminal(plain_usage_message(kq::cli::with_option_names(e.what()), word ? word : "")));
  });
  app.footer(
      "Exit status: 0 ok, 1 error in the input or the run, 2 usage error, 3 bench: a mode failed,\n"
      "70 internal error. Run 'kq COMMAND --help' for the options of a command.");
  kq::cli::add_info_command(app);
  kq::cli::add_eval_command(app);
  kq::cli::add_generate_command(app);
  kq::cli::add_quantize_command(app);
  kq::cli::add_bench_command(app);
  kq::cli::add_compare_command(app);
  kq::cli::add_tokenize_command(app);
  // `kq help [COMMAND]` is rewritten to `kq [COMMAND] --help` below, before parsing; it is
  // registered only to be listed with the commands in `kq --help` (its callback never runs).
  CLI::App* help = app.add_subcommand("help", "Show this help, or a command's options: kq help [COMMAND]");
  help->add_option("COMMAND", "The command whose options to show (without it: the list of commands)");

  // Library warnings go to stderr, each distinct message once (`kq bench`
  // loads the model once per mode and would repeat them). Messages may quote
  // names from model files (tensor names, JSON keys): control characters, bidirectional controls and
  // invalid UTF-8 in them are printed escaped (\xNN, \u202E), never sent raw to the terminal, and a message of
  // more than 2,000 characters is cut in the middle (io::message_excerpt: a 100,000-character tensor name).
  // The C++ names they quote (BenchOptions::samples) read as the options (--samples).
  std::set<std::string> warned;
  kq::set_warning_handler([&warned](const std::string& message) {
    const std::string m = kq::cli::with_option_names(message);
    if (warned.insert(m).second) {
      kq::cli::end_progress_line();  // a bar on the terminal: the warning starts on its own line
      kq::cli::print_diag("kq: warning: {}\n", kq::io::message_excerpt(m));
    }
  });

  // `kq help [COMMAND]` is `kq [COMMAND] --help`.
  std::vector<char*> help_args;
  char help_flag[] = "--help";
  if (const char* w = command_word(argc, argv); w && std::string_view(w) == "help") {
    if (argc > 3) {
      kq::cli::print_diag("kq: error: usage: kq help [COMMAND] (one command at most)\n");
      return kUsageError;
    }
    help_args.push_back(argv[0]);
    // `kq help --help` (-h) asks for help's own help, as `kq help help` does.
    static char help_word[] = "help";
    if (argc == 3)
      help_args.push_back(std::string_view(argv[2]) == "--help" || std::string_view(argv[2]) == "-h" ? help_word
                                                                                                      : argv[2]);
    help_args.push_back(help_flag);
    help_args.push_back(nullptr);
    argc = int(help_args.size()) - 1;
    argv = help_args.data();
  }
  // No arguments: the usage and the command list (on stderr: it is a usage error), not just
  // "A subcommand is required".
  if (argc < 2) {
    app.name(argv[0]);  // ("Usage: kq ...", as CLI11 names the program when it parses)
    kq::cli::print_diag("{}\nkq: error: no command given (see the list above)\n", app.help());
    return kUsageError;
  }
  // An option before any command: kq's own options are --help and --version; another one
  // (`kq --bogus`, `kq --threads 4 bench`) is named, not reported as "A subcommand is required".
  if (const std::string_view first(argv[1]); first.starts_with("-") && first != "--" &&
                                             !app.get_option_no_throw(std::string(first.substr(0, first.find('='))))) {
    kq::cli::print_diag(
        "kq: error: unknown option {} for 'kq' (a command comes first, then its options: kq COMMAND [OPTIONS]; "
        "see 'kq --help')\n",
        kq::io::escape_for_terminal(std::string(first.substr(0, first.find('=')))));
    return kUsageError;
  }
  const char* word = command_word(argc, argv);
  if (word) {
    std::vector<std::string> names;
    bool known = false;
    for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) {
      names.push_back(s->get_name());
      known = known || s->check_name(word);
    }
    if (!known) {
      kq::cli::print_diag("kq: error: unknown command '{}' (commands: {}; see 'kq --help')\n", word,
                          fmt::join(names, ", "));
      return kUsageError;
    }
    if (const auto unknown = unknown_option(*app.get_subcommand(word), argc, argv)) {
      kq::cli::print_diag("kq: error: {}\nRun with --help for more information.\n",
                          kq::io::escape_for_terminal(*unknown));
      return kUsageError;
    }
  }
  // A bad KQ_ISA fails every command the same way, up front: once the command
  // line is parsed (so usage errors are exit 2, and --help and --version work
  // whatever KQ_ISA says), before the command runs. Except `kq info`, which
  // reports it (it is how a user finds out what this CPU supports).
  // Likewise the threads: --threads N becomes OpenMP's default for every parallel region; without it,
  // OpenMP's default (OMP_NUM_THREADS) above kq::kMaxThreads is an error, above the CPUs a warning; `kq info`
  // reports that error too (it is how a user checks the thread count).
  app.parse_complete_callback([&app] {
    if (app.got_subcommand("info")) return;  // (info.cpp: print_kernels, print_threads)
    (void)kq::active_isa();
    for (const CLI::App* cmd : app.get_subcommands()) kq::cli::apply_threads(*cmd);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {  // thrown by a command for its own exit status (bench: 3)
    return stdout_ok() ? e.get_exit_code() : 1;
  } catch (const CLI::ParseError& e) {
    errno = 0;
    const int rc = app.exit(e);  // prints help / version / the usage error
    const int exit_errno = errno;  // of a failed write, when its std::endl flushed std::cout
    if (rc == 0) return stdout_ok(std::ferror(stdout) || std::cout.fail() ? exit_errno : 0) ? 0 : 1;
    return kUsageError;
  } catch (const kq::Error& e) {  // the library's C++ names (ExecContext::threads) read as options (--threads)
    kq::cli::print_diag("kq: error: {}\n", kq::io::message_excerpt(kq::cli::with_option_names(e.what())));
    return 1;
  } catch (const std::bad_alloc& e) {  // an OutOfMemory says what was being allocated, and its size
    kq::cli::print_diag("kq: error: {}\n", kq::io::message_excerpt(kq::out_of_memory_text(e)));
    return 1;
  } catch (const std::system_error& e) {
    // fmt::print throws this when a write to standard output fails.
    if (std::ferror(stdout)) {
      stdout_ok(e.code().value());
      return 1;
    }
    // ... or to stderr (the report of `--json -` goes there): nothing can be said.
    if (std::ferror(stderr)) return 1;
    kq::cli::print_diag("kq: internal error: {}\n", kq::io::escape_for_terminal(e.what()));
    return kInternalError;
  } catch (const std::exception& e) {
    kq::cli::print_diag("kq: internal error: {}\n", kq::io::escape_for_terminal(e.what()));
    return kInternalError;
  }
  return stdout_ok() ? 0 : 1;
}
