// An interrupted `kq quantize` (Ctrl-C, SIGTERM, SIGHUP) removes its staging
// folder (<out>.tmp-XXXXXX) instead of leaving it to pile up; the folder of a
// run killed by kill -9 (no process holds its lock any more) is removed by the
// next run of the same --out, saying so; one another run is still writing
// (locked) is named and kept, and so is an <out>.old-XXXXXX while <out> is
// missing (the only copy of the folder being replaced).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

using kq::testing::has;

/// Entries of `dir` whose name contains ".tmp-".
std::vector<std::string> tmp_entries(const fs::path& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir))
    if (has(e.path().filename().string(), ".tmp-")) v.push_back(e.path().filename().string());
  return v;
}

struct Interrupted {
  bool signalled = false;  ///< the signal was sent while the staging folder existed
  int status = 0;          ///< waitpid status
};

/// Runs `kq quantize -m models/gpt2-tiny --mode int8 -o DIR/NAME` and sends
/// `sig` as soon as the staging folder NAME.tmp-XXXXXX appears in DIR
/// (inotify); returns the wait status and whether the signal was sent.
Interrupted quantize_and_interrupt(const fs::path& dir, const std::string& name, int sig) {
  Interrupted r;
  const int in = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  EXPECT_GE(in, 0);
  EXPECT_GE(::inotify_add_watch(in, dir.c_str(), IN_CREATE), 0);
  const std::string model = kq::testing::demo_model().string(), out = (dir / name).string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);
    const char* argv[] = {KQ_CLI_BINARY, "quantize", "-m", model.c_str(), "--mode", "int8", "-o", out.c_str(), nullptr};
    ::execv(KQ_CLI_BINARY, const_cast<char* const*>(argv));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  alignas(inotify_event) char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{in, POLLIN, 0};
    ::poll(&p, 1, 20);
    for (ssize_t n; !r.signalled && (n = ::read(in, buf, sizeof buf)) > 0;) {
      for (char* at = buf; at < buf + n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(at);
        if (ev->len > 0 && std::string(ev->name).rfind(name + ".tmp-", 0) == 0) {
          ::kill(pid, sig);
          r.signalled = true;
          break;
        }
        at += sizeof(inotify_event) + ev->len;
      }
    }
    if (r.signalled || ::waitpid(pid, &r.status, WNOHANG) == pid) break;
  }
  if (r.signalled) ::waitpid(pid, &r.status, 0);
  ::close(in);
  return r;
}

}  // namespace

TEST(CliInterrupt, QuantizeRemovesItsStagingFolder) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(::strsignal(sig));
    TempDir tmp;
    // The folder is written in a few milliseconds: if kq finished before the
    // signal was sent, try again under another name.
    Interrupted r;
    for (int attempt = 0; attempt < 5 && !r.signalled; ++attempt)
      r = quantize_and_interrupt(tmp.path, std::string("q").append(std::to_string(attempt)), sig);
    ASSERT_TRUE(r.signalled) << "kq quantize never got to write its folder (status " << r.status << ")";
    // Ended by the signal (or by its exit status 128 + N), never "success".
    EXPECT_TRUE((WIFSIGNALED(r.status) && WTERMSIG(r.status) == sig) ||
                (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 128 + sig))
        << "status " << r.status;
    EXPECT_EQ(tmp_entries(tmp.path), std::vector<std::string>{});
  }
}

TEST(CliInterrupt, QuantizeRemovesTheStagingFolderOfARunKilledByKill9) {
  TempDir tmp;
  // kill -9 runs no handler: the staging folder stays. (If kq finished
  // before the signal was sent, try again under another name.)
  Interrupted r;
  std::string name;
  for (int attempt = 0; attempt < 5 && !r.signalled; ++attempt)
    r = quantize_and_interrupt(tmp.path, name = std::string("q").append(std::to_string(attempt)), SIGKILL);
  ASSERT_TRUE(r.signalled) << "kq quantize never got to write its folder (status " << r.status << ")";
  EXPECT_TRUE(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL) << "status " << r.status;
  const std::vector<std::string> left = tmp_entries(tmp.path);
  ASSERT_EQ(left.size(), 1u);
  const fs::path out = tmp.path / name;
  const auto again =
      run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o", out.string()});
  EXPECT_EQ(again.status, 0) << again.err;
  // (strings built with append: GCC 12 warns falsely on "literal" + std::string)
  EXPECT_TRUE(has(again.err, std::string("kq: warning: --out '")
                                 .append(out.string())
                                 .append("': removed '")
                                 .append((tmp.path / left[0]).string())
                                 .append("', left by a kq quantize that was killed before removing it\n")))
      << again.err;
  EXPECT_EQ(tmp_entries(tmp.path), std::vector<std::string>{});
  EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
}

