// What `kq` says on stderr when it cannot do exactly what was asked: errors for
// exact sizes that do not fit the model, one warning line for reduced defaults
// and caps, unmatched --keep patterns, text that is not UTF-8; and the bench
// table's alignment with long mode names.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "io/safetensors.hpp"

using kq::testing::demo_model;
using kq::testing::run_kq;

namespace {

using kq::testing::has;
using kq::testing::count;

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

const std::string kDemoText = (demo_model() / "demo-eval.txt").string();

}  // namespace

TEST(CliMessages, BenchLatencyOptionGivenThatDoesNotFitIsAnError) {
  const auto r =
      run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--prompt-tokens", "300"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--prompt-tokens 300")) << r.err;
  EXPECT_TRUE(has(r.err, "256 positions")) << r.err;
  EXPECT_FALSE(has(r.out, "PASS")) << r.out;  // rejected before any work
  const auto r2 = run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--prompt-tokens",
                          "200", "--decode-tokens", "100"});
  EXPECT_EQ(r2.status, 1);
  EXPECT_TRUE(has(r2.err, "--prompt-tokens 200 + --decode-tokens 100")) << r2.err;
}

TEST(CliMessages, BenchDefaultThatDoesNotFitIsReducedWithOneWarningLine) {
  // --decode-tokens 200 is honoured; the default 128-token prompt shrinks to 256 - 200.
  const auto r = run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--runs", "1",
                         "--decode-tokens", "200"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count(r.err, "kq: warning: --prompt-tokens: using 56 instead of the default 128"), 1u) << r.err;
  EXPECT_TRUE(has(r.out, "after a 56-token prompt, 200 tokens per run; median over 1 run")) << r.out;
}

