#include "io/atomic_dir.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>  // renameat2 (glibc >= 2.28, _GNU_SOURCE)
#include <unistd.h>

#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "core/mapped_regions.hpp"
#include "io/atomic_file.hpp"
#include "kq/error.hpp"

namespace kq::io {
namespace fs = std::filesystem;

namespace {

/// The staging folders of the AtomicDirs alive in this process, and the lock
/// that orders their creation, removal and commit against the signal watcher.
/// Never destroyed: the watcher thread may use it while the process exits.
struct StagingRegistry {
  std::mutex mutex;
  std::set<std::string> dirs;
  std::set<std::string> made_folders;  // remove_folders_on_signals: removed after `dirs`, deepest first
  std::vector<std::string> written;  // targets of the AtomicDirs committed, for the interrupt message
};

StagingRegistry& registry() {
  static StagingRegistry* r = new StagingRegistry;
  return *r;
}

/// Removes `dir` and everything in it; retried a few times, as a writer may add
/// a file between the listing and the final rmdir. Its markers (kStagingMarker,
/// kReplacedMarker) go last, so that a process killed meanwhile (kill -9 while
/// the old `out` is deleted) leaves a folder the next run still knows as kq's:
/// std::filesystem::remove_all took them in directory order, often first. A
/// symbolic link `dir` is removed, never followed. Never throws.
void remove_tree(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(dir, ec))) {
    std::vector<fs::path> entries;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      if (const fs::path name = it->path().filename(); name != kStagingMarker && name != kReplacedMarker)
        entries.push_back(it->path());
    for (const fs::path& e : entries) fs::remove_all(e, ec);
  }
  for (int attempt = 0; attempt < 8; ++attempt) {
    fs::remove_all(dir, ec);
    if (!fs::exists(fs::symlink_status(dir, ec))) return;
  }
}

bool is_nonempty_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && !fs::is_empty(p, ec);
}

/// A file descriptor, closed (and so its flock released) when destroyed.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&&) = delete;
  int get() const { return fd_; }
  /// Hands the descriptor over (no longer closed here).
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

/// Opens the folder `dir` itself (never a symbolic link at that name) for flock: O_RDONLY, close-on-exec.
int open_folder(const fs::path& dir) { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); }

/// flock(LOCK_EX) on `fd` (with LOCK_NB when `nonblocking`), retried on EINTR.
/// Returns 0, or the errno: EWOULDBLOCK (held elsewhere), or what a file
/// system without flock gives (EOPNOTSUPP, ENOLCK, EINVAL, ...).
int lock_exclusive(int fd, bool nonblocking) {
  while (::flock(fd, LOCK_EX | (nonblocking ? LOCK_NB : 0)) != 0)
    if (errno != EINTR) return errno;
  return 0;
}

