// Interrupting `kq quantize --mode awq` while it computes (calibration, scale
// search) ends it cleanly: killed by the signal (a shell shows 128 + N), no
// glibc heap-corruption abort, no staging folder left. About 1 in 40
// interrupted runs of gpt2-small used to abort with "corrupted size vs.
// prev_size while consolidating" (free() under dnnl_sgemm): the signal handler
// of io::remove_staging_dirs_on_signals ran on whatever thread the signal
// landed on, in the middle of oneDNN's code. Now no handler is installed for
// SIGINT/SIGTERM/SIGHUP: the computing threads block them and one watcher
// thread takes them with sigwait(). The first test checks exactly that on the
// running program (deterministic); the second sends signals at several points
// of the run and checks the outcome.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_util.hpp"
#include "cli/running_kq.hpp"

using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

using kq::testing::has;

/// A running `kq quantize -m gpt2-tiny --mode awq -o OUT`, stdout on a pipe, stderr in a file.
struct Quantize : kq::testing::RunningKq {
  Quantize(const fs::path& out_dir, const fs::path& err)
      : RunningKq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "awq", "-o", out_dir.string()},
                  err) {}
};

/// The hexadecimal signal mask of field `key` ("SigCgt:", "SigBlk:") in a /proc status file; false if unreadable.
bool proc_mask(const fs::path& status_file, const std::string& key, uint64_t& mask) {
  std::ifstream f(status_file);
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) {
      mask = std::stoull(line.substr(key.size()), nullptr, 16);
      return true;
    }
  return false;
}

constexpr uint64_t bit(int sig) { return uint64_t(1) << (sig - 1); }
constexpr uint64_t kCleanupSignals = bit(SIGINT) | bit(SIGTERM) | bit(SIGHUP);

/// What a clean interrupted run leaves: no folder, no staging folder.
std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "err") v.push_back(name);
  }
  return v;
}

std::string heap_trouble(const std::string& err) {
  for (const char* w : {"corrupt", "double free", "free()", "malloc", "abort", "Aborted", "internal error"})
    if (has(err, w)) return w;
  return "";
}

}  // namespace

TEST(CliAwqInterrupt, NoSignalHandlerRunsOnTheComputingThreads) {
  TempDir tmp;
  Quantize q(tmp.path / "x", tmp.path / "err");
  ASSERT_GT(q.pid, 0);
  ASSERT_TRUE(q.wait_for("AWQ calibration text")) << q.out << q.err();
  // Stopped while it calibrates, the process is inspected at leisure.
  ASSERT_EQ(::kill(q.pid, SIGSTOP), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(q.pid, &st, WUNTRACED), q.pid);
  ASSERT_TRUE(WIFSTOPPED(st)) << st;
  const fs::path proc = fs::path("/proc") / std::to_string(q.pid);
  uint64_t caught = 0;
  ASSERT_TRUE(proc_mask(proc / "status", "SigCgt:", caught));
  EXPECT_EQ(caught & kCleanupSignals, 0u) << std::hex << "SigCgt " << caught
                                          << ": a handler for SIGINT/SIGTERM/SIGHUP runs on any thread";
  // Every thread blocks them but the watcher, which waits for them in sigwait().
  int threads = 0, unblocked = 0;
  for (const auto& t : fs::directory_iterator(proc / "task")) {
    uint64_t blocked = 0;
    if (!proc_mask(t.path() / "status", "SigBlk:", blocked)) continue;
    ++threads;
    if ((blocked & kCleanupSignals) != kCleanupSignals) ++unblocked;
  }
  EXPECT_GE(threads, 2);  // the main thread and the watcher at least
  EXPECT_LE(unblocked, 1) << unblocked << " of " << threads << " threads take SIGINT/SIGTERM/SIGHUP";
  // And the signal still ends it, by that signal.
  ASSERT_EQ(::kill(q.pid, SIGTERM), 0);
  ASSERT_EQ(::kill(q.pid, SIGCONT), 0);
  const int status = q.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << "status " << status << "\n" << q.err();
  EXPECT_EQ(heap_trouble(q.err()), "") << q.err();
  EXPECT_EQ(leftovers(tmp.path), std::vector<std::string>{});
}

TEST(CliAwqInterrupt, RepeatedSignalsWhileItComputesEndItCleanly) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(::strsignal(sig));
    int interrupted = 0;
    // From the calibration message on: calibration, then the per-layer search.
    for (int delay_ms : {0, 60, 200, 450}) {
      SCOPED_TRACE(delay_ms);
      TempDir tmp;
      Quantize q(tmp.path / "x", tmp.path / "err");
      ASSERT_GT(q.pid, 0);
      ASSERT_TRUE(q.wait_for("AWQ calibration text")) << q.out << q.err();
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      for (int i = 0; i < 3; ++i) {  // impatient users press Ctrl-C more than once
        ::kill(q.pid, sig);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      const int status = q.wait();
      const std::string err = q.err();
      EXPECT_EQ(heap_trouble(err), "") << err;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {  // finished before the signal
        EXPECT_EQ(leftovers(tmp.path), std::vector<std::string>{"x"});
        continue;
      }
      ++interrupted;
      EXPECT_TRUE((WIFSIGNALED(status) && WTERMSIG(status) == sig) ||
                  (WIFEXITED(status) && WEXITSTATUS(status) == 128 + sig))
          << "status " << status << "\n" << err;
      EXPECT_EQ(leftovers(tmp.path), std::vector<std::string>{});
    }
    EXPECT_GE(interrupted, 1) << "kq quantize always finished before the signal";
  }
}
