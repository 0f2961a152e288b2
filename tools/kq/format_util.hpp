#pragma once
// Small formatting helpers shared by the CLI subcommands.
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "io/atomic_file.hpp"
#include "io/file_kind.hpp"
#include "kq/error.hpp"

namespace kq::cli {

/// Checks, before any work starts, that an output file option (e.g. --json)
/// names a file in an existing, writable folder and not a folder itself, so a
/// long run does not end in a write error. Throws InvalidArgument naming the
/// option and the path (a file on the way is named: "'x' is not a directory").
inline void check_output_file(const char* option, const std::string& path) {
  if (path.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path given(path);
  if (fs::is_directory(given, ec)) raise<InvalidArgument>("{}: '{}' is a folder, not a file", option, path);
  fs::path p;  // where the file will be written (through symbolic links; never over a device or FIFO)
  try {
    p = io::atomic_write_target(given);
  } catch (const InvalidArgument& e) {
    raise<InvalidArgument>("{}: {}", option, e.what());
  }
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  // Missing, or a file on the way ("'notes.txt' is not a directory").
  if (const auto why = io::why_not_folder(dir))
    raise<InvalidArgument>("{}: cannot write '{}': {}", option, path, *why);
  // Writable before minutes of work (a read-only mount was only found at the
  // end): the output is written atomically through a temporary file in that
  // folder, so make (and remove) one now, with a name as long as the writer's
  // `.<name>.tmp-XXXXXX` (a name too long for it is found here too).
  std::string probe_name(".");  // (built with append: GCC 12 warns falsely on "." + string)
  probe_name.append(p.filename().string()).append(".tmp-XXXXXX");
  std::string probe = (dir / probe_name).string();
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