TEST(CliMessages, BenchTableColumnsFollowTheLongestModeName) {
  const auto r = run_kq({"bench", "--modes", "int8", "nf4-b256-bf16", "int4-g128-asym", "--samples", "1",
                         "--threads", "1", "--no-latency"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> table;
  bool in_table = false;
  for (const std::string& l : lines(r.out)) {
    if (l.starts_with("mode ")) in_table = true;
    if (in_table && l.starts_with("peak resident")) break;
    if (in_table) table.push_back(l);
  }
  ASSERT_EQ(table.size(), 4u) << r.out;
  // Every column but the last (result) is padded to a common width: the text
  // before the result cell has the same length on every line, and each
  // mode cell is followed by padding up to the widest one.
  const size_t w = table[0].rfind("  ");
  for (const std::string& l : table) EXPECT_EQ(l.rfind("  "), w) << "\n" << r.out;
  EXPECT_TRUE(table[2].starts_with("nf4-b256-bf16  ")) << table[2];
  EXPECT_TRUE(table[1].starts_with("int8           ")) << table[1];
  EXPECT_EQ(table[0].find("perplexity") + 10, table[1].find(" ->") + 11);  // right-aligned "x.xxx -> y.yyy"
}

TEST(CliMessages, KeepPatternMatchingNoLayerIsWarnedOnceNamingIt) {
  const auto r = run_kq({"bench", "--modes", "int8", "fp8", "--samples", "1", "--threads", "1",
                         "--no-latency", "--keep", "mlp\\.down_proj", "--keep", "c_fc"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count(r.err, "--keep 'mlp\\.down_proj' matches no linear layer"), 1u)
      << r.err;  // 2 modes, 1 line
  EXPECT_FALSE(has(r.err, "--keep 'c_fc'")) << r.err;
}

TEST(CliMessages, TextThatIsNotUtf8IsAnErrorNamingFileAndOffset) {
  kq::testing::TempDir tmp;
  const auto bad = tmp.path / "latin1.txt";
  std::ofstream(bad, std::ios::binary) << "One line.\nNa\xEFve text.\n";
  const auto r = run_kq({"eval", "--model", demo_model().string(), "--text", bad.string(), "--quiet"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, bad.string() + ": invalid UTF-8 at byte offset 12 (line 2, column 3)")) << r.err;
  const auto b = run_kq({"bench", "--modes", "int8", "--text", bad.string(), "--no-latency"});
  EXPECT_EQ(b.status, 1);
  EXPECT_TRUE(has(b.err, "invalid UTF-8 at byte offset 12")) << b.err;
  const auto g = run_kq({"generate", "--model", demo_model().string(), "--prompt", "caf\xE9", "-n", "1"});
  EXPECT_EQ(g.status, 1);
  EXPECT_TRUE(has(g.err, "--prompt: invalid UTF-8 at byte offset 3")) << g.err;
  // --help says what happens.
  EXPECT_TRUE(has(run_kq({"eval", "--help"}).out, "invalid UTF-8 is an error")) << "eval --help";
}

TEST(CliMessages, EvalSaysWhichTokenizerFilesAndWarnsWhenSamplesExceedTheWindows) {
  const auto r = run_kq({"eval", "--model", demo_model().string(), "--text", kDemoText, "--samples", "99",
                         "--threads", "1", "--quiet"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "tokenizer:     tokenizer.json")) << r.out;
  EXPECT_EQ(count(r.err, "kq: warning: --samples 99: the text (1655 tokens) has only 7 windows, 6 of 256 tokens and 1 "
                        "of 119"),
            1u)
      << r.err;
}

TEST(CliMessages, GenerateReducesMaxNewTokensToTheContextWithAWarning) {
  std::string prompt;
  for (int i = 0; i < 240; ++i) prompt += " the";  // one token each
  for (const bool given : {false, true}) {
    std::vector<std::string> args{"generate",  "--model", demo_model().string(), "--prompt",    prompt,
                                  "--threads", "1",       "--no-echo",           "--ignore-eos"};
    if (given) args.insert(args.end(), {"-n", "100"});
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 0) << r.err;
    const std::string want = given ? "instead of the requested 100" : "instead of the default 64";
    // 240 + 17 - 1 = 256 positions: the last generated token needs none.
    EXPECT_EQ(count(r.err, "kq: warning: -n/--max-new-tokens: generating at most 17 tokens " + want), 1u)
        << r.err;
    EXPECT_TRUE(has(r.err, "prompt 240 tokens")) << r.err;
  }
  std::string too_long;
  for (int i = 0; i < 300; ++i) too_long += " the";
  const auto r =
      run_kq({"generate", "--model", demo_model().string(), "--prompt", too_long, "--threads", "1"});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--prompt has 300 tokens")) << r.err;
}

// A tokenizer with more tokens than the model is an error at load, naming the
// folder and both sizes (it used to surface mid-forward as a bad token id).
TEST(CliMessages, TokenizerLargerThanTheModelIsNamedAtLoad) {
  kq::testing::TempDir tmp;
  for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json"})
    std::filesystem::copy_file(demo_model() / f, tmp.path / f);
  std::string tj;
  {
    std::ifstream in(tmp.path / "tokenizer.json");
    std::stringstream ss;
    ss << in.rdbuf();
    tj = ss.str();
  }
  const size_t at = tj.find("\"vocab\": {");
  ASSERT_NE(at, std::string::npos);
  tj.insert(at + 10, "\"zzqqzzqq\": 9000,");
  std::ofstream(tmp.path / "tokenizer.json", std::ios::trunc) << tj;
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"generate", "--model", tmp.path.string(), "--prompt", "hi", "-n", "2"},
        std::vector<std::string>{"eval", "--model", tmp.path.string(), "--text",
                                 (demo_model() / "demo-eval.txt").string()}}) {
    const auto r = run_kq(cmd);
    EXPECT_EQ(r.status, 1) << cmd[0];
    EXPECT_NE(r.err.find("9001 tokens but the model's vocabulary is 8192"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("hi"), std::string::npos) << "nothing generated: " << r.out;
  }
}

