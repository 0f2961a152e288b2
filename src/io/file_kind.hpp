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
/// "not found", "is a directory, not a file", "is a character device, not a
/// regular file" (also: block device, FIFO (named pipe), socket), or "cannot
/// be accessed (<system message>)" (e.g. a folder on the way without
/// permission). Only stat(2) is used: nothing is opened. Never throws.
std::optional<std::string> why_not_regular_file(const std::filesystem::path& file);

}  // namespace kq::io
