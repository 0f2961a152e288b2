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
