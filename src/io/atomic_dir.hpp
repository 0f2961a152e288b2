#pragma once
// Crash-safe writing of a whole model folder (config.json, *.safetensors,
// tokenizer files): everything is written into a staging sibling folder
// `<out>.tmp-XXXXXX` on the same file system, fsync'ed, and only then renamed
// to `<out>`. A crash at any point leaves either no `<out>`, the old `<out>`,
// or the complete new `<out>` — never a half-written folder under that name.
// Stale `<out>.tmp-*` / `<out>.old-*` siblings from a crash can be deleted.
//
// Error messages name `<out>` (and files under it), never the staging name.
//
// Usage:
//   kq::io::AtomicDir dir(out, overwrite);
//   dir.write([&] {
//     kq::write_safetensors(dir.file("model.safetensors"), tensors);
//     kq::io::write_file_atomic(dir.file("config.json"), config_text);
//   });
//   dir.commit();   // without commit() the destructor removes the staging folder
#include <filesystem>
#include <functional>
#include <string_view>

namespace kq::io {

/// A staging folder that becomes `out` on commit().
class AtomicDir {
 public:
  /// Creates the staging folder next to `out`. Throws InvalidArgument when
  /// `out` exists and is not a folder, or is a non-empty folder and
  /// `overwrite` is false; Error naming `out` (not the staging name) when the
  /// staging folder cannot be created: the folder `out` goes in is missing or
  /// is a file ("'notes.txt' is not a directory"), no permission, or a name
  /// too long for the staging suffix (io::temporary_sibling_failure).
  AtomicDir(std::filesystem::path out, bool overwrite = false);
  /// Removes the staging folder (and everything in it) unless commit() succeeded. Never throws.
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  /// The staging folder to write into.
  const std::filesystem::path& staging() const { return staging_; }
  /// staging() / name.
  std::filesystem::path file(std::string_view name) const { return staging_ / name; }
  /// The final folder.
  const std::filesystem::path& target() const { return out_; }
  bool committed() const { return committed_; }

  /// Runs `write_files`, which writes into staging() (through file()). A
  /// kq::Error it throws is re-thrown with the same type (Error,
  /// InvalidArgument, FormatError or Unsupported) and the staging folder's
  /// name replaced by target()'s in its message ("q/model.safetensors: write
  /// failed: No space left on device", not "q.tmp-Ab12Cd/..."), so the user
  /// reads the folder they asked for. Other exceptions pass unchanged.
  void write(const std::function<void()>& write_files) const;

  /// fsyncs every file and folder under staging(), then moves staging() to
  /// target(). With overwrite, an existing `out` is swapped out atomically
  /// (renameat2 RENAME_EXCHANGE; where the file system lacks it, two renames
  /// through an `<out>.old-XXXXXX` sibling, so `out` is never half-written)
  /// and the old folder is deleted afterwards. Throws Error naming `out` (and
  /// files under it, never the staging name) on failure (the staging folder
  /// is then still removed by the destructor), or
  /// InvalidArgument if `out` became non-empty meanwhile without overwrite.
  void commit();

 private:
  std::filesystem::path out_;
  std::filesystem::path staging_;
  bool overwrite_ = false;
  bool committed_ = false;
};

}  // namespace kq::io
