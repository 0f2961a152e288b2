#pragma once
// What a path given as an input file really is, so that "--text -", a folder,
// /dev/zero or a named pipe is reported as such instead of "not found", and
// is never opened (reading a FIFO or /dev/zero would block or never end).
#include <filesystem>
#include <optional>
#include <string>

namespace kq::io {

/// nullopt when `file` is a regular file (symbolic links followed); otherwise
/// why it cannot be read as one, as a phrase to put after the quoted name:
/// "not found", "is a symbolic link to 'x', which does not exist", "is a
/// symbolic link loop (<system message>)" (also said of a folder on the way),
/// "is a directory, not a file", "is a character device, not a
/// regular file" (also: block device, FIFO (named pipe), socket), or "cannot
/// be accessed (<system message>)" (e.g. a folder on the way without
/// permission). Only stat(2) and readlink(2) are used: nothing is opened.
/// Never throws (except std::bad_alloc).
std::optional<std::string> why_not_regular_file(const std::filesystem::path& file);

/// nullopt when `dir` is an existing folder (symbolic links followed; an
/// empty path means "."), so an output file can be created in it as far as
/// its kind goes (permissions are not checked); otherwise why not, as a whole
/// clause naming the path at fault: "'notes.txt' is not a directory" when
/// `dir` or a folder on the way to it (e.g. "notes.txt" of "notes.txt/sub")
/// exists but is a file, device, FIFO or socket; "folder 'out/sub' does not
/// exist"; "'x' cannot be accessed (<system message>)" (e.g. a folder on the
/// way without permission). Only stat(2) is used. Never throws (except
/// std::bad_alloc).
std::optional<std::string> why_not_folder(const std::filesystem::path& dir);

/// Where a chain of symbolic links at `path` ends: `path` itself when it is
/// not a link; the end need not exist (a dangling link names the file it
/// would create). Relative link targets are taken from the link's folder.
/// Throws kq::Error naming `path` after 40 links (a loop) or when a link
/// cannot be read.
std::filesystem::path symlink_target(const std::filesystem::path& path);

}  // namespace kq::io
