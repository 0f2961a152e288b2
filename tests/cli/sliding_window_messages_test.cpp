// A Mistral sliding_window no longer caps the context (kq runs the windowed attention): kq bench keeps its
// default latency lengths and kq eval takes a --ctx longer than the window, with nothing said of the window
// (before, tester round 17b, the messages named the sliding_window that capped the context). A context of 1
// position (max_position_embeddings 1) is "1 position", not "1 positions", in kq eval, kq bench and kq generate.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
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

/// llama-small (shared) relabelled as a Mistral model, its config.json changed by `edit`, in dest (the other
/// files linked).
fs::path mistral_variant(const fs::path& dest, const std::function<void(nlohmann::json&)>& edit) {
  const fs::path src = kq::testing::shared_dir() / "models" / "llama-small";
  fs::create_directories(dest);
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().filename() != "config.json") fs::create_symlink(e.path(), dest / e.path().filename());
  nlohmann::json j = nlohmann::json::parse(std::ifstream(src / "config.json"));
  j["model_type"] = "mistral";
  edit(j);
  std::ofstream(dest / "config.json") << j.dump(2);
  return dest;
}

}  // namespace

TEST(CliSlidingWindowMessages, ASlidingWindowNoLongerLimitsTheContext) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const fs::path m = mistral_variant(tmp.path / "m", [](nlohmann::json& j) { j["sliding_window"] = 64; });
  // The default --prompt-tokens 128 is kept (the text, invalid UTF-8, stops the run before any work).
  const fs::path bad = kq::testing::write_text(tmp.path / "bad.txt", "ab\xff\n");
  const auto w = run_kq({"bench", "-m", m.string(), "--modes", "int8", "-t", bad.string(), "--threads", "1"});
  EXPECT_EQ(w.status, 1) << w.err;
  EXPECT_FALSE(has(w.err, "--prompt-tokens")) << w.err;
  EXPECT_FALSE(has(w.err, "sliding_window")) << w.err;
  // An evaluation window of 128 tokens, twice the sliding window, runs.
  const std::string text = (kq::testing::demo_model() / "demo-eval.txt").string();
  const auto e = run_kq({"eval", "-m", m.string(), "-t", text, "--ctx", "128", "--samples", "1", "--quiet",
                         "--threads", "1"});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_FALSE(has(e.err, "sliding_window")) << e.err;
  // A --ctx beyond the context (512 positions) is refused, with nothing said of the window.
  const auto l = run_kq({"eval", "-m", m.string(), "-t", text, "--ctx", "600"});
  EXPECT_EQ(l.status, 1) << l.err;
  EXPECT_TRUE(has(l.err, "context length (--ctx) 600 exceeds the model's maximum of 512 positions")) << l.err;
  EXPECT_FALSE(has(l.err, "sliding_window")) << l.err;
}

TEST(CliSlidingWindowMessages, AContextOfOnePositionIsSingular) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const fs::path m = mistral_variant(tmp.path / "m", [](nlohmann::json& j) {
    j["sliding_window"] = 64;
    j["max_position_embeddings"] = 1;
  });
  const std::string text = (kq::testing::demo_model() / "demo-eval.txt").string();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"eval", "-m", m.string(), "-t", text, "--ctx", "2"},
        std::vector<std::string>{"bench", "-m", m.string(), "--modes", "int8", "--ctx", "2"}}) {
    SCOPED_TRACE(args[0]);
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "context length (--ctx) 2 exceeds the model's maximum of 1 position")) << r.err;
    EXPECT_FALSE(has(r.err, "sliding_window")) << r.err;
  }
  const auto p = run_kq({"generate", "-m", m.string(), "--prompt", "Hello world", "--no-special-prefix"});
  EXPECT_EQ(p.status, 1) << p.err;
  EXPECT_TRUE(has(p.err, "; the model's context is 1 position (at most 1 prompt token)")) << p.err;
  const auto n = run_kq({"generate", "-m", m.string(), "--prompt", "a", "--no-special-prefix", "-n", "3"});
  EXPECT_EQ(n.status, 0) << n.err;
  EXPECT_TRUE(has(n.err, "the prompt's 1 token leaves 0 of the model's 1 position (the last generated token needs "
                         "none)"))
      << n.err;
  EXPECT_FALSE(has(p.err + n.err, "1 positions")) << p.err << n.err;
}
