#pragma once
// Small formatting helpers shared by the CLI subcommands.
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "io/atomic_file.hpp"
#include "io/file_kind.hpp"
#include "io/output_folders.hpp"
#include "kq/error.hpp"

namespace kq::cli {

/// Whether `path` is the null device: a character device with Linux's numbers
/// 1,3, found by stat (so /dev/null, or a symbolic link to it), not by name.
inline bool is_null_device(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3;
}

/// Checks, before any work starts, that an output file option (e.g. --json)
/// names a file in a writable folder, existing or missing (write_json_file makes
/// missing folders, mkdir -p: the nearest existing one above must then be
/// writable; nothing is created here), and not a folder itself, so a
/// long run does not end in a write error, nor a stream (/dev/stdout, ...) or
/// the file standard output or standard error already writes to (same device
/// and inode, whatever the name). The null device (is_null_device) is
/// accepted: the output is discarded (write_json_file writes nothing there).
/// Throws InvalidArgument naming the option and the path (a file on the way is
/// named: "'x' is not a directory").
inline void check_output_file(const char* option, const std::string& path) {
  if (path.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path given(path);
  // /dev/stdout and the like name a stream, not a file kq can replace atomically
  // (through a pipe there is no folder to write in; through a redirect the shell's file would be replaced).
  for (const char* stream : {"/dev/stdout", "/dev/stderr", "/dev/stdin", "/dev/fd/", "/proc/self/fd/"})
    if (path == stream || (std::string_view(stream).ends_with('/') && path.starts_with(stream)))
      raise<InvalidArgument>("{}: '{}' is a stream, not a file; give {} - for standard output", option, path, option);
  if (is_null_device(path)) return;  // discarded, whatever standard output writes to (/dev/null too)
  // The file standard output or standard error already writes to, by any name (a link to /proc/self/fd/1, the
  // file of a `>` redirection): replacing it would lose the report. Compared by device and inode.
  if (struct stat target {}; ::stat(path.c_str(), &target) == 0)
    for (const auto& [fd, stream] : {std::pair{1, "standard output"}, std::pair{2, "standard error"}})
      if (struct stat s {}; ::fstat(fd, &s) == 0 && s.st_dev == target.st_dev && s.st_ino == target.st_ino)
        raise<InvalidArgument>("{}: '{}' is the file {} writes to; give {} - for the JSON on standard output", option,
                               path, stream, option);
  if (fs::is_directory(given, ec)) raise<InvalidArgument>("{}: '{}' is a folder, not a file", option, path);
  fs::path p;  // where the file will be written (through symbolic links; never over a device or FIFO)
  try {
    p = io::atomic_write_target(given);
  } catch (const Error& e) {  // InvalidArgument (a device there), Error (a symbolic link loop)
    raise<InvalidArgument>("{}: {}", option, e.what());
  }
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  // A file on the way ("'notes.txt' is not a directory"); missing folders are made when the file is written.
  if (const auto why = io::why_not_creatable_folder(dir))
    raise<InvalidArgument>("{}: cannot write '{}': {}", option, path, *why);
  if (const fs::path top = io::nearest_existing_folder(dir); top != dir) {
    if (::access(top.c_str(), W_OK | X_OK) != 0)
      raise<InvalidArgument>("{}: cannot write '{}': folder '{}' is missing and cannot be made in '{}' ({})", option,
                             path, dir.string(), top.string(), std::strerror(errno));
    return;  // (the temporary file is probed below only in an existing folder)
  }
  // Writable before minutes of work (a read-only mount was only found at the
  // end): the output is written atomically through a temporary file in that
  // folder, so make (and remove) one now, named as the writer names it (a
  // name too long for it is found here too).
  std::string probe = io::temporary_file_template(p);
  const int fd = ::mkstemp(probe.data());
  if (fd < 0) {
    const int err = errno;
    raise<InvalidArgument>("{}: cannot write '{}': {}", option, path,
                           io::temporary_sibling_failure(dir, err));
  }
  ::close(fd);
  ::unlink(probe.c_str());
  if (fs::exists(p, ec) && ::access(p.c_str(), W_OK) != 0)
    raise<InvalidArgument>("{}: cannot overwrite '{}' ({})", option, path, std::strerror(errno));
}

/// Checks an input file option (--text) before any work: "-" (standard input,
/// which kq does not read: the text is tokenized as one string and `kq bench`
/// reads it once per run) and a path that is not a regular file are
/// InvalidArgument naming the option and saying what the path is (not found,
/// a directory, a device such as /dev/zero, a FIFO, ...). Nothing is opened,
/// so a FIFO or a device cannot block or stream forever.
inline void check_input_file(const char* option, const std::string& path) {
  if (path == "-")
    raise<InvalidArgument>(
        "{} -: reading the text from standard input is not supported; save it to a file and give its path",
        option);
  if (const auto why = io::why_not_regular_file(path))
    raise<InvalidArgument>("{}: '{}' {}", option, path, *why);
}

/// An output option must not name an input file (e.g. --json the same file as
/// --text: the input would be replaced). Throws InvalidArgument.
inline void check_not_input(const char* out_option, const std::string& out, const char* in_option,
                            const std::string& in) {
  std::error_code ec;
  if (!out.empty() && !in.empty() && std::filesystem::exists(out, ec) &&
      std::filesystem::equivalent(out, in, ec))
    raise<InvalidArgument>("{} '{}' is the {} file; choose another output file", out_option, out, in_option);
}

/// An output option must not replace a file of the model folder (e.g. --json
/// cpy/model.safetensors: the weights would become JSON). The rule: any file
/// that exists inside `model_dir` (at any depth) is refused, as resolved
/// through symbolic links, "." and "..", and a hard link to a file directly in
/// the folder too. The model load reads config.json, generation_config.json,
/// tokenizer*.json, vocab.json, merges.txt, special_tokens_map.json,
/// *.safetensors and *.safetensors.index.json, and the folder holds other
/// inputs besides (demo-eval.txt, `kq bench`'s default text; files a later
/// version may read): nothing there that exists is kq's to replace. A new file
/// in the folder is allowed. A model folder that does not exist is left to the
/// model load to name. Throws InvalidArgument naming the option, the file and
/// the folder, as `folder` names it ("--model", `kq compare`'s "REFERENCE").
inline void check_not_model_file(const char* out_option, const std::string& out,
                                 const std::filesystem::path& model_dir, const char* folder = "--model") {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (out.empty() || model_dir.empty() || !fs::exists(out, ec)) return;  // a new file: nothing to replace
  const fs::path target = fs::canonical(out, ec);  // through symbolic links, ".", ".."
  if (ec) return;
  const fs::path dir = fs::canonical(model_dir, ec);
  if (ec || !fs::is_directory(dir, ec)) return;
  bool inside = std::mismatch(dir.begin(), dir.end(), target.begin(), target.end()).first == dir.end();
  for (auto it = fs::directory_iterator(dir, ec); !inside && !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code ec2;
    inside = it->is_regular_file(ec2) && fs::equivalent(it->path(), target, ec2);  // a hard link
  }
  if (inside)
    raise<InvalidArgument>(
        "{} '{}' is a file of the {} folder '{}' (the model's own files are inputs and are never "
        "replaced); choose a file outside it or a new name",
        out_option, out, folder, model_dir.string());
}

/// The --json option of `kq eval` and `kq bench`, checked before the run, in
/// one place (an empty value is refused while the command line is parsed,
/// path_option.hpp): the folder must be writable (check_output_file), and it
/// must not name an existing file of the --model folder
/// (check_not_model_file), the --text file or the --calibration file (`kq
/// bench`'s AWQ text; "" for none) (check_not_input). "-" is standard output
/// (nothing to check: the subcommand then prints the JSON alone on standard
/// output and its report on standard error). Throws InvalidArgument naming
/// the option and the file.
inline void check_json_output(const std::string& json, const std::string& text,
                              const std::filesystem::path& model_dir, const std::string& calibration = {}) {
  if (json.empty() || json == "-") return;
  // The input checks first: check_output_file probes the folder with a
  // temporary file, which must not appear (even briefly) in an input folder.
  check_not_model_file("--json", json, model_dir);
  check_not_input("--json", json, "--text", text);
  check_not_input("--json", json, "--calibration", calibration);
  check_output_file("--json", json);
}

/// Writes the --json document `text` to the file `path` atomically
/// (io::write_file_atomic), or nothing when `path` is the null device
/// (is_null_device: the JSON is discarded). Missing folders above the file
/// are made first (mkdir -p: io::MadeFolders), and removed again, each while
/// empty, when the write fails. Returns whether a file was written. Throws
/// as io::write_file_atomic and io::make_folders do.
inline bool write_json_file(const std::string& path, const std::string& text) {
  if (is_null_device(path)) return false;
  const std::filesystem::path target = io::atomic_write_target(path);  // (a symbolic link's file)
  std::optional<io::MadeFolders> folders;
  try {
    folders.emplace(target.has_parent_path() ? target.parent_path() : std::filesystem::path("."));
  } catch (const Error& e) {  // (a folder that became a file since check_output_file, a full disk)
    raise<Error>("{}: cannot write it: {}", path, e.what());
  }
  io::write_file_atomic(path, text);
  folders->keep();
  return true;
}

/// fflush(stdout), for output streamed as it is produced (kq generate). A
/// failed write (a full disk, /dev/full, a closed pipe) throws
/// std::system_error with its errno, which main() reports as "kq: error
/// writing to standard output: <strerror>" (exit status 1): no point going on
/// when the output is lost, and the errno is known only here.
inline void flush_stdout() {
  errno = 0;
  if (std::fflush(stdout) != 0)
    throw std::system_error(errno ? errno : EIO, std::generic_category(), "standard output");
}

/// The errno of the first write to `stream` (standard output or standard error) that failed in print_report;
/// 0 while none has. main() reports standard output's at exit (stdout_ok).
inline int& report_error(std::FILE* stream) {
  static int out = 0, err = 0;
  return stream == stderr ? err : out;
}

/// Runs `print` (fmt::print calls to `stream`, standard output or, with --json -, standard error) and flushes
/// `stream`: the text report of a command that has a result to write besides it (the --json of `kq eval` and
/// `kq bench`, the --out folder of `kq quantize`). A write that fails (a full disk, /dev/full, a closed stream,
/// a pipe closed early: SIGPIPE is ignored, main()) does not lose the result: it is recorded (report_error) and
/// false returned, then and at every later call for that stream, which prints nothing more to it; the command
/// goes on to write its result, and main() then says "kq: error writing to standard output: <strerror>" (exit
/// status 1; standard error carries diagnostics: its loss does not change the exit status, diag.hpp). A
/// command with nothing left to write stops at once instead (throw_report_error).
template <typename Print>
bool print_report(std::FILE* stream, Print&& print) {
  int& lost = report_error(stream);
  if (lost != 0) return false;
  try {
    print();
    errno = 0;
    if (std::fflush(stream) == 0) return true;
    lost = errno ? errno : EIO;
  } catch (const std::system_error& e) {  // fmt::print's failed write
    if (!std::ferror(stream)) throw;
    lost = e.code().value() ? e.code().value() : EIO;
  }
  return false;
}

/// Ends the command with the write error print_report recorded for `stream`, as flush_stdout does (main()
/// reports it): for a command whose result is lost with the report, or that has none to write.
[[noreturn]] inline void throw_report_error(std::FILE* stream) {
  throw std::system_error(report_error(stream) ? report_error(stream) : EIO, std::generic_category(),
                          stream == stderr ? "standard error" : "standard output");
}

/// `rows` (the first one a header) as lines of aligned columns, each as wide as
/// its widest cell, two spaces apart: the first column left-aligned, the others
/// right-aligned, except the last when `pad_last` is false, which is
/// left-aligned and unpadded (a verdict, a note). Rows may be shorter than
/// others (their missing cells are empty). Each line ends with '\n'.
inline std::string align_columns(const std::vector<std::vector<std::string>>& rows, bool pad_last) {
  std::vector<size_t> width;
  size_t columns = 0;
  for (const auto& row : rows) columns = std::max(columns, row.size());
  width.assign(columns, 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c == 0)
        line += row[c] + (row.size() > 1 ? pad : "");
      else if (c + 1 == columns && !pad_last)
        line += "  " + row[c];
      else
        line += "  " + pad + row[c];
    }
    out += line + "\n";
  }
  return out;
}

