#pragma once
// A `kq` process (KQ_CLI_BINARY) the test acts on while it runs: stdout on a
// pipe read as it comes, stderr in a file, stdin /dev/null, the signal mask
// and SIGINT/SIGTERM/SIGHUP dispositions reset (not inherited from the runner).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/test_util.hpp"

namespace kq::testing {

class RunningKq {
 public:
  /// Starts `kq ARGS`; pid stays -1 when the pipe or the fork fails.
  RunningKq(const std::vector<std::string>& args, const std::filesystem::path& err_file) : err_file_(err_file) {
    int p[2];
    if (::pipe(p) != 0) return;
    pid = ::fork();
    if (pid == 0) {
      const int null = ::open("/dev/null", O_RDONLY);
      const int e = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(null, 0);
      ::dup2(p[1], 1);
      ::dup2(e, 2);
      ::close(p[0]);
      for (int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      std::vector<char*> argv{const_cast<char*>(KQ_CLI_BINARY)};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(KQ_CLI_BINARY, argv.data());
      ::_exit(127);
    }
    ::close(p[1]);
    out_fd_ = p[0];
  }
  /// Kills a process still running.
  ~RunningKq() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out_fd_ >= 0) ::close(out_fd_);
  }
  RunningKq(const RunningKq&) = delete;
  RunningKq& operator=(const RunningKq&) = delete;

  /// Reads stdout until it holds `needle` (true) or ends or 120 s pass (false).
  bool wait_for(const std::string& needle) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    char buf[4096];
    while (!has(out, needle) && std::chrono::steady_clock::now() < deadline) {
      pollfd pf{out_fd_, POLLIN, 0};
      if (::poll(&pf, 1, 100) <= 0) continue;
      const ssize_t n = ::read(out_fd_, buf, sizeof buf);
      if (n <= 0) return false;
      out.append(buf, size_t(n));
    }
    return has(out, needle);
  }
  /// waitpid's status (stdout is drained first so that kq never blocks on it; the process is then gone).
  int wait() {
    char buf[4096];
    while (::read(out_fd_, buf, sizeof buf) > 0) {
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
  /// stderr so far.
  std::string err() const { return read_all(err_file_); }

  pid_t pid = -1;   ///< the process (-1 once waited for)
  std::string out;  ///< stdout read so far

 private:
  std::filesystem::path err_file_;
  int out_fd_ = -1;
};

}  // namespace kq::testing
