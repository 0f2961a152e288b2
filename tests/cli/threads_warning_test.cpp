// --threads above the machine's hardware threads is warned, once, on stderr
// (through kq::warn), in every command that takes --threads; at or below it, nothing.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "cli/cli_util.hpp"
#include "kq/context.hpp"

using kq::testing::run_kq;
using kq::testing::count;

TEST(CliThreads, MoreThreadsThanTheMachineHasIsWarnedOnce) {
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores == 0 || cores >= unsigned(kq::kMaxThreads)) GTEST_SKIP() << "hardware_concurrency() is " << cores;
  const std::string over = std::to_string(cores + 1), at = std::to_string(cores);
  // A missing model fails right after the command line is parsed: no work is run.
  const std::string missing = "/nonexistent/kq-model";
  for (const char* command : {"eval", "generate", "quantize", "bench"}) {
    for (const std::string& threads : {over, at}) {
      std::vector<std::string> args = {command, "-m", missing, "--threads", threads};
      if (std::string(command) == "eval") args.insert(args.end(), {"--text", "README.md"});
      if (std::string(command) == "generate") args.insert(args.end(), {"--prompt", "Hi"});
      if (std::string(command) == "quantize") args.insert(args.end(), {"--mode", "int8", "-o", "/nonexistent/q"});
      if (std::string(command) == "bench") args.insert(args.end(), {"--modes", "int8"});
      const auto r = run_kq(args);
      EXPECT_EQ(r.status, 1) << command << " " << threads << ": " << r.err;
      const std::string warning = std::string("kq: warning: --threads ").append(threads).append(": more threads than the ")
                                      .append(std::to_string(cores)).append(" this machine has");
      EXPECT_EQ(count(r.err, warning), threads == over ? 1u : 0u) << command << " " << threads << ": " << r.err;
      EXPECT_EQ(count(r.err, "kq: warning: --threads"), threads == over ? 1u : 0u) << r.err;
    }
  }
}