/// Whether the open folder `fd` is still the folder named `path` (same device
/// and inode; `path` not followed if it is a link).
bool is_folder_at(int fd, const fs::path& path) {
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::lstat(path.c_str(), &b) == 0 && S_ISDIR(b.st_mode) && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

/// The content of kReplacedMarker in the open folder `fd`: "<st_dev>:<st_ino>\n"; "" when it cannot be read.
std::string folder_identity(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {};
  return fmt::format("{}:{}\n", static_cast<unsigned long long>(st.st_dev), static_cast<unsigned long long>(st.st_ino));
}

/// Writes kReplacedMarker (its identity) into the folder `dir` that commit() is about to move aside, so that a
/// process killed before it is deleted leaves a folder remove_stale_staging_leftovers() knows as kq's. Best
/// effort (a folder kq may not write into stays unmarked, as before); returns whether it was written.
bool mark_replaced(const fs::path& dir) {
  const UniqueFd folder(open_folder(dir));
  if (folder.get() < 0) return false;
  const std::string id = folder_identity(folder.get());
  const int fd = ::openat(folder.get(), kReplacedMarker, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = !id.empty() && ::write(fd, id.data(), id.size()) == ssize_t(id.size());
  ::close(fd);
  if (!ok) ::unlinkat(folder.get(), kReplacedMarker, 0);
  return ok;
}

/// Whether the open folder `fd` holds kReplacedMarker naming this very folder (a copy of a marked folder, whose
/// inode differs, does not).
bool holds_replaced_marker(int fd) {
  const int m = ::openat(fd, kReplacedMarker, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);  // a FIFO: no wait
  if (m < 0) return false;
  struct stat st {};
  char buf[64];
  const ssize_t n = ::fstat(m, &st) == 0 && S_ISREG(st.st_mode) ? ::read(m, buf, sizeof buf) : -1;
  ::close(m);
  const std::string id = folder_identity(fd);
  return n > 0 && !id.empty() && std::string(buf, size_t(n)) == id;
}

/// A folder made by make_locked_sibling_dir and the descriptor holding its lock.
struct LockedDir {
  fs::path path;
  UniqueFd lock;  ///< -1 where the file system has no flock (the folder is then written unlocked)
};

/// mkdtemp on "<base>.<tag>-XXXXXX", locked (flock LOCK_EX) before anything
/// is written into it. Until the lock is taken, a concurrent
/// remove_stale_staging_leftovers() may find the new folder unlocked and
/// delete it: the lock then waits for that deletion to end, the folder is no
/// longer at its name, and another one is made. A failure names `base` only.
LockedDir make_locked_sibling_dir(const fs::path& base, const char* tag) {
  const std::string tmpl = base.string() + "." + tag + "-XXXXXX";
  for (int attempt = 0;; ++attempt) {
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    if (!::mkdtemp(name.data())) {
      const int err = errno;
      raise<Error>("{}: cannot write it: {}", base.string(), temporary_sibling_failure(base.parent_path(), err));
    }
    LockedDir dir{fs::path(name.data()), UniqueFd(open_folder(name.data()))};  // opened while still 0700 (readable)
    bool deleted = dir.lock.get() < 0 && errno == ENOENT;
    if (dir.lock.get() >= 0) {
      if (lock_exclusive(dir.lock.get(), false) != 0)
        dir.lock.reset();  // no flock on this file system: written unlocked (and never deleted as stale)
      else
        deleted = !is_folder_at(dir.lock.get(), dir.path);
    }
    if (deleted) {
      if (attempt < 8) continue;
      raise<Error>("{}: cannot write it: its new folder {} was deleted by another process as soon as it was made",
                   base.string(), dir.path.string());
    }
    // mkdtemp makes the folder 0700; give it the permissions mkdir would (0777 & ~umask).
    ::chmod(name.data(), 0777 & ~current_umask());
    return dir;
  }
}

/// fsync every regular file and folder under `root`, deepest first, then root.
void fsync_tree(const fs::path& root) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_symlink()) continue;
    if (e.is_directory()) dirs.push_back(e.path());
    else if (e.is_regular_file()) fsync_path(e.path());
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) fsync_path(*it);
  fsync_path(root);
}

/// `message` with each occurrence of `from` (the staging folder) replaced by `to` (the target).
std::string renamed(std::string message, const std::string& from, const std::string& to) {
  for (size_t at = message.find(from); at != std::string::npos; at = message.find(from, at + to.size()))
    message.replace(at, from.size(), to);
  return message;
}

/// Runs `f`; a kq::Error from it is re-thrown, same type, naming `out` where it named `staging`.
void naming_target(const fs::path& staging, const fs::path& out, const std::function<void()>& f) {
  const std::string from = staging.string(), to = out.string();
  try {
    f();
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(renamed(e.what(), from, to));
  } catch (const FormatError& e) {
    throw FormatError(renamed(e.what(), from, to));
  } catch (const Unsupported& e) {
    throw Unsupported(renamed(e.what(), from, to));
  } catch (const Error& e) {
    throw Error(renamed(e.what(), from, to));
  }
}

