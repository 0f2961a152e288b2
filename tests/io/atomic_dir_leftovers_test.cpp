// AtomicDir's staging folder is flock'ed while it exists, so that
// remove_stale_staging_leftovers() deletes the `<out>.tmp-XXXXXX` a killed
// process left (kill -9: no handler runs) and keeps the one a live AtomicDir
// writes; an `<out>.old-XXXXXX` is deleted only when `out` is in place (else
// it may be the only copy of the old folder); symbolic links and other names
// are never touched.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

/// An open descriptor of the folder `dir` with flock(LOCK_EX) taken, as another writer holds it; closed when destroyed.
struct HeldLock {
  explicit HeldLock(const fs::path& dir) : fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    EXPECT_GE(fd, 0) << dir;
    EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0) << dir;
  }
  ~HeldLock() { ::close(fd); }
  HeldLock(const HeldLock&) = delete;
  HeldLock& operator=(const HeldLock&) = delete;
  int fd;
};

/// Whether some process (this one through another descriptor included) holds a flock on the folder `dir`.
bool is_locked(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool locked = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return locked;
}

TEST(AtomicDirLeftovers, TheStagingFolderIsLockedUntilItIsMovedIntoPlace) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  {
    io::AtomicDir dir(out);
    io::write_file_atomic(dir.file("config.json"), "{}\n");
    EXPECT_TRUE(is_locked(dir.staging()));
    // A live writer's folder is kept, in this process as in any other.
    const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
    EXPECT_TRUE(done.removed.empty());
    EXPECT_EQ(done.in_use_or_unknown, std::vector<fs::path>{dir.staging()});
    EXPECT_TRUE(fs::is_regular_file(dir.file("config.json")));
    dir.commit();
    EXPECT_FALSE(is_locked(out)) << "the lock followed the folder to out and stayed";
  }
  {  // Replacing a non-empty out (atomic exchange): the lock is released too.
    io::AtomicDir dir(out, /*overwrite=*/true);
    io::write_file_atomic(dir.file("config.json"), "{\"v\": 2}\n");
    dir.commit();
    EXPECT_FALSE(is_locked(out));
  }
  EXPECT_EQ(testing::read_all(out / "config.json"), "{\"v\": 2}\n");
  EXPECT_TRUE(io::staging_leftovers(out).empty());
}

TEST(AtomicDirLeftovers, TheFolderOfAWriterKilledByKill9IsRemoved) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    try {
      io::AtomicDir dir(out);
      io::write_file_atomic(dir.file("config.json"), "{}\n");
      const char c = 'r';
      if (::write(ready[1], &c, 1) != 1) ::_exit(98);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(99);
    }
  }
  ::close(ready[1]);
  char c = 0;
  const bool started = ::read(ready[0], &c, 1) == 1;
  ::close(ready[0]);
  const std::vector<fs::path> left = io::staging_leftovers(out);
  EXPECT_EQ(left.size(), 1u);
  // While the writer lives its folder is kept.
  EXPECT_TRUE(io::remove_stale_staging_leftovers(out).removed.empty());
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(started) << "the child did not start its write (status " << status << ")";
  ASSERT_EQ(io::staging_leftovers(out), left) << "kill -9 removed the folder: nothing to test";
  const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
  EXPECT_EQ(done.removed, left);
  EXPECT_TRUE(done.in_use_or_unknown.empty());
  EXPECT_TRUE(io::staging_leftovers(out).empty());
  EXPECT_FALSE(fs::exists(out));
}

TEST(AtomicDirLeftovers, ALockedLeftoverIsKeptAndAnUnlockedOneRemoved) {
  TempDir tmp;
  const fs::path out = tmp.path / "q", left = tmp.path / "q.tmp-Ab12Cd";
  fs::create_directory(left);
  testing::write_text(left / "model.safetensors", "partial");
  testing::write_text(left / io::kStagingMarker, "");  // as an AtomicDir's staging folder holds it
  {
    const HeldLock writer(left);
    const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
    EXPECT_TRUE(done.removed.empty());
    EXPECT_EQ(done.in_use_or_unknown, std::vector<fs::path>{left});
    EXPECT_TRUE(fs::is_regular_file(left / "model.safetensors"));
  }
  const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
  EXPECT_EQ(done.removed, std::vector<fs::path>{left});
  EXPECT_FALSE(fs::exists(left));
}