/// "1 token", "2 tokens", "0 tokens": `n` and `noun`, with an "s" unless n is 1.
inline std::string count_noun(long long n, const char* noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

/// The note of `kq eval` and `kq bench` (a warning) for a perplexity that
/// overflowed: exp(mean negative log-likelihood) beyond a double is +inf,
/// printed "inf" (null in --json). `whose`: {"the model"}, {"the baseline",
/// "mode int8"}, ... (not empty); `rest`: what else follows ("" or "; ...").
inline std::string perplexity_overflow_warning(const std::vector<std::string>& whose, const std::string& rest = {}) {
  std::string names;
  for (size_t i = 0; i < whose.size(); ++i)
    names += (i == 0 ? "" : i + 1 == whose.size() ? " and " : ", ") + whose[i];
  return fmt::format(
      "the {} of {} overflowed: the mean negative log-likelihood is above 709.78 nats/token, whose exp() no double "
      "holds; printed as inf, null in --json{}",
      whose.size() == 1 ? "perplexity" : "perplexities", names, rest);
}

/// The dtype(s) linear-layer bytes "before" are counted in, for "N % smaller vs ...": an
/// AdaptivePlan's held_dtype_names ("f32", "bf16", "bf16+f32") upper-cased, "f32" as "FP32".
inline std::string linear_basis_label(std::string held) {
  std::transform(held.begin(), held.end(), held.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  return held == "F32" ? "FP32" : held;
}

/// "1.23 MiB", "456.0 KiB", "12 B".
inline std::string human_bytes(size_t b) {
  const double v = double(b);
  if (v >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", v / (1024.0 * 1024 * 1024));
  if (v >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", v / (1024.0 * 1024));
  if (v >= 1024.0) return fmt::format("{:.1f} KiB", v / 1024.0);
  return fmt::format("{} B", b);
}

/// Percentage reduction 1 − after/before, in %.
inline double reduction_pct(size_t before, size_t after) {
  return before ? (1.0 - double(after) / double(before)) * 100.0 : 0.0;
}

}  // namespace kq::cli
