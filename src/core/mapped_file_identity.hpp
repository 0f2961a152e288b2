#pragma once
// What every file MappedFile mapped looked like when it was mapped (device,
// inode, size, modification time), so that `kq` can tell, before it reports
// results, that a model file changed during the run: one rewritten in place
// with ordinary numbers raises no SIGBUS (only a truncation does) and the
// mapped pages show the new bytes, which gave a wrong perplexity and exit 0.
#include <cstdint>
#include <string>
#include <vector>

namespace kq::core {

/// Records `path` as mapped with this identity (MappedFile::open, from the
/// fstat of the descriptor it maps). The first record of a path is kept for
/// the process's lifetime (later maps of the same path are compared with it).
/// Never throws (a record that cannot be stored is dropped).
void record_mapped_file(const std::string& path, uint64_t dev, uint64_t ino, int64_t size,
                        int64_t mtime_ns) noexcept;

/// A recorded file that is not what it was when it was first mapped.
struct ChangedFile {
  std::string path;
  std::string what;  ///< e.g. "its size changed from 1000 to 12 bytes", "it was removed"
};

/// The recorded paths (in the order they were first mapped) whose stat(2) now
/// shows another device or inode (replaced or removed), size or modification
/// time (nanoseconds) than when they were first mapped; empty when none.
/// Cheap (one stat per file). What it cannot see: a rewrite that keeps the
/// size within the file system's timestamp granularity (a few milliseconds),
/// or one whose writer resets the modification time.
std::vector<ChangedFile> changed_mapped_files();

}  // namespace kq::core