// `<out>.old-XXXXXX` is `out` moved aside by a commit without RENAME_EXCHANGE.
// Killed after that move and before the new folder's, it is the only copy of
// the old folder. kq cannot mark it (it is the user's folder, moved), so a
// non-empty one is never deleted: named as a possible only copy while `out`
// is missing or empty, else as a folder kq cannot tell it made; the empty
// placeholder mkdtemp made is deleted.
TEST(AtomicDirLeftovers, AnOldFolderIsKeptAndNamedTheEmptyPlaceholderRemoved) {
  TempDir tmp;
  const fs::path out = tmp.path / "q", old = tmp.path / "q.old-Ab12Cd", placeholder = tmp.path / "q.old-Empty0";
  fs::create_directory(old);
  testing::write_text(old / "config.json", "{}\n");
  fs::create_directory(placeholder);
  io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
  EXPECT_EQ(done.kept_old, std::vector<fs::path>{old});
  EXPECT_EQ(done.removed, std::vector<fs::path>{placeholder});
  fs::create_directory(out);  // empty: not a replacement
  done = io::remove_stale_staging_leftovers(out);
  EXPECT_EQ(done.kept_old, std::vector<fs::path>{old});
  testing::write_text(out / "config.json", "{\"new\": true}\n");
  {  // in place, but the old folder is still locked (a commit deleting it): kept
    const HeldLock writer(old);
    done = io::remove_stale_staging_leftovers(out);
    EXPECT_EQ(done.in_use_or_unknown, std::vector<fs::path>{old});
  }
  done = io::remove_stale_staging_leftovers(out);
  EXPECT_TRUE(done.removed.empty());
  EXPECT_TRUE(done.kept_old.empty());
  EXPECT_EQ(done.not_made_by_kq, std::vector<fs::path>{old});
  EXPECT_EQ(testing::read_all(old / "config.json"), "{}\n");
  EXPECT_EQ(testing::read_all(out / "config.json"), "{\"new\": true}\n");
}

// A user's own folders named like leftovers (tester round 17: "res.tmp-backup", "res.old-archiv" were deleted
// with their files): without kq's marker a `.tmp-` one is kept, and so is a non-empty `.old-` one.
TEST(AtomicDirLeftovers, AUsersFoldersNamedLikeLeftoversAreKept) {
  TempDir tmp;
  const fs::path out = tmp.path / "res", backup = tmp.path / "res.tmp-backup", archive = tmp.path / "res.old-archiv";
  fs::create_directory(out);
  testing::write_text(out / "config.json", "{}\n");
  fs::create_directory(backup);
  testing::write_text(backup / "notes.txt", "my precious data");
  fs::create_directory(archive);
  testing::write_text(archive / "x.txt", "old results");
  const fs::path empty = tmp.path / "res.tmp-Empty0";  // killed between mkdtemp and its marker: nothing to lose
  fs::create_directory(empty);
  const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
  EXPECT_EQ(done.removed, std::vector<fs::path>{empty});
  EXPECT_EQ(done.not_made_by_kq, (std::vector<fs::path>{archive, backup}));
  EXPECT_EQ(testing::read_all(backup / "notes.txt"), "my precious data");
  EXPECT_EQ(testing::read_all(archive / "x.txt"), "old results");
}

/// Writes io::kReplacedMarker into `dir` as AtomicDir::commit() does into the `out` it moves aside: the folder's
/// "<st_dev>:<st_ino>" (`of`: another folder's, for a copy).
void write_replaced_marker(const fs::path& dir, const fs::path& of) {
  struct stat st {};
  ASSERT_EQ(::stat(of.c_str(), &st), 0) << of;
  testing::write_text(dir / io::kReplacedMarker, std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + "\n");
}

