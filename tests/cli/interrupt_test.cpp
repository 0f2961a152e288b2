// An interrupted `kq quantize` (Ctrl-C, SIGTERM, SIGHUP) removes its staging
// folder (<out>.tmp-XXXXXX) instead of leaving it to pile up, and a later run
// names the leftovers of an earlier one (without deleting them).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
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

TEST(CliInterrupt, QuantizeNamesLeftoversOfAnEarlierRun) {
  TempDir tmp;
  const fs::path out = tmp.path / "q";
  fs::create_directory(tmp.path / "q.tmp-Ab12Cd");
  const auto r = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o", out.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  // (strings built with append: GCC 12 warns falsely on "literal" + std::string)
  EXPECT_TRUE(has(r.err, std::string("kq: warning: --out '").append(out.string()).append("'"))) << r.err;
  EXPECT_TRUE(has(r.err, std::string("'").append((tmp.path / "q.tmp-Ab12Cd").string()).append("'"))) << r.err;
  EXPECT_TRUE(fs::is_directory(tmp.path / "q.tmp-Ab12Cd")) << "someone else's folder was deleted";
  EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
}
