// Messages about a context that a Mistral sliding_window capped (tester round
// 17b): kq bench's latency lengths (the warning reducing a default, the error
// for a value given) say the limit comes from sliding_window, as its --ctx
// message does; a context of 1 position (sliding_window 1) is "1 position",
// not "1 positions", in kq eval, kq bench and kq generate.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_data.hpp"

using kq::testing::has;
using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

/// llama-small (shared) relabelled as a Mistral model with `window` as its sliding_window, in dest (the other
/// files linked).
fs::path mistral_with_window(const fs::path& dest, int window) {
  const fs::path src = kq::testing::shared_dir() / "models" / "llama-small";
  fs::create_directories(dest);
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().filename() != "config.json") fs::create_symlink(e.path(), dest / e.path().filename());
  nlohmann::json j = nlohmann::json::parse(std::ifstream(src / "config.json"));
  j["model_type"] = "mistral";
  j["sliding_window"] = window;
  std::ofstream(dest / "config.json") << j.dump(2);
  return dest;
}

const std::string kNote64 = "(config.json sliding_window 64: each position attends to the last 64 only";

}  // namespace

TEST(CliSlidingWindowMessages, BenchLatencyLengthsNameTheSlidingWindow) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const fs::path m = mistral_with_window(tmp.path / "m", 64);
  // The default --prompt-tokens 128 is reduced (then the text, invalid UTF-8, stops the run before any work).
  const fs::path bad = kq::testing::write_text(tmp.path / "bad.txt", "ab\xff\n");
  const auto w = run_kq({"bench", "-m", m.string(), "--modes", "int8", "-t", bad.string(), "--threads", "1"});
  EXPECT_EQ(w.status, 1) << w.err;
  EXPECT_TRUE(has(w.err, "kq: warning: --prompt-tokens: using 32 instead of the default 128 so that the prompt and "
                         "the decoded tokens fit the model's context of 64 positions " + kNote64))
      << w.err;
  // A value given that does not fit is an error saying the same.
  const auto e = run_kq({"bench", "-m", m.string(), "--modes", "int8", "--prompt-tokens", "100", "--threads", "1"});
  EXPECT_EQ(e.status, 1) << e.err;
  EXPECT_TRUE(has(e.err, "does not fit the model's context of 64 positions " + kNote64)) << e.err;
  // llama-small itself (512 positions, no window) says nothing of one.
  const auto l = run_kq({"bench", "-m", (kq::testing::shared_dir() / "models" / "llama-small").string(), "--modes",
                         "int8", "--prompt-tokens", "600", "--threads", "1"});
  EXPECT_EQ(l.status, 1) << l.err;
  EXPECT_TRUE(has(l.err, "the model's context of 512 positions with at least one decoded token")) << l.err;
  EXPECT_FALSE(has(l.err, "sliding_window")) << l.err;
}

TEST(CliSlidingWindowMessages, AContextOfOnePositionIsSingular) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const fs::path m = mistral_with_window(tmp.path / "m", 1);
  const std::string note = "(config.json sliding_window 1: each position attends to the last 1 only, which kq runs as "
                           "full causal attention within one window, so the context is capped at 1 position)";
  const std::string text = (kq::testing::demo_model() / "demo-eval.txt").string();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"eval", "-m", m.string(), "-t", text, "--ctx", "2"},
        std::vector<std::string>{"bench", "-m", m.string(), "--modes", "int8", "--ctx", "2"}}) {
    SCOPED_TRACE(args[0]);
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "context length (--ctx) 2 exceeds the model's maximum of 1 position " + note)) << r.err;
  }
  const auto p = run_kq({"generate", "-m", m.string(), "--prompt", "Hello world", "--no-special-prefix"});
  EXPECT_EQ(p.status, 1) << p.err;
  EXPECT_TRUE(has(p.err, "; the model's context is 1 position (at most 1 prompt token) " + note)) << p.err;
  const auto n = run_kq({"generate", "-m", m.string(), "--prompt", "a", "--no-special-prefix", "-n", "3"});
  EXPECT_EQ(n.status, 0) << n.err;
  EXPECT_TRUE(has(n.err, "the prompt's 1 token leaves 0 of the model's 1 position (the last generated token needs "
                         "none) " + note))
      << n.err;
  EXPECT_FALSE(has(p.err + n.err, "positions (")) << p.err << n.err;
}
