#pragma once
// Crash-safe file writing: write to a temporary sibling, fsync, rename.
// After a crash the destination holds either the complete old contents or the
// complete new contents, never a torn mix (POSIX rename(2) is atomic).
#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace kq::io {

/// Byte sink handed to write_file_atomic's callback: the temporary file.
class AtomicFileSink {
 public:
  AtomicFileSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  /// Appends n bytes (retries short writes and EINTR). Throws Error naming the
  /// destination path on an I/O error (e.g. ENOSPC).
  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  /// Bytes written so far.
  size_t written() const { return written_; }

 private:
  int fd_;
  std::string path_;
  size_t written_ = 0;
};

/// Writes `path` atomically: creates `.<name>.tmp-XXXXXX` in the same folder
/// (mode: output_file_mode's), lets `fill` stream the contents into it, fsyncs it, renames it
/// over `path`, then fsyncs the folder. On any failure (including an exception
/// thrown by `fill`, which is re-thrown unchanged) the temporary is removed and
/// `path` is untouched. I/O failures throw Error naming `path` (never the
/// temporary name; see temporary_sibling_failure for why it cannot be made). A symbolic
/// link at `path` is followed (the file it points to is replaced, the link
/// kept); a folder, device, FIFO or socket there is refused with
/// InvalidArgument before anything is written.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(AtomicFileSink&)>& fill);

/// Where write_file_atomic(path, ...) puts the new file: `path`, or the file
/// a chain of symbolic links at `path` ends at (the links stay links).
/// Throws InvalidArgument naming `path` when that is something other than a
/// regular file (a folder, a device such as /dev/null, a FIFO, a socket):
/// renaming over it would replace it. Nothing is opened or written.
std::filesystem::path atomic_write_target(const std::filesystem::path& path);

/// The process's file mode creation mask (umask(2)), read without changing
/// it for other threads (from /proc/self/status where the kernel has it).
mode_t current_umask();

/// The permission bits write_file_atomic gives the file it writes at `target`
/// (already resolved by atomic_write_target): those of the file it replaces,
/// so that a `chmod 600` file stays 600; else what open(2) and fopen give a
/// new file, 0666 & ~umask. Never throws (a file that cannot be examined
/// counts as absent).
mode_t output_file_mode(const std::filesystem::path& target);

/// The mkstemp template of write_file_atomic's temporary file for `target`
/// (already resolved by atomic_write_target): `<folder>/.<name>.tmp-XXXXXX`.
/// Also what a pre-run check creates to prove the folder writable with a name
/// as long as the real one's.
std::string temporary_file_template(const std::filesystem::path& target);

/// Why the temporary sibling of an atomic write (write_file_atomic's
/// `.<name>.tmp-XXXXXX`, AtomicDir's `<out>.tmp-XXXXXX`) could not be created
/// in folder `dir`, given the errno `err` of mkostemp/mkdtemp, as a clause to
/// put after "<user's path>: cannot write it: ": why_not_folder(dir) when `dir`
/// is not a usable folder ("'notes.txt' is not a directory", ...); for
/// ENAMETOOLONG, that the name leaves no room for the temporary name's
/// suffix; for a folder on a kernel pseudo file system (proc, sysfs, ...),
/// that one (whatever `err` says: /proc gives ENOENT, which read alone would
/// say the existing folder is missing); a read-only file system (EROFS) or no
/// permission (EACCES, EPERM) as such; otherwise the system message with
/// `dir`. Names no temporary name.
std::string temporary_sibling_failure(const std::filesystem::path& dir, int err);

/// write_file_atomic for a byte string (config.json, tokenizer files, ...).
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

/// fsync(2) of a file or folder. Throws Error naming the path on failure
/// (folders on file systems that do not support fsync on them are skipped).
void fsync_path(const std::filesystem::path& path);

}  // namespace kq::io
