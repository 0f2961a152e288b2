// Fresh-user findings, round 21 (tester21.md), as a `kq` user meets them:
// 1. an AutoAWQ / GPTQ checkpoint whose group_size is not a multiple of 32 is
//    refused naming config.json and quantization_config.group_size, not as
//    act-order (the conversion itself: tests/quant/hub_int4_test.cpp);
// 2. a kq folder whose INT8 scales overflow F32 when applied (1e38 x 127) is
//    refused at load naming the tensor and index (every format:
//    tests/quant/packed_io_test.cpp);
// 3. kq eval / kq bench on the CPU without --ctx warn once when the model's
//    context, their default window, is longer than 16384 tokens;
// 4. a model file rewritten in place during kq bench (NaN weights) is named
//    as changed, not reported as non-finite logits;
// 5. kq quantize of a pre-quantized Hub checkpoint names the --model folder.
// (`--text -` / `--calibration -` exit 2: tests/cli/options_test.cpp.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "cli/running_kq.hpp"
#include "common/checksum_record.hpp"
#include "common/test_data.hpp"
#include "models/llama_variant.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

/// A copy of llama-small (config edited by `edit`) with its tokenizer files, so that kq can run it.
fs::path llama_small_folder(const fs::path& dest, const std::function<void(nlohmann::json&)>& edit) {
  llama_small_variant(dest, edit);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"})
    if (fs::exists(llama_small_dir() / f)) fs::copy_file(llama_small_dir() / f, dest / f);
  return dest;
}

/// The number of times `needle` occurs in `s`.
int count_of(const std::string& s, const std::string& needle) {
  int n = 0;
  for (size_t i = s.find(needle); i != std::string::npos; i = s.find(needle, i + 1)) ++n;
  return n;
}

// Finding 1: AutoAWQ {"bits":4,"group_size":16,...} (no act-order at all) was refused with "this layout (GPTQ
// act-order, desc_act: true) cannot be converted losslessly: use a checkpoint quantized without desc_act".
TEST(CliRound21, HubGroupSizeNotAMultipleOf32IsNamedInConfigJson) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const std::string text = write_text(tmp.path / "t.txt", "The quick brown fox jumps over the lazy dog.").string();
  for (const auto& [method, group] : {std::pair{"awq", 16}, std::pair{"gptq", 16}, std::pair{"gptq", 48}}) {
    const fs::path m = llama_small_folder(tmp.path / fmt::format("{}{}", method, group), [&](nlohmann::json& j) {
      j["quantization_config"] = {{"quant_method", method}, {"bits", 4}, {"group_size", group}};
      if (std::string(method) == "awq") j["quantization_config"]["version"] = "gemm";
      if (std::string(method) == "gptq") j["quantization_config"]["desc_act"] = false;
    });
    const CliResult r = run_kq({"eval", "-m", m.string(), "-t", text, "--ctx", "32", "--quiet"});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, (m / "config.json").string() + ": quantization_config.group_size " +
                               std::to_string(group) + " is not supported") &&
                has(r.err, "-1 (one group per row) or a multiple of 32") && !has(r.err, "desc_act"))
        << method << " " << group << ": " << r.err;
  }
}

// Finding 2: every scale of one INT8 layer set to 1e38 (x code 127 = 1.3e40, not an F32) loaded and gave a
// finite, meaningless perplexity with exit 0.
TEST(CliRound21, Int8ScalesThatOverflowWhenAppliedAreRefusedAtLoad) {
  TempDir tmp;
  const fs::path q = tmp.path / "q";
  const CliResult w = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", q.string()});
  ASSERT_EQ(w.status, 0) << w.err;
  const std::string tensor = "transformer.h.0.mlp.c_fc.scales";
  fill_floats(q / "model.safetensors", tensor, 1e38f);
  kq::testing::record_checksums_again(q);  // the scale check behind the checksums, as if kq had written them
  const CliResult r = run_kq({"eval", "-m", q.string(), "-t", (demo_model() / "demo-eval.txt").string(), "--quiet"});
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_TRUE(has(r.err, "tensor '" + tensor + "': scale 1e+38 at index 0 overflows F32 when applied")) << r.err;
}