TEST(CliInterrupt, QuantizeNamesAndKeepsALeftoverThatIsStillLocked) {
  TempDir tmp;
  const fs::path out = tmp.path / "q", left = tmp.path / "q.tmp-Ab12Cd";
  fs::create_directory(left);
  // Another kq quantize writing it holds its lock.
  const int writer = ::open(left.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  ASSERT_EQ(::flock(writer, LOCK_EX | LOCK_NB), 0);
  const auto r = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o", out.string()});
  ::close(writer);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, std::string("kq: warning: --out '").append(out.string()).append("'"))) << r.err;
  EXPECT_TRUE(has(r.err, "still running")) << r.err;
  EXPECT_TRUE(has(r.err, std::string("'").append(left.string()).append("' (not deleted"))) << r.err;
  EXPECT_FALSE(has(r.err, "removed")) << r.err;
  EXPECT_TRUE(fs::is_directory(left)) << "a folder being written was deleted";
  EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
}

// <out>.old-XXXXXX is <out> moved aside by --overwrite where the file system
// cannot exchange two folders; killed before the new folder moved in, it is
// the only copy of the old one: kept, with the command that restores it,
// while <out> is missing; removed by a run that finds <out> in place.
TEST(CliInterrupt, QuantizeKeepsAnOldFolderAndNamesIt) {
  TempDir tmp;
  const fs::path out = tmp.path / "q", old = tmp.path / "q.old-Ab12Cd";
  fs::create_directory(old);
  kq::testing::write_text(old / "config.json", "{}\n");
  const std::vector<std::string> args{"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8",
                                      "-o",       out.string()};
  const auto first = run_kq(args);
  EXPECT_EQ(first.status, 0) << first.err;
  EXPECT_TRUE(has(first.err, std::string("': kept '").append(old.string()).append("'"))) << first.err;
  EXPECT_TRUE(has(first.err, std::string("mv '").append(old.string()).append("' '").append(out.string()).append("'")))
      << first.err;
  EXPECT_EQ(kq::testing::read_all(old / "config.json"), "{}\n");
  auto overwrite = args;
  overwrite.push_back("--overwrite");
  const auto second = run_kq(overwrite);
  EXPECT_EQ(second.status, 0) << second.err;
  // With out written again the old folder may as well be the user's (kq cannot mark a folder it moved aside):
  // named, never deleted.
  EXPECT_TRUE(has(second.err, std::string("'").append(old.string()).append("' is named like a kq quantize staging")))
      << second.err;
  EXPECT_EQ(kq::testing::read_all(old / "config.json"), "{}\n");
  EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
}

// Tester round 17: a user's own folders named like leftovers were deleted with their files.
TEST(CliInterrupt, QuantizeKeepsAUsersFoldersNamedLikeLeftovers) {
  TempDir tmp;
  const fs::path out = tmp.path / "res";
  fs::create_directory(tmp.path / "res.tmp-backup");
  kq::testing::write_text(tmp.path / "res.tmp-backup" / "notes.txt", "my precious data");
  const auto r = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o", out.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "res.tmp-backup' is named like a kq quantize staging folder")) << r.err;
  EXPECT_FALSE(has(r.err, "removed")) << r.err;
  EXPECT_EQ(kq::testing::read_all(tmp.path / "res.tmp-backup" / "notes.txt"), "my precious data");
}

TEST(CliInterrupt, QuantizeLeavesALinkNamedLikeALeftoverAlone) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  fs::create_directory(tmp.path / "mine");
  kq::testing::write_text(tmp.path / "mine" / "notes.txt", "keep");
  fs::create_directory_symlink("mine", tmp.path / "q.tmp-Ab12Cd");
  const auto r = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o", out.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(has(r.err, "q.tmp-Ab12Cd")) << r.err;
  EXPECT_TRUE(fs::is_symlink(tmp.path / "q.tmp-Ab12Cd"));
  EXPECT_EQ(kq::testing::read_all(tmp.path / "mine" / "notes.txt"), "keep");
}