// Tester: kill -9 during `kq quantize --overwrite`, just after the exchange, left the OLD `out` (partly deleted)
// under the staging name without kq's marker; it was kept (not_made_by_kq) by 11 later runs. The state as that
// kill leaves it, at both names a commit moves `out` to: removed once a new `out` is in place, kept (a possible
// only copy) while `out` is missing.
TEST(AtomicDirLeftovers, TheOldFolderAKilledOverwriteMovedAsideIsRemoved) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  for (const char* name : {"q.tmp-Ab12Cd", "q.old-Ab12Cd"}) {
    const fs::path old = tmp.path / name;
    fs::create_directory(old);
    testing::write_text(old / "config.json", "{\"old\": true}\n");
    write_replaced_marker(old, old);
    io::StagingCleanup done = io::remove_stale_staging_leftovers(out);  // no new `out`: the only copy
    EXPECT_EQ(done.kept_old, std::vector<fs::path>{old}) << name;
    EXPECT_TRUE(done.removed.empty()) << name;
    fs::create_directory(out);
    testing::write_text(out / "config.json", "{\"new\": true}\n");
    {  // the commit still deleting it holds its lock
      const HeldLock writer(old);
      EXPECT_EQ(io::remove_stale_staging_leftovers(out).in_use_or_unknown, std::vector<fs::path>{old}) << name;
    }
    done = io::remove_stale_staging_leftovers(out);
    EXPECT_EQ(done.removed, std::vector<fs::path>{old}) << name;
    EXPECT_TRUE(done.not_made_by_kq.empty()) << name;
    EXPECT_FALSE(fs::exists(old)) << name;
    EXPECT_EQ(testing::read_all(out / "config.json"), "{\"new\": true}\n");
    fs::remove_all(out);
  }
}

/// The names deleted in the folder `dir` (inotify IN_DELETE events, in order) while `f` runs; the watch follows the
/// folder when it is renamed.
template <class F>
std::vector<std::string> deletions_in(const fs::path& dir, F f) {
  std::vector<std::string> names;
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_GE(::inotify_add_watch(fd, dir.c_str(), IN_DELETE), 0) << dir;
  f();
  alignas(struct inotify_event) char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    for (ssize_t at = 0; at < n;) {
      const auto* ev = reinterpret_cast<const struct inotify_event*>(buf + at);
      if ((ev->mask & IN_DELETE) && ev->len > 0) names.emplace_back(ev->name);
      at += ssize_t(sizeof(struct inotify_event) + ev->len);
    }
  ::close(fd);
  return names;
}

// The marker goes last when the old folder is deleted, by commit() and by the cleanup: std::filesystem::remove_all
// took it in directory order (on tmpfs first), so a kill -9 during the deletion left the half-deleted old folder
// unmarked again (the CLI repro still left `out.tmp-XXXXXX` with config.json, vocab.json, ... and no marker).
TEST(AtomicDirLeftovers, TheReplacedMarkerIsDeletedLast) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  fs::create_directory(out);
  for (int i = 0; i < 50; ++i) testing::write_text(out / ("old" + std::to_string(i)), "old");
  std::vector<std::string> deleted = deletions_in(out, [&] {
    io::AtomicDir dir(out, /*overwrite=*/true);
    io::write_file_atomic(dir.file("config.json"), "{}\n");
    dir.commit();
  });
  ASSERT_EQ(deleted.size(), 51u);
  EXPECT_EQ(deleted.back(), io::kReplacedMarker);
  EXPECT_EQ(testing::read_all(out / "config.json"), "{}\n");

  const fs::path old = tmp.path / "q.tmp-Ab12Cd";  // as a kill -9 during that deletion leaves it
  fs::create_directory(old);
  write_replaced_marker(old, old);
  for (int i = 0; i < 50; ++i) testing::write_text(old / ("old" + std::to_string(i)), "old");
  deleted = deletions_in(old, [&] { EXPECT_EQ(io::remove_stale_staging_leftovers(out).removed.size(), 1u); });
  ASSERT_EQ(deleted.size(), 51u);
  EXPECT_EQ(deleted.back(), io::kReplacedMarker);
}

// A user's folder named like a leftover is never deleted for holding a kReplacedMarker that does not name it
// (copied from a folder that had one: `cp -r`), nor one whose marker is not kq's (garbage, a link).
TEST(AtomicDirLeftovers, AUsersLookAlikeOfAMovedAsideFolderIsKept) {
  TempDir tmp;
  const fs::path out = tmp.path / "q", copy = tmp.path / "q.tmp-backup", junk = tmp.path / "q.old-junk00",
                 link = tmp.path / "q.tmp-link00";
  fs::create_directory(out);
  testing::write_text(out / "config.json", "{}\n");
  for (const fs::path& d : {copy, junk, link}) {
    fs::create_directory(d);
    testing::write_text(d / "notes.txt", "mine");
  }
  write_replaced_marker(copy, out);  // the marker of the folder it was copied from
  testing::write_text(junk / io::kReplacedMarker, "not an identity\n");
  struct stat st {};
  ASSERT_EQ(::stat(link.c_str(), &st), 0);
  testing::write_text(tmp.path / "id.txt", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + "\n");
  fs::create_symlink(tmp.path / "id.txt", link / io::kReplacedMarker);
  const fs::path fifo = tmp.path / "q.tmp-fifo00";  // a FIFO named like the marker is not opened to wait on
  fs::create_directory(fifo);
  testing::write_text(fifo / "notes.txt", "mine");
  ASSERT_EQ(::mkfifo((fifo / io::kReplacedMarker).c_str(), 0600), 0);
  const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
  EXPECT_TRUE(done.removed.empty());
  EXPECT_EQ(done.not_made_by_kq, (std::vector<fs::path>{junk, copy, fifo, link}));
  for (const fs::path& d : {copy, junk, link, fifo}) EXPECT_EQ(testing::read_all(d / "notes.txt"), "mine") << d;
}

