// AtomicDir and interrupts: remove_staging_dirs_on_signals() removes the
// staging folder of a write in progress when the process gets SIGINT, SIGTERM
// or SIGHUP, and the process still ends by that signal; staging_leftovers()
// finds the `<out>.tmp-XXXXXX` folders an interrupted write left; a symbolic
// link to a folder as `out` is followed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

/// Forks a child that installs the handlers, starts an AtomicDir for `out`,
/// writes a file into it, tells the parent through a pipe, and waits to be
/// killed; the parent sends `sig` once the child is ready. Returns the
/// child's wait status.
int interrupt_a_write(const fs::path& out, int sig, bool install) {
  int ready[2];
  if (::pipe(ready) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);  // not inherited from the test runner
    try {
      if (install) io::remove_staging_dirs_on_signals();
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
  const bool ok = ::read(ready[0], &c, 1) == 1;
  ::close(ready[0]);
  EXPECT_TRUE(ok) << "the child did not start its write";
  if (ok) {
    EXPECT_EQ(io::staging_leftovers(out).size(), 1u) << "no staging folder while the write is in progress";
    ::kill(pid, sig);
  } else {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(AtomicDirSignals, InterruptRemovesTheStagingFolder) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(::strsignal(sig));
    TempDir tmp;
    const fs::path out = tmp.path / "q";
    const int status = interrupt_a_write(out, sig, /*install=*/true);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "status " << status;
    EXPECT_TRUE(io::staging_leftovers(out).empty()) << io::staging_leftovers(out).front();
    EXPECT_FALSE(fs::exists(out));
    size_t entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path)) ++entries;
    EXPECT_EQ(entries, 0u);
  }
}

TEST(AtomicDirSignals, WithoutTheHandlersTheStagingFolderStays) {
  // The reference behaviour the handlers fix: killed by SIGINT, the folder stays.
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  const int status = interrupt_a_write(out, SIGINT, /*install=*/false);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << "status " << status;
  EXPECT_EQ(io::staging_leftovers(out).size(), 1u);
}

TEST(AtomicDirSignals, LeftoversAreFoundByName) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  for (const char* d : {"q.tmp-Ab12Cd", "q.old-000000", "q.tmp-short", "q.tmp-Ab12Cd7", "qq.tmp-Ab12Cd", "q"})
    fs::create_directory(tmp.path / d);
  io::write_file_atomic(tmp.path / "q.tmp-File01", "not a folder");
  const auto left = io::staging_leftovers(out);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0], tmp.path / "q.old-000000");
  EXPECT_EQ(left[1], tmp.path / "q.tmp-Ab12Cd");
  EXPECT_EQ(io::staging_leftovers(tmp.path / "q/").size(), 2u);  // "q/" is the folder q
  EXPECT_TRUE(io::staging_leftovers(tmp.path / "none").empty());
}

TEST(AtomicDirSignals, SymbolicLinkToAFolderIsFollowed) {
  TempDir tmp;
  fs::create_directory(tmp.path / "real");
  fs::create_directory_symlink("real", tmp.path / "link");
  {
    io::AtomicDir dir(tmp.path / "link");
    EXPECT_EQ(dir.target(), fs::canonical(tmp.path / "real"));
    io::write_file_atomic(dir.file("config.json"), "{}\n");
    dir.commit();
  }
  EXPECT_TRUE(fs::is_symlink(tmp.path / "link"));
  EXPECT_TRUE(fs::is_regular_file(tmp.path / "real" / "config.json"));
  // A link to a file, or to nothing, is refused and said to be a link.
  io::write_file_atomic(tmp.path / "file", "x");
  fs::create_symlink("file", tmp.path / "to_file");
  fs::create_symlink("missing", tmp.path / "dangling");
  for (const char* name : {"to_file", "dangling"}) {
    try {
      io::AtomicDir dir(tmp.path / name);
      ADD_FAILURE() << name << " accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("is a symbolic link to '"), std::string::npos) << e.what();
    }
  }
}

/// Forks a child that installs the handlers, writes `out` through an
/// AtomicDir and is interrupted by SIGINT around commit(): sent to its own
/// thread (as a debugger's `signal SIGINT` does) before commit() when
/// `to_thread`, else to the process right after commit(). The child then
/// waits; it exits 0 if it is not killed. Its stderr goes to `err`. Returns
/// its wait status.
int interrupt_a_commit(const fs::path& out, const fs::path& err, bool to_thread) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(e, 2);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);  // not inherited from the test runner
    try {
      io::remove_staging_dirs_on_signals();
      io::AtomicDir dir(out);
      io::write_file_atomic(dir.file("config.json"), "{}\n");
      if (to_thread) ::pthread_kill(::pthread_self(), SIGINT);  // pending here: this thread blocks it
      dir.commit();
      if (!to_thread) ::kill(::getpid(), SIGINT);
      ::sleep(20);  // the watcher ends the process meanwhile
      ::_exit(0);
    } catch (...) {
      ::_exit(99);
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// An interrupt during or after the final move into place was dropped when it
// was sent to the committing thread (kq quantize printed "wrote out_g" and
// exited 0 under gdb's `signal SIGINT`), and ended the process without a
// word otherwise. The folder is complete either way; the process now says so
// and ends by the signal (status 130 in a shell).
TEST(AtomicDirSignals, InterruptAroundTheCommitIsReportedNotDropped) {
  for (const bool to_thread : {true, false}) {
    SCOPED_TRACE(to_thread ? "sent to the committing thread" : "sent to the process after the commit");
    TempDir tmp;
    const fs::path out = tmp.path / "q";
    const int status = interrupt_a_commit(out, tmp.path / "err", to_thread);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << "status " << status;
    const std::string err = testing::read_all(tmp.path / "err");
    EXPECT_NE(err.find("interrupted: " + out.string() + " was written completely before stopping"), std::string::npos)
        << err;
    EXPECT_EQ(testing::read_all(out / "config.json"), "{}\n");
    EXPECT_TRUE(io::staging_leftovers(out).empty()) << io::staging_leftovers(out).front();
  }
}

}  // namespace
}  // namespace kq