// ---- removal of the staging folders on SIGINT / SIGTERM / SIGHUP ----
//
// No signal handler runs: the signals are blocked in the installing thread
// (and so in every thread it starts later: OpenMP and oneDNN workers) and a
// watcher thread takes them synchronously with sigwait(). An asynchronous
// handler, even one that only write()s to a pipe, is delivered on whatever
// thread is running, in the middle of any code; on a thread inside oneDNN's
// sgemm that corrupted the heap ("corrupted size vs. prev_size while
// consolidating", an abort in free() under dnnl_sgemm), in about 1 of 40
// interrupted `kq quantize --mode awq` runs of gpt2-small.

constexpr int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP};

/// The kCleanupSignals the watcher takes (not those ignored at installation);
/// written once before the watcher starts, then only read.
sigset_t g_watched;
std::atomic<bool> g_watching{false};

/// Hands a cleanup signal pending on the calling thread to the watcher. Such
/// a signal was sent to this thread alone (tgkill, a debugger's `signal
/// SIGINT`), not to the process as Ctrl-C does; blocked here, and never taken
/// by the watcher's sigwait, it stayed pending for good and the interrupt was
/// lost (kq quantize exited 0). It is taken off this thread and sent to the
/// process, which the watcher takes it from.
void forward_pending_signals() {
  if (!g_watching.load()) return;
  sigset_t pending;
  if (::sigpending(&pending) != 0) return;
  for (const int sig : kCleanupSignals) {
    if (::sigismember(&g_watched, sig) != 1 || ::sigismember(&pending, sig) != 1) continue;
    sigset_t one;
    ::sigemptyset(&one);
    ::sigaddset(&one, sig);
    const struct timespec now {};
    if (::sigtimedwait(&one, nullptr, &now) == sig) ::kill(::getpid(), sig);
  }
}

/// forward_pending_signals() when destroyed: at the end of AtomicDir::commit(),
/// after its lock is released, so that an interrupt sent to the committing
/// thread (before or during the move) is reported as one after the move.
struct ForwardPendingSignals {
  ForwardPendingSignals() = default;
  ~ForwardPendingSignals() { forward_pending_signals(); }
  ForwardPendingSignals(const ForwardPendingSignals&) = delete;
  ForwardPendingSignals& operator=(const ForwardPendingSignals&) = delete;
};

/// "<program>: interrupted: <out> was written completely before stopping"
/// on stderr for each folder committed before the watcher got the signal:
/// the interrupt is not silently dropped, and the user knows the folder is
/// whole (it is never half-moved into place).
void report_written_folders() {
  for (const std::string& out : registry().written) {
    const std::string line =
        fmt::format("{}: interrupted: {} was written completely before stopping\n", program_invocation_short_name, out);
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
      const ssize_t w = ::write(STDERR_FILENO, p, left);
      if (w <= 0) break;
      p += w, left -= size_t(w);
    }
  }
}

// ---- SIGBUS from a truncated memory-mapped file ----
//
// The handler runs on the faulting thread, possibly inside any code, so it
// only reads these lock-free atomics and calls write, kill, sleep and _exit.

/// The real-time signal with which the SIGBUS handler asks the watcher to
/// remove the staging folders and exit with status 1 (0: no watcher).
std::atomic<int> g_fault_signal{0};
/// The message the SIGBUS handler writes (a string literal given once).
std::atomic<const char*> g_fault_message{nullptr};
/// Set by the first thread that faults; later ones only wait for the end.
std::atomic<bool> g_faulted{false};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free &&
              std::atomic<const char*>::is_always_lock_free);

/// write(2) of all `len` bytes to stderr (async-signal-safe).
void write_stderr(const char* p, size_t len) {
  while (len > 0) {
    const ssize_t w = ::write(STDERR_FILENO, p, len);
    if (w <= 0) return;
    p += w, len -= size_t(w);
  }
}