// Finding 3: a model whose context is long (Llama 3.1: 131072) made the default window one giant O(n^2) window
// on the CPU without a word. The default stays (the evaluation protocol); a warning names --ctx.
TEST(CliRound21, LongDefaultWindowOnTheCpuIsWarnedOnce) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const std::string text = write_text(tmp.path / "t.txt", "The quick brown fox jumps over the lazy dog.").string();
  const fs::path big = llama_small_folder(tmp.path / "big", [](nlohmann::json& j) {
    j["max_position_embeddings"] = 131072;
  });
  const std::string want = "the perplexity windows are the model's context, up to 131072 tokens";
  CliResult r = run_kq({"eval", "-m", big.string(), "-t", text, "--quiet", "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count_of(r.err, "kq: warning: no --ctx given"), 1) << r.err;
  EXPECT_TRUE(has(r.err, want) && has(r.err, "grows with the square of its length") && has(r.err, "give --ctx"))
      << r.err;
  EXPECT_TRUE(has(r.out, "1 window of up to 131072 tokens")) << r.out;  // the default itself is kept
  r = run_kq({"bench", "-m", big.string(), "-t", text, "--modes", "int8", "--no-latency", "--quiet", "--threads", "1"});
  ASSERT_TRUE(r.status == 0 || r.status == 3) << r.err;
  EXPECT_EQ(count_of(r.err, "kq: warning: no --ctx given"), 1) << r.err;
  // --ctx given, or a context of 16384 or less: no warning.
  r = run_kq({"eval", "-m", big.string(), "-t", text, "--quiet", "--ctx", "64", "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(has(r.err, "--ctx")) << r.err;
  const fs::path edge = llama_small_folder(tmp.path / "edge", [](nlohmann::json& j) {
    j["max_position_embeddings"] = 16384;
  });
  r = run_kq({"eval", "-m", edge.string(), "-t", text, "--quiet", "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(has(r.err, "--ctx")) << r.err;
}

// Finding 4: a file rewritten in place during a run with bytes that read as NaN was reported as "the model
// produced non-finite logits ... (damaged or out-of-range weights?)": the file-changed check ran only after
// a FormatError. kq bench is stopped while its baseline runs, the embeddings are overwritten with NaN (and the
// modification time moved on: file system timestamps are coarser than the run), and it is let go on.
TEST(CliRound21, FileRewrittenWithNanDuringBenchIsNamedAsChanged) {
  KQ_REQUIRE_SHARED("data/text/wikitext-2-test.txt");
  TempDir tmp;
  const fs::path m = tmp.path / "m", err = tmp.path / "err";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  RunningKq kq({"bench", "-m", m.string(), "-t", (shared_dir() / "data/text/wikitext-2-test.txt").string(),
                "--modes", "int8", "--no-latency", "--threads", "1"},
               err);
  ASSERT_GT(kq.pid, 0);
  ASSERT_TRUE(kq.wait_for("int8")) << kq.out << read_all(err);  // the header: the baseline is running
  ASSERT_EQ(::kill(kq.pid, SIGSTOP), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(kq.pid, &st, WUNTRACED), kq.pid);
  const fs::path file = m / "model.safetensors";
  fill_floats(file, "transformer.wte.weight", std::numeric_limits<float>::quiet_NaN());
  fs::last_write_time(file, fs::last_write_time(file) + std::chrono::seconds(2));
  ASSERT_EQ(::kill(kq.pid, SIGCONT), 0);
  const int status = kq.wait();
  const std::string e = read_all(err);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status << "\n" << e;
  EXPECT_TRUE(has(e, "kq: error: a model file changed or was truncated while it was being read: " + file.string()))
      << e;
  EXPECT_FALSE(has(e, "non-finite logits")) << e;
}

// Finding 6: kq quantize of a Hub checkpoint said "the model is already quantized (layer ... is
// int4-g64-asym: loaded from a quantized folder, or quantized before)" without naming the folder.
TEST(CliRound21, QuantizeOfAHubCheckpointNamesTheFolder) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  for (const char* method : {"awq", "gptq", "bitsandbytes"}) {
    const fs::path m = llama_small_folder(tmp.path / method, [&](nlohmann::json& j) {
      j["quantization_config"] = {{"quant_method", method}, {"bits", 4}, {"group_size", 128}};
    });
    const CliResult r = run_kq({"quantize", "-m", m.string(), "--mode", "int8", "-o", (tmp.path / "out").string()});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "--model '" + m.string() + "' is already quantized (a pre-quantized checkpoint: "
                                                      "config.json quantization_config.quant_method \"" +
                               method + "\")"))
        << r.err;
    EXPECT_FALSE(fs::exists(tmp.path / "out"));
  }
}

}  // namespace
}  // namespace kq::testing
