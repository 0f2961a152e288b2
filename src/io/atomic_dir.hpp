#pragma once
// Crash-safe writing of a whole model folder (config.json, *.safetensors,
// tokenizer files): everything is written into a staging sibling folder
// `<out>.tmp-XXXXXX` on the same file system, fsync'ed, and only then renamed
// to `<out>`. A crash at any point leaves either no `<out>`, the old `<out>`,
// or the complete new `<out>` — never a half-written folder under that name.
// While the staging folder exists, its process holds an exclusive flock(2) on
// it (the kernel drops the lock when the process dies, kill -9 included), so
// the `<out>.tmp-*` / `<out>.old-*` siblings a crash leaves can be told from
// those another process is writing, and it holds an empty marker file
// (kStagingMarker, removed just before the folder is moved into place), so
// they can be told from a user's own folders of such a name:
// staging_leftovers() finds them, remove_stale_staging_leftovers() deletes
// the stale ones kq made. A process that
// calls remove_staging_dirs_on_signals() also removes its staging folders
// when it is interrupted (SIGINT, SIGTERM, SIGHUP).
//
// `out` may be a symbolic link to a folder: the link is followed, and the
// folder it points to is the one written (the link itself stays). An `out`
// that exists (empty, or replaced with overwrite) is replaced by the new
// folder, which takes its permission bits (and group, where the caller may
// set it); a mount point cannot be replaced so and is refused up front.
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
#include <vector>

namespace kq::io {

/// A staging folder that becomes `out` on commit().
class AtomicDir {
 public:
  /// Creates the staging folder next to resolve_target(out) and takes an
  /// exclusive flock(2) on it (an O_RDONLY, close-on-exec descriptor kept
  /// open until the folder is moved into place or removed), which tells
  /// remove_stale_staging_leftovers() in any process that the folder is being
  /// written, and writes the empty marker file kStagingMarker into it, which
  /// tells that kq made it (commit() removes it). Where the file system has no flock the folder is written
  /// unlocked (and is then never deleted as stale). Throws
  /// InvalidArgument as resolve_target() does, when `out` is a mount point (a
  /// rename cannot replace it: "give a folder inside it"), or when `out` is a non-empty folder and
  /// `overwrite` is false; Error naming `out` (not the staging name) when the
  /// staging folder cannot be created: the folder `out` goes in is missing or
  /// is a file ("'notes.txt' is not a directory"), no permission, or a name
  /// too long for the staging suffix (io::temporary_sibling_failure).
  AtomicDir(std::filesystem::path out, bool overwrite = false);
  /// Removes the staging folder (and everything in it) unless commit()
  /// succeeded, then releases its lock. Never throws.
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  /// The staging folder to write into.
  const std::filesystem::path& staging() const { return staging_; }
  /// staging() / name.
  std::filesystem::path file(std::string_view name) const { return staging_ / name; }
  /// The final folder (resolve_target(out): a symbolic link followed).
  const std::filesystem::path& target() const { return out_; }

  /// The folder AtomicDir(out) writes: `out` lexically normalized ("q/" is
  /// q), except that a path with a ".." component, or "." alone, is first
  /// resolved by the file system as the kernel reads it: the part up to the
  /// last ".." by fs::canonical ("L/../q" with L a link to a/b is a/q; a part
  /// that does not exist or is no folder is an error, as for the kernel), the
  /// rest appended; "." is the current folder's real path; when `out` is a symbolic link to a folder, the folder it
  /// points to (fs::canonical), so that the new folder replaces the link's
  /// target and the link stays. Throws InvalidArgument naming `out` when it is
  /// empty or resolves to no folder name ("/"); has a ".." the file system
  /// cannot resolve; exists and is not a folder; or is a symbolic link to
  /// something that does not exist, cannot be reached (a loop: said so) or is
  /// not a folder (naming the link's target).
  static std::filesystem::path resolve_target(std::filesystem::path out);
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
  /// through an `<out>.old-XXXXXX` sibling, locked like the staging folder
  /// from its creation until it is deleted, so `out` is never half-written)
  /// and the old folder, marked with kReplacedMarker before it moved, is
  /// deleted afterwards; the lock is then released (the
  /// descriptor followed the folder to `out`). Throws Error naming `out` (and
  /// files under it, never the staging name) on failure (the staging folder
  /// is then still removed by the destructor), or
  /// InvalidArgument if `out` became non-empty meanwhile without overwrite.
  void commit();