/// `s` to stderr with control characters and DEL as \xNN (a name from a
/// model folder must not drive the terminal); async-signal-safe.
void write_stderr_escaped(const char* s) {
  for (; *s != '\0'; ++s) {
    const auto c = static_cast<unsigned char>(*s);
    if (c >= 0x20 && c != 0x7f) {
      write_stderr(s, 1);
      continue;
    }
    constexpr char kHex[] = "0123456789abcdef";
    const char esc[4] = {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
    write_stderr(esc, 4);
  }
}

/// A SIGBUS handler: the file behind a mapping is shorter than the mapping.
/// The message is followed by the file (and tensor) at the faulting address
/// when core::mapped_file_at knows it: "...: <file> (tensor '<name>')".
void on_mapped_file_fault(int, siginfo_t* info, void*) {
  if (!g_faulted.exchange(true)) {
    if (const char* m = g_fault_message.load()) {
      size_t len = 0;
      while (m[len] != '\0') ++len;
      const bool newline = len > 0 && m[len - 1] == '\n';
      const core::MappedPlace place = core::mapped_file_at(info ? info->si_addr : nullptr);
      if (!place.file) {
        write_stderr(m, len);
      } else {
        write_stderr(m, newline ? len - 1 : len);
        write_stderr(": ", 2);
        write_stderr_escaped(place.file);
        if (place.region) {
          write_stderr(" (tensor '", 10);
          write_stderr_escaped(place.region);
          write_stderr("')", 2);
        }
        if (newline) write_stderr("\n", 1);
      }
    }
    const int watcher = g_fault_signal.load();
    if (watcher == 0) ::_exit(1);
    ::kill(::getpid(), watcher);  // blocked in every thread but the watcher, which takes it
  }
  // Returning would run the faulting access again: wait for the watcher (or
  // the first faulting thread) to end the process.
  for (int i = 0; i < 30; ++i) ::sleep(1);
  ::_exit(1);
}

/// The watcher thread: waits for one of `set`, removes every registered
/// staging folder, then ends the process by that signal.
[[noreturn]] void watch_cleanup_signals(sigset_t set) {
  int sig = 0;
  while (::sigwait(&set, &sig) != 0) {
  }
  // Taken and never released: no AtomicDir may create, commit or remove a
  // folder after this point, and the process ends below.
  registry().mutex.lock();
  for (const std::string& d : registry().dirs) remove_tree(d);
  // Then the folders made above them, deepest first (a folder's name is longer than those above it), while empty.
  std::vector<std::string> made(registry().made_folders.begin(), registry().made_folders.end());
  std::sort(made.begin(), made.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const std::string& f : made) (void)::rmdir(f.c_str());
  if (sig == g_fault_signal.load()) ::_exit(1);  // a SIGBUS (exit_on_mapped_file_fault) wrote its message
  report_written_folders();
  // The default action, on this thread only (it is blocked in every other):
  // the process is killed by `sig` without running any exit code (atexit,
  // static destructors) while the other threads still run.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  sigset_t one;
  ::sigemptyset(&one);
  ::sigaddset(&one, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  ::raise(sig);        // delivered on return from raise: the process is killed by `sig`
  ::_exit(128 + sig);  // not reached
}

void install_cleanup_handlers() {
  (void)registry();  // allocated here, not on the watcher at the interrupt
  sigset_t set;
  ::sigemptyset(&set);
  for (const int sig : kCleanupSignals) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;  // e.g. nohup
    ::sigaddset(&set, sig);
  }
  // The SIGBUS handler's request (exit_on_mapped_file_fault), always taken.
  const int fault_signal = SIGRTMIN + 1;
  ::sigaddset(&set, fault_signal);
  sigset_t before;
  if (const int err = ::pthread_sigmask(SIG_BLOCK, &set, &before); err != 0)
    raise<Error>("cannot set up the interrupt handler: pthread_sigmask: {}", std::strerror(err));
  g_watched = set;
  try {
    std::thread(watch_cleanup_signals, set).detach();  // inherits the blocked set, as sigwait needs
    g_fault_signal.store(fault_signal);
    g_watching.store(true);
  } catch (const std::system_error& e) {
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    raise<Error>("cannot set up the interrupt handler: thread: {}", e.what());
  }
}

/// "<name>.tmp-XXXXXX" / "<name>.old-XXXXXX" as mkdtemp makes them.
bool is_staging_name(const std::string& entry, const std::string& name) {
  constexpr size_t kSuffix = 6;
  for (const char* tag : {".tmp-", ".old-"}) {
    const std::string prefix = name + tag;
    if (entry.size() == prefix.size() + kSuffix && entry.starts_with(prefix) &&
        std::all_of(entry.begin() + std::ptrdiff_t(prefix.size()), entry.end(),
                    [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }))
      return true;
  }
  return false;
}

}  // namespace