// commit() marks the old `out` before moving it aside; the new `out` holds no marker, and a failed commit leaves
// none in the old one.
TEST(AtomicDirLeftovers, TheReplacedMarkerIsInTheOldFolderOnly) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  fs::create_directory(out);
  testing::write_text(out / "config.json", "{\"v\": 1}\n");
  io::AtomicDir dir(out, /*overwrite=*/true);
  dir.write([&] { io::write_file_atomic(dir.file("config.json"), "{\"v\": 2}\n"); });
  dir.commit();
  EXPECT_EQ(testing::read_all(out / "config.json"), "{\"v\": 2}\n");
  EXPECT_FALSE(fs::exists(out / io::kReplacedMarker));
  EXPECT_TRUE(io::staging_leftovers(out).empty());
}

// The marker is in the staging folder while it is written, and not in the committed folder.
TEST(AtomicDirLeftovers, TheMarkerIsInTheStagingFolderOnly) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  io::AtomicDir dir(out);
  const std::vector<fs::path> left = io::staging_leftovers(out);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_TRUE(fs::is_regular_file(left[0] / io::kStagingMarker));
  dir.write([&] { io::write_file_atomic(dir.file("config.json"), "{}\n"); });
  dir.commit();
  EXPECT_TRUE(fs::is_regular_file(out / "config.json"));
  EXPECT_FALSE(fs::exists(out / io::kStagingMarker));
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(out)) ++files;
  EXPECT_EQ(files, 1u);
}

TEST(AtomicDirLeftovers, LinksAndOtherNamesAreNeverTouched) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  fs::create_directory(out);
  testing::write_text(out / "config.json", "{}\n");
  fs::create_directory(tmp.path / "real");
  testing::write_text(tmp.path / "real" / "keep.txt", "mine");
  fs::create_directory_symlink("real", tmp.path / "q.tmp-Sym123");
  fs::create_directory_symlink("real", tmp.path / "q.old-Sym123");
  for (const char* d : {"q.tmp-short", "q.tmp-Ab12Cd7", "qq.tmp-Ab12Cd", "q.new-Ab12Cd", "q.tmp-Ab_2Cd"})
    fs::create_directory(tmp.path / d);
  testing::write_text(tmp.path / "q.tmp-File01", "not a folder");
  const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
  EXPECT_TRUE(done.removed.empty());
  EXPECT_TRUE(done.in_use_or_unknown.empty());
  EXPECT_TRUE(done.kept_old.empty());
  for (const char* name : {"q.tmp-Sym123", "q.old-Sym123"}) EXPECT_TRUE(fs::is_symlink(tmp.path / name)) << name;
  EXPECT_EQ(testing::read_all(tmp.path / "real" / "keep.txt"), "mine");
  for (const char* d :
       {"q.tmp-short", "q.tmp-Ab12Cd7", "qq.tmp-Ab12Cd", "q.new-Ab12Cd", "q.tmp-Ab_2Cd", "q.tmp-File01"})
    EXPECT_TRUE(fs::exists(tmp.path / d)) << d;
}

TEST(AtomicDirLeftovers, AFolderOfAnotherUserIsKept) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a folder to another user";
  TempDir tmp;
  const fs::path out = tmp.path / "q", left = tmp.path / "q.tmp-Ab12Cd";
  fs::create_directory(left);
  ASSERT_EQ(::chown(left.c_str(), 65534, 65534), 0);
  const io::StagingCleanup done = io::remove_stale_staging_leftovers(out);
  EXPECT_EQ(done.in_use_or_unknown, std::vector<fs::path>{left});
  EXPECT_TRUE(fs::is_directory(left));
}

}  // namespace
}  // namespace kq
