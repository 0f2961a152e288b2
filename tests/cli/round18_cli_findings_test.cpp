// Fresh-user findings (round 18, finding 10): `kq bench` draws the progress bar
// of `kq eval` but refused its --quiet; `kq quantize` of a config with fewer
// layers than the checkpoint warned that the extra tensors are unused, copied
// them into the output all the same, and reported "on disk before" (the bytes
// of the tensors the model read) as if it were the source's size.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"
#include "io/safetensors.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

// --quiet is accepted by kq bench (it was "unknown option --quiet for 'kq bench'", exit 2), listed in its help,
// and changes nothing but the progress bar: the same results as without it.
TEST(CliRound18, BenchTakesQuietAsEvalDoes) {
  const std::vector<std::string> args = {"bench", "--modes", "int8", "--samples", "1", "--no-latency",
                                         "--threads", "1"};
  std::vector<std::string> quiet = args;
  quiet.push_back("--quiet");
  const CliResult q = run_kq(quiet);
  EXPECT_TRUE(q.status == 0 || q.status == 3) << q.status << ": " << q.err;  // (3: a mode failed on 1 window)
  EXPECT_FALSE(has(q.err, "unknown option")) << q.err;
  const CliResult r = run_kq(args);
  EXPECT_EQ(r.status, q.status) << r.err;
  const auto perplexity_line = [](const std::string& out) {  // (the times and resident memory vary)
    const size_t b = out.find("\n  perplexity ");
    return b == std::string::npos ? std::string() : out.substr(b, out.find('\n', b + 1) - b);
  };
  EXPECT_NE(perplexity_line(q.out), "") << q.out;
  EXPECT_EQ(perplexity_line(r.out), perplexity_line(q.out));
  const CliResult h = run_kq({"bench", "--help"});
  EXPECT_EQ(h.status, 0);
  EXPECT_TRUE(has(h.out, "--quiet")) << h.out;
}

}  // namespace
}  // namespace kq::testing