void remove_staging_dirs_on_signals() {
  static std::once_flag once;
  std::call_once(once, install_cleanup_handlers);
}

void exit_on_mapped_file_fault(const char* message) {
  static std::once_flag once;
  std::call_once(once, [message] {
    g_fault_message.store(message);
    struct sigaction sa {};
    sa.sa_sigaction = on_mapped_file_fault;
    ::sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO;
    if (::sigaction(SIGBUS, &sa, nullptr) != 0)
      raise<Error>("cannot set up the SIGBUS handler: sigaction: {}", std::strerror(errno));
  });
}

std::vector<fs::path> staging_leftovers(const fs::path& out) {
  fs::path target;
  try {
    target = AtomicDir::resolve_target(out);
  } catch (const Error&) {
    target = out.lexically_normal();
    if (target.filename().empty()) target = target.parent_path();
  }
  std::vector<fs::path> found;
  const std::string name = target.filename().string();
  if (name.empty()) return found;
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  for (auto it = fs::directory_iterator(parent, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code ec2;
    if (is_staging_name(it->path().filename().string(), name) && it->is_directory(ec2) && !it->is_symlink(ec2))
      found.push_back(target.has_parent_path() ? it->path() : it->path().filename());
  }
  std::sort(found.begin(), found.end());
  return found;
}

namespace {

/// What remove_if_stale() did with one leftover.
enum class Leftover { kGone, kRemoved, kKept, kKeptOld, kNotMadeByKq };

/// One of staging_leftovers(): deleted when it is stale, as
/// remove_stale_staging_leftovers() says; `target` is the folder it was
/// staging or set aside (empty when `out` cannot be resolved).
Leftover remove_if_stale(const fs::path& leftover, const fs::path& target) {
  const UniqueFd dir(open_folder(leftover));  // a symbolic link swapped in meanwhile is not opened (ELOOP)
  if (dir.get() < 0) return errno == ENOENT ? Leftover::kGone : Leftover::kKept;
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) return Leftover::kKept;
  if (lock_exclusive(dir.get(), true) != 0) return Leftover::kKept;  // being written (EWOULDBLOCK), or no flock here
  // Locked, so no AtomicDir holds it: its process died, or it was moved into
  // place (then no longer at this name) before we took the lock.
  if (!is_folder_at(dir.get(), leftover)) return Leftover::kGone;
  const std::string name = leftover.filename().string();
  const bool old = name.compare(name.size() - 11, 5, ".old-") == 0;  // "<name>.old-XXXXXX"
  const bool in_place = !target.empty() && is_nonempty_dir(target);
  std::error_code ec;
  // An empty one (a placeholder, or killed before its marker) holds nothing: deleted.
  if (!(fs::is_empty(leftover, ec) && !ec)) {
    // `out` as a commit moved it aside (killed before deleting it): deleted once a new `out` is in place.
    if (holds_replaced_marker(dir.get())) {
      if (!in_place) return Leftover::kKeptOld;
    } else if (old) {
      return in_place ? Leftover::kNotMadeByKq : Leftover::kKeptOld;  // else perhaps the only copy of `out`
    } else {
      struct stat mst {};
      if (::fstatat(dir.get(), kStagingMarker, &mst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(mst.st_mode))
        return Leftover::kNotMadeByKq;  // a user's folder named like a staging folder
    }
  }
  remove_tree(leftover);
  return fs::exists(fs::symlink_status(leftover, ec)) ? Leftover::kKept : Leftover::kRemoved;
}

}  // namespace

StagingCleanup remove_stale_staging_leftovers(const fs::path& out) {
  StagingCleanup done;
  fs::path target;
  try {
    target = AtomicDir::resolve_target(out);
  } catch (const Error&) {
  }
  for (const fs::path& leftover : staging_leftovers(out)) {
    switch (remove_if_stale(leftover, target)) {
      case Leftover::kGone: break;
      case Leftover::kRemoved: done.removed.push_back(leftover); break;
      case Leftover::kKept: done.in_use_or_unknown.push_back(leftover); break;
      case Leftover::kKeptOld: done.kept_old.push_back(leftover); break;
      case Leftover::kNotMadeByKq: done.not_made_by_kq.push_back(leftover); break;
    }
  }
  return done;
}

fs::path AtomicDir::resolve_target(fs::path out) {
  // A ".." is resolved by the file system, as the kernel resolves the path: "L/../x" with L a link to "a/b" is
  // "a/x", where lexically_normal() would give "x" (a folder the user did not name); "none/../x" and
  // "file/../x" name nothing (ENOENT, ENOTDIR), so they are refused, not read as "x". The part up to the last
  // ".." must exist (fs::canonical: links followed); the rest, which has no "..", is appended. "." alone (or
  // "./") names the current folder by its real path.
  std::vector<fs::path> parts(out.begin(), out.end());
  const auto last_dotdot = std::find(parts.rbegin(), parts.rend(), fs::path(".."));
  const bool dot = !out.empty() && (out.lexically_normal() == "." || out.lexically_normal() == "./");
  if (last_dotdot != parts.rend() || dot) {
    const size_t head_len = last_dotdot != parts.rend() ? size_t(parts.rend() - last_dotdot) : parts.size();
    fs::path head, tail;
    for (size_t i = 0; i < parts.size(); ++i) (i < head_len ? head : tail) /= parts[i];
    std::error_code ec;
    fs::path real = fs::canonical(head, ec);
    if (ec) raise<InvalidArgument>("'{}': '{}' cannot be resolved: {}", out.string(), head.string(), ec.message());
    out = tail.empty() ? std::move(real) : real / tail;
  }
  out = out.lexically_normal();
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  if (out.empty() || out == "." || out == "..")
    raise<InvalidArgument>("'{}': not a usable output folder name", out.string());
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(out, ec);
  if (fs::is_symlink(link)) {
    const fs::path to = fs::read_symlink(out, ec);
    const fs::file_status st = fs::status(out, ec);
    if (ec == std::errc::too_many_symbolic_link_levels)  // ELOOP: not "does not exist"
      raise<InvalidArgument>("{}: is a symbolic link loop (a link to '{}': {}); fix or remove the link", out.string(),
                             to.string(), ec.message());
    if (!fs::exists(st) && ec)
      raise<InvalidArgument>("{}: is a symbolic link to '{}', which cannot be reached ({})", out.string(),
                             to.string(), ec.message());
    if (!fs::exists(st))
      raise<InvalidArgument>("{}: is a symbolic link to '{}', which does not exist (give the folder itself)",
                             out.string(), to.string());
    if (!fs::is_directory(st))
      raise<InvalidArgument>("{}: is a symbolic link to '{}', which is not a folder", out.string(), to.string());
    const fs::path real = fs::canonical(out, ec);
    if (ec) raise<InvalidArgument>("{}: cannot follow the symbolic link: {}", out.string(), ec.message());
    return real;
  }
  if (fs::exists(link) && !fs::is_directory(link))
    raise<InvalidArgument>("{}: exists and is not a folder", out.string());
  return out;
}

void remove_folders_on_signals(const std::vector<fs::path>& made) {
  const std::lock_guard lock(registry().mutex);
  for (const fs::path& f : made) registry().made_folders.insert(f.string());
}

void forget_folders_on_signals(const std::vector<fs::path>& made) noexcept {
  try {
    const std::lock_guard lock(registry().mutex);
    for (const fs::path& f : made) registry().made_folders.erase(f.string());
  } catch (...) {  // (std::string's allocation, a mutex error: the entry stays, an rmdir that may fail harmlessly)
  }
}

AtomicDir::AtomicDir(fs::path out, bool overwrite) : out_(resolve_target(std::move(out))), overwrite_(overwrite) {
  struct stat st {};
  if (::stat(out_.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    // A mount point: the new folder, made beside it, could never be renamed over it (EBUSY, after all the
    // work); the user's folder keeps its permissions and group (tester round 18b: a 0700 folder became 0755).
    struct stat up {};
    if (::stat((out_ / "..").c_str(), &up) == 0 && (up.st_dev != st.st_dev || up.st_ino == st.st_ino))
      raise<InvalidArgument>("{}: is a mount point, which kq cannot replace (it writes the new folder beside it "
                             "and renames it into place); give a folder inside it, e.g. {}",
                             out_.string(), (out_ / "model").string());
    replaces_ = true;
    mode_ = unsigned(st.st_mode) & 07777u;
    gid_ = unsigned(st.st_gid);
  }
  if (!overwrite_ && is_nonempty_dir(out_))
    raise<InvalidArgument>("{}: folder exists and is not empty (overwrite = true replaces it)", out_.string());
  const std::lock_guard lock(registry().mutex);  // no interrupt between mkdtemp and the registration
  LockedDir staging = make_locked_sibling_dir(out_, "tmp");
  // The marker that tells remove_stale_staging_leftovers() kq made this folder (commit() removes it).
  const int marker = ::open((staging.path / kStagingMarker).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (marker < 0) {
    const int err = errno;
    std::error_code ec;
    fs::remove_all(staging.path, ec);  // still locked (staging.lock) while it is removed
    raise<Error>("{}: cannot write it: {}", out_.string(), std::strerror(err));
  }
  ::close(marker);
  staging_ = std::move(staging.path);
  lock_fd_ = staging.lock.release();
  registry().dirs.insert(staging_.string());
}

AtomicDir::~AtomicDir() {
  const UniqueFd release(lock_fd_);  // after the removal below: never seen unlocked while it is removed
  if (committed_ || staging_.empty()) return;
  const std::lock_guard lock(registry().mutex);
  remove_tree(staging_);
  registry().dirs.erase(staging_.string());
}

void AtomicDir::write(const std::function<void()>& write_files) const {
  naming_target(staging_, out_, write_files);
}

void AtomicDir::commit() {
  if (committed_) raise<Error>("{}: AtomicDir::commit() called twice", out_.string());
  const ForwardPendingSignals forward;  // (destroyed after `lock` below: the watcher sees the folder written)
  naming_target(staging_, out_, [&] {
    try {
      fsync_tree(staging_);
    } catch (const fs::filesystem_error& e) {
      raise<Error>("{}: cannot list the new folder's files: {}", out_.string(), e.code().message());
    }
  });
  const fs::path parent = out_.has_parent_path() ? out_.parent_path() : fs::path(".");
  // The marker goes before the move: `out` holds only what write() wrote. (A process killed from here to the
  // move leaves a staging folder without it, which the next run keeps and names instead of deleting.)
  if (::unlink((staging_ / kStagingMarker).c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    raise<Error>("{}: cannot finish the new folder: {}", out_.string(), std::strerror(err));
  }
  if (replaces_) {  // best effort: a group the caller is not in cannot be given, and then setgid is dropped too
    if (::chown(staging_.c_str(), uid_t(-1), gid_t(gid_)) != 0) mode_ &= ~unsigned(S_ISGID);
    ::chmod(staging_.c_str(), mode_t(mode_));
  }
  // The moves below run whole or not at all with respect to the interrupt
  // watcher (remove_staging_dirs_on_signals), which waits for this lock.
  const std::lock_guard lock(registry().mutex);

  // The staging folder's lock moves with it to out_ (the descriptor follows
  // the folder) and is released when commit() succeeded, once the old folder
  // is deleted; a failed commit keeps it for the destructor's removal.
  struct ReleaseOnCommit {
    AtomicDir& dir;
    ~ReleaseOnCommit() {
      if (dir.committed_ && dir.lock_fd_ >= 0) ::close(std::exchange(dir.lock_fd_, -1));
    }
  } const release{*this};
  if (::rename(staging_.c_str(), out_.c_str()) == 0) {  // out absent or an empty folder
    committed_ = true;
    registry().dirs.erase(staging_.string());
    registry().written.push_back(out_.string());
    fsync_path(parent);
    return;
  }
  const int err = errno;
  if (err != ENOTEMPTY && err != EEXIST)
    raise<Error>("{}: cannot move the new folder into place: {}", out_.string(), std::strerror(err));
  if (!overwrite_)
    raise<InvalidArgument>("{}: folder exists and is not empty (overwrite = true replaces it)", out_.string());

  // Replace a non-empty `out`: atomic exchange when available. The old
  // folder is locked before it moves, and until it is deleted, so that
  // remove_stale_staging_leftovers() in another process leaves it alone.
  UniqueFd old_lock(open_folder(out_));
  if (old_lock.get() >= 0 && lock_exclusive(old_lock.get(), true) != 0) old_lock.reset();  // best effort
  // Marked as kq's before it moves (to staging_'s name, or `<out>.old-XXXXXX`): a kill -9 before its deletion
  // leaves it without kStagingMarker, and the next run would keep it for good (tester: 11 runs).
  const bool marked = mark_replaced(out_);
  const auto unmark = [&](const fs::path& old) {
    if (marked) ::unlink((old / kReplacedMarker).c_str());
  };
  if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, out_.c_str(), RENAME_EXCHANGE) == 0) {
    // staging_ now names the old folder.
    committed_ = true;
    registry().written.push_back(out_.string());
    fsync_path(parent);
    remove_tree(staging_);  // its kReplacedMarker last
    registry().dirs.erase(staging_.string());
    return;
  }
  const int xerr = errno;
  if (xerr != EINVAL && xerr != ENOSYS && xerr != ENOTSUP) {
    unmark(out_);
    raise<Error>("{}: cannot replace the old folder with the new one: {}", out_.string(),
                 std::strerror(xerr));
  }

  // Fallback: out -> out.old-XXXXXX, staging -> out, delete old. The name
  // `old` is locked until it is deleted: the placeholder, then the old folder.
  const LockedDir placeholder = [&] {
    try {
      return make_locked_sibling_dir(out_, "old");
    } catch (...) {
      unmark(out_);
      throw;
    }
  }();
  const fs::path& old = placeholder.path;
  if (::rename(out_.c_str(), old.c_str()) != 0) {  // replaces the empty placeholder `old`
    const int e2 = errno;
    std::error_code ec;
    fs::remove(old, ec);
    unmark(out_);
    raise<Error>("{}: cannot move the old folder aside: {}", out_.string(), std::strerror(e2));
  }
  if (::rename(staging_.c_str(), out_.c_str()) != 0) {
    const int e3 = errno;
    if (::rename(old.c_str(), out_.c_str()) == 0) unmark(out_);  // best effort: put the old folder back
    raise<Error>("{}: cannot move the new folder into place: {}", out_.string(), std::strerror(e3));
  }
  committed_ = true;
  registry().dirs.erase(staging_.string());
  registry().written.push_back(out_.string());
  fsync_path(parent);
  remove_tree(old);  // its kReplacedMarker last
}

void check_not_staging_folder(const fs::path& model_dir) {
  std::error_code ec;
  const fs::file_status marker = fs::symlink_status(model_dir / kStagingMarker, ec);
  if (!ec && marker.type() != fs::file_type::not_found)
    raise<FormatError>(
        "{}: the folder holds {}: it is an unfinished kq quantize output (a staging folder copied while it was "
        "being written, or left by an interrupted kq quantize) and may lack files; remove it and run kq quantize "
        "again",
        model_dir.string(), kStagingMarker);
}

}  // namespace kq::io