// --json in a folder that cannot be written is named before the run.
TEST(CliMessages, UnwritableJsonFolderIsAnErrorBeforeTheRun) {
  const auto r = run_kq({"eval", "--model", demo_model().string(), "--text", (demo_model() / "demo-eval.txt").string(),
                         "--json", "/proc/kq-test.json"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot write"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("perplexity"), std::string::npos) << "ran before failing: " << r.out;
}

// --json at a device, a FIFO (or anything but a regular file) is refused before
// the run, and the device or FIFO is left as it was (the atomic rename would
// have replaced it with a plain file). /dev/null itself discards the JSON
// (604e55c; CliJsonNullDevice.*); /dev/zero stands for the other devices.
TEST(CliMessages, JsonAtADeviceOrFifoIsRefusedAndLeftAlone) {
  kq::testing::TempDir tmp;
  const std::filesystem::path fifo = tmp.path / "out.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& target : {fifo.string(), std::string("/dev/zero")}) {
    for (const char* cmd : {"eval", "bench"}) {
      const auto r = run_kq(
          {cmd, "--model", demo_model().string(), "--text", kDemoText, "--json", target, "--samples", "1"});
      EXPECT_EQ(r.status, 1) << cmd << " " << target;
      EXPECT_TRUE(has(r.err, "--json") && has(r.err, target)) << r.err;
      EXPECT_FALSE(has(r.out, "perplexity")) << "ran before failing: " << r.out;
    }
  }
  EXPECT_TRUE(std::filesystem::is_fifo(std::filesystem::symlink_status(fifo)));
  EXPECT_TRUE(std::filesystem::is_character_file(std::filesystem::status("/dev/zero")));
}

// PASS/FAIL over a handful of scored tokens is printed with a warning; the demo's default run has none.
TEST(CliMessages, FewScoredTokensWarnTheVerdict) {
  const auto few =
      run_kq({"bench", "--modes", "int8", "--samples", "1", "--ctx", "8", "--no-latency", "--threads", "1"});
  EXPECT_EQ(few.status, 0) << few.err;
  EXPECT_EQ(count(few.err, "kq: warning: the perplexities cover only 7 scored tokens"), 1u) << few.err;
  const auto demo = run_kq({"bench", "--modes", "int8", "--no-latency", "--threads", "1"});
  EXPECT_FALSE(has(demo.err, "scored token")) << demo.err;
}

// Small usage checks: --json naming the --text file, an empty --model, an unknown --device.
TEST(CliMessages, OutputThatIsTheInputEmptyModelUnknownDevice) {
  kq::testing::TempDir tmp;
  const std::string text = (tmp.path / "t.txt").string();
  std::filesystem::copy_file(demo_model() / "demo-eval.txt", text);
  const auto same = run_kq({"eval", "--model", demo_model().string(), "--text", text, "--json", text});
  EXPECT_EQ(same.status, 1);
  EXPECT_NE(same.err.find("is the --text file"), std::string::npos) << same.err;
  EXPECT_GT(std::filesystem::file_size(text), 1000u) << "the input text was overwritten";
  const auto empty = run_kq({"eval", "--model", "", "--text", text});
  EXPECT_EQ(empty.status, 2);  // an empty option value is a usage error
  EXPECT_NE(empty.err.find("--model: the path is empty"), std::string::npos) << empty.err;
  const auto dev = run_kq({"eval", "--model", demo_model().string(), "--text", text, "--device", "tpu"});
  EXPECT_EQ(dev.status, 2);
  EXPECT_NE(dev.err.find("--device"), std::string::npos) << dev.err;
}

// A literal <|endoftext|> in --prompt is raw text by default (a documented
// choice, include/kq/tokenizer.hpp) and one special token with --special-tokens.
TEST(CliMessages, SpecialTokensInThePromptOnlyWhenAsked) {
  const std::vector<std::string> base = {"generate", "--model", demo_model().string(), "--prompt", "<|endoftext|>",
                                         "-n", "1", "--threads", "1"};
  const auto raw = run_kq(base);
  EXPECT_EQ(raw.status, 0) << raw.err;
  EXPECT_NE(raw.err.find("prompt 8 tokens"), std::string::npos) << raw.err;
  auto args = base;
  args.push_back("--special-tokens");
  const auto special = run_kq(args);
  EXPECT_EQ(special.status, 0) << special.err;
  EXPECT_NE(special.err.find("prompt 1 token,"), std::string::npos) << special.err;
}

// Tester: a tensor name of 100,000 characters with a U+202E in it, unused by the model, gave a 100 KB warning line
// with the override printed raw (the rest of the line read backwards). The line is cut (io::message_excerpt) and
// the override escaped.
TEST(CliMessages, AHugeTensorNameDoesNotMakeAHugeLine) {
  kq::testing::TempDir tmp;
  std::filesystem::copy(demo_model(), tmp.path / "m", std::filesystem::copy_options::recursive);
  {
    const kq::TensorStore store = kq::TensorStore::open_file(tmp.path / "m" / "model.safetensors");
    std::map<std::string, kq::Tensor> tensors;
    for (const std::string& n : store.names()) tensors.emplace(n, store.get(n));
    tensors.emplace(std::string(50000, 'x') + "\u202E" + std::string(50000, 'y'), store.get(store.names().front()));
    kq::write_safetensors(tmp.path / "model.safetensors", tensors);
  }
  std::filesystem::rename(tmp.path / "model.safetensors", tmp.path / "m" / "model.safetensors");
  const auto r = kq::testing::run_kq_in(tmp.path, {"quantize", "-m", "m", "--mode", "int8", "-o", "q", "--threads",
                                                   "1"});
  ASSERT_EQ(r.status, 0) << r.err.substr(0, 2000);
  EXPECT_TRUE(has(r.err, "1 tensor in the weights is not used")) << r.err.substr(0, 2000);
  for (const std::string& line : lines(r.err)) EXPECT_LT(line.size(), 2200u) << line.substr(0, 300);
  EXPECT_FALSE(has(r.err, "\u202E")) << "the override printed raw";
  // The warning names the tensor by its first 200 characters and its length (io::name_excerpt).
  EXPECT_TRUE(has(r.err, "'" + std::string(200, 'x') + "… (100001 characters)'")) << r.err.substr(0, 2000);
}

