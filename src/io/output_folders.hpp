#pragma once
// The folders an output path needs (mkdir -p): whether they can be made,
// making them, and removing the ones made when the output is not written
// after all, so that a failed write leaves no new empty folders behind.
// Used by kq quantize for the folders above --out (the library's
// save_quantized_model wants them there) and by kq's --json files.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kq::io {

/// nullopt when `dir` is an existing folder, or when mkdir -p could make it:
/// its nearest part that exists (`dir` itself or an ancestor; "." for a
/// relative path none of whose parts exist; symbolic links followed) is a
/// folder. Otherwise why not, as a whole clause naming the part at fault:
/// "'notes.txt' is not a directory" (a file, device, FIFO or socket on the
/// way), "'x' is a symbolic link to 'y', which does not exist", "'x' cannot be
/// accessed (<system message>)". Permissions are not checked (see
/// nearest_existing_folder). Only stat(2) is used. Never throws (except
/// std::bad_alloc).
std::optional<std::string> why_not_creatable_folder(const std::filesystem::path& dir);

/// The nearest of `dir` and its ancestors that exists as a folder: `dir`
/// itself when it is one; "." for a relative path none of whose parts exist;
/// empty when why_not_creatable_folder(dir) says why none can be made. The
/// folder whose write permission creating `dir` needs. Never throws (except
/// std::bad_alloc).
std::filesystem::path nearest_existing_folder(const std::filesystem::path& dir);

/// Makes `dir` and each missing folder above it, outermost first, as mkdir -p
/// does (mode 0777 & ~umask; one another process makes meanwhile is taken as
/// it is), and returns the folders this call made, outermost first (empty when
/// `dir` was there). The entries of the new folders are fsync'ed into their
/// parents (best effort). Throws InvalidArgument with
/// why_not_creatable_folder's clause when a part is no folder; Error "cannot
/// create folder '<f>': <system message>" naming the first folder that could
/// not be made (no permission, a read-only file system), after removing the
/// ones made before it.
std::vector<std::filesystem::path> make_folders(const std::filesystem::path& dir);

/// Removes the folders make_folders made (`made`, outermost first), deepest
/// first, each only while it is empty (rmdir(2)): one that something was
/// written into meanwhile stays, with those above it. Never throws.
void remove_made_folders(const std::vector<std::filesystem::path>& made) noexcept;

/// The folders made for one output (a file, or AtomicDir's folder), removed
/// again (remove_made_folders) unless keep() is called once the output is in
/// place; meanwhile an interrupt removes them too where the watcher of
/// remove_staging_dirs_on_signals() runs (remove_folders_on_signals). Usage:
///   io::MadeFolders folders(path.parent_path());
///   io::write_file_atomic(path, text);
///   folders.keep();
class MadeFolders {
 public:
  /// make_folders(dir), and its errors.
  explicit MadeFolders(const std::filesystem::path& dir);
  ~MadeFolders();
  MadeFolders(const MadeFolders&) = delete;
  MadeFolders& operator=(const MadeFolders&) = delete;

  /// The output is in place: the folders made stay.
  void keep();
  /// The folders made (and not kept), outermost first.
  const std::vector<std::filesystem::path>& made() const { return made_; }

 private:
  std::vector<std::filesystem::path> made_;
};

}  // namespace kq::io