 private:
  std::filesystem::path out_;
  std::filesystem::path staging_;
  int lock_fd_ = -1;  // the staging folder, flock'ed; -1 once released or where flock is unsupported
  bool overwrite_ = false;
  bool committed_ = false;
  bool replaces_ = false;  // `out` existed as a folder: the new one takes mode_ and gid_
  unsigned mode_ = 0;      // its permission bits (07777)
  unsigned gid_ = 0;       // its group
};

/// Installs, once per process, the removal of the staging folder of every
/// AtomicDir not yet committed on SIGINT, SIGTERM and SIGHUP (each unless it
/// is ignored, e.g. SIGHUP under nohup); the signal then ends the process as
/// it would have (killed by it: a shell shows status 128 + N, 130 for SIGINT,
/// 143 for SIGTERM, 129 for SIGHUP), without running exit code (atexit,
/// static destructors) beside live threads. No signal handler is installed:
/// the signals are blocked in the calling thread, and so in every thread it
/// starts afterwards, and a watcher thread takes them with sigwait(), so they
/// never interrupt computing threads (an asynchronous handler on a thread
/// inside oneDNN corrupted the heap). The watcher removes the folders
/// holding the lock that AtomicDir's constructor, destructor and commit()
/// take, so a folder is never half-moved into place. An interrupt that
/// comes after a commit() moved its folder into place (or waited for it) is
/// not dropped either: the watcher writes "<program>: interrupted: <out> was
/// written completely before stopping" to standard error for each committed
/// folder, and the signal ends the process as above (130 for SIGINT, not 0).
/// A signal sent to the thread that commits alone (not to the process, as
/// Ctrl-C does: tgkill, a debugger), which the watcher cannot take, is handed
/// to the watcher when commit() ends.
/// Call it from the main thread before any other thread starts (before the
/// first OpenMP parallel region): a thread started earlier does not block the
/// signals and, when the kernel picks it, the signal ends the process without
/// the removal. The calling thread keeps the signals blocked (a process it
/// starts inherits that mask). Throws Error if the mask or the thread cannot
/// be set up.
void remove_staging_dirs_on_signals();

/// Has the interrupt watcher of remove_staging_dirs_on_signals() also remove
/// the folders `made` (made by io::make_folders for an output not yet
/// written, outermost first; io::MadeFolders registers them) after the
/// staging folders: deepest first, each while it is empty (rmdir(2)), until
/// forget_folders_on_signals(made). Without the watcher installed nothing
/// happens on an interrupt. Never throws (except std::bad_alloc).
void remove_folders_on_signals(const std::vector<std::filesystem::path>& made);

/// Undoes remove_folders_on_signals(made): the output is in place (they stay)
/// or they were removed. Never throws.
void forget_folders_on_signals(const std::vector<std::filesystem::path>& made) noexcept;

/// Installs, once per process, a SIGBUS handler for the fault a memory-mapped
/// file raises when it is truncated (or replaced) while it is being read
/// (safetensors weights are mapped, not read): the first faulting thread
/// writes `message` (kept as given: pass a string literal) to standard error
/// with write(2), with ": <file> (tensor '<name>')" before its final newline
/// when the faulting address is in a file MappedFile mapped (the tensor when
/// the safetensors reader named those bytes), and the process exits with
/// status 1 instead of dying by the signal with no word. The handler does only async-signal-safe work. When
/// remove_staging_dirs_on_signals() is installed, the handler does not exit
/// itself: it wakes the watcher thread (kill(2) with a real-time signal only
/// that thread accepts), which removes the staging folders as for SIGINT and
/// then calls _exit(1); removing folders (std::filesystem, a mutex) may not be
/// done inside a signal handler. The faulting thread waits in the handler
/// meanwhile (at most 30 s, then _exit(1) anyway). A SIGBUS with another
/// cause ends the process the same way (it cannot continue either).
void exit_on_mapped_file_fault(const char* message);

/// Leftovers of earlier interrupted (or still running) writes of `out`:
/// existing folders named `<out>.tmp-XXXXXX` or `<out>.old-XXXXXX` (six
/// characters [A-Za-z0-9], mkdtemp's) next to resolve_target(out) (next to
/// `out` itself when it cannot be resolved). Sorted; never throws (an
/// unreadable parent folder gives none). Nothing is deleted: another process
/// may be writing one of them (remove_stale_staging_leftovers() tells).
std::vector<std::filesystem::path> staging_leftovers(const std::filesystem::path& out);

/// The empty file an AtomicDir's staging folder holds from its creation until
/// commit() moves it into place: remove_stale_staging_leftovers() deletes a
/// `<out>.tmp-XXXXXX` only when it holds this (a regular file), so a user's
/// own folder of such a name (`model.tmp-backup`) is never deleted.
inline constexpr const char* kStagingMarker = ".kq-staging";

/// The one refusal of a staging folder as a model folder: every reader of a
/// model folder (load_model_config, Tokenizer::load, load_eos_token_ids,
/// load_generation_defaults, check_quantized_side_files, kq quantize's checks
/// of --model) calls it before reading anything. A folder holding
/// kStagingMarker (anything at that name, even a dangling link) is an
/// unfinished kq quantize output (a copy of OUT.tmp-XXXXXX made while it was
/// being written, or one left by a killed kq) that may lack the files written
/// last (tokenizer and generation configs). Throws FormatError naming
/// `model_dir` and the marker; nothing for any other folder, or a path that is
/// not one (left to the caller's own error).
void check_not_staging_folder(const std::filesystem::path& model_dir);

/// The file AtomicDir::commit() writes into an existing `out` just before it
/// moves it aside to be replaced (to the staging name by the exchange, or to
/// `<out>.old-XXXXXX`), holding "<st_dev>:<st_ino>\n" of that folder (decimal),
/// so that the old folder a process killed before deleting it leaves is known
/// as kq's: a copy of it (another inode) is not. remove_stale_staging_leftovers()
/// deletes such a leftover once a new `out` is in place. A process killed
/// between writing it and the move leaves it in `out` (an empty-looking file
/// that the next overwrite replaces with the folder).
inline constexpr const char* kReplacedMarker = ".kq-replaced";

/// What remove_stale_staging_leftovers() did with each of staging_leftovers(out).
struct StagingCleanup {
  /// Stale (no process held its lock) and deleted.
  std::vector<std::filesystem::path> removed;
  /// Kept: a process holds its lock (a write of `out` in progress), or it
  /// could not be checked (the file system has no flock(2), it is not a
  /// folder of this user, it cannot be opened or deleted).
  std::vector<std::filesystem::path> in_use_or_unknown;
  /// Kept: a stale non-empty `<out>.old-XXXXXX` while `out` is missing or
  /// empty, which may be the only copy of the folder an interrupted overwrite
  /// was replacing (`mv <out>.old-XXXXXX <out>` restores it).
  std::vector<std::filesystem::path> kept_old;
  /// Kept: not locked, but without the marker of a kq staging folder
  /// (kStagingMarker, or kReplacedMarker naming that folder): a folder of the
  /// user's that only looks like one, or (rarely) one whose process was killed
  /// during commit(), or a non-empty `<out>.old-XXXXXX` without
  /// kReplacedMarker next to a complete `out` (kq cannot tell it from the
  /// user's own).
  std::vector<std::filesystem::path> not_made_by_kq;
};

/// Deletes the stale leftovers of earlier writes of `out`: each of
/// staging_leftovers(out) that is a real folder (not a symbolic link, never
/// followed) owned by this user, on whose open descriptor flock(LOCK_EX |
/// LOCK_NB) succeeds (no AtomicDir, in any process, holds it: the process
/// that created it died), and that is still the folder at that name once
/// locked. A `<out>.tmp-XXXXXX` is then deleted when it holds the marker
/// kStagingMarker (an unfinished new folder of a killed kq) or is empty (one
/// killed before its marker was written; nothing is lost); one holding other
/// files without the marker is kept (StagingCleanup::not_made_by_kq). A `<out>.old-XXXXXX` is deleted
/// when it is empty (the placeholder of an interrupted move); a
/// non-empty one is kept: while `out` is missing or empty it may be the only
/// copy of the previous `out` (killed between moving it aside and moving the
/// new one in: StagingCleanup::kept_old), else it may be the user's
/// (not_made_by_kq). Either name holding kReplacedMarker that names it (the
/// old `out` a commit moved aside and was killed before deleting) is deleted
/// when a non-empty `out` is in place, else kept (kept_old). Nothing is
/// deleted where flock is unsupported. Never throws (a folder that cannot be
/// checked or deleted is kept and listed).
StagingCleanup remove_stale_staging_leftovers(const std::filesystem::path& out);

}  // namespace kq::io
