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
  // --special-tokens says what eval's says since added tokens that are not special are always matched (eef3c2c).
  EXPECT_TRUE(has(h.out, "added tokens that are not special are always recognized")) << h.out;
}

// The demo model (2 layers) with n_layer 1: the warning says the 12 tensors of layer 1 are left out ("with 1
// layer", not "1 layers": tester round 18, finding 11), the folder
// written has none of them, and the report says what "on disk before" counts.
TEST(CliRound18, QuantizeLeavesOutTensorsTheModelDoesNotUse) {
  TempDir tmp;
  fs::copy(demo_model(), tmp.path / "m", fs::copy_options::recursive);
  nlohmann::json cfg = nlohmann::json::parse(read_all(tmp.path / "m" / "config.json"));
  cfg["n_layer"] = 1;
  write_text(tmp.path / "m" / "config.json", cfg.dump(2));
  const CliResult r = run_kq_in(tmp.path, {"quantize", "-m", "m", "--mode", "int8", "-o", "q", "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count(r.err, "12 tensors in the weights are not used by the gpt2 architecture with 1 layer and were "
                         "ignored (a quantized folder saved from this model leaves them out)"),
            1u)
      << r.err;
  EXPECT_TRUE(has(r.out, ", the tensors it uses; the 12 unused tensors of --model are not copied)\n")) << r.out;
  const TensorStore store = TensorStore::open_dir(tmp.path / "q");
  for (const std::string& n : store.names()) EXPECT_FALSE(n.starts_with("transformer.h.1.")) << n;
  const CliResult e = run_kq_in(tmp.path, {"eval", "-m", "q", "-t", (demo_model() / "demo-eval.txt").string(),
                                           "--samples", "1", "--threads", "1", "--quiet"});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(count(e.err, "not used by"), 0u) << e.err;  // the folder holds what the model uses

  // With every tensor used, the line is as before.
  const CliResult full =
      run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", (tmp.path / "q2").string(),
              "--threads", "1"});
  ASSERT_EQ(full.status, 0) << full.err;
  EXPECT_FALSE(has(full.out, "unused")) << full.out;
  EXPECT_TRUE(has(full.out, "whole model in memory ")) << full.out;
}

}  // namespace
}  // namespace kq::testing
