// Findings of the round-12 fresh-user test of the installed kq (README only),
// each re-run here: file and folder names that are not UTF-8 ended kq with an
// internal error after all the work (the JSON writer threw); a --keep pattern
// that is not UTF-8 likewise; a model file rewritten in place during a run
// (no truncation, so no SIGBUS) gave wrong results and exit 0; tokenizer
// settings that add tokens were ignored without a word; a model with a
// context of 1 position was reported as a bad --ctx; the --samples warning
// gave the wrong window length; an overflowed perplexity printed "-nan%";
// messages that misnamed the problem; an empty --out folder was not what the
// docs said; --json through a link to standard output replaced the report.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "cli/running_kq.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

TEST(FreshUserRound12, NonUtf8NamesAreWrittenToJsonWithReplacementCharacters) {
  TempDir tmp;
  const std::string bad_text = "bad\xffname.txt";
  write_text(tmp.path / bad_text, "hello world, this is a test of a name.\n");
  CliResult r = run_kq_in(tmp.path, {"eval", "-m", demo_model().string(), "-t", bad_text, "--json", "o.json",
                                     "--quiet", "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(read_all(tmp.path / "o.json"));
  EXPECT_EQ(j["text"], "bad\xef\xbf\xbdname.txt");  // the invalid byte as U+FFFD
  r = run_kq_in(tmp.path, {"eval", "-m", demo_model().string(), "-t", bad_text, "--json", "-", "--quiet",
                           "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], "bad\xef\xbf\xbdname.txt");

  // A model folder and a calibration file named so (kq bench).
  const std::string bad_model = "m\xfe";
  fs::copy(demo_model(), tmp.path / bad_model, fs::copy_options::recursive);
  write_text(tmp.path / ("c\xff.txt"), read_all(demo_model() / "demo-calibration.txt"));
  r = run_kq_in(tmp.path, {"bench", "-m", bad_model, "--modes", "awq", "--no-latency", "--samples", "1",
                           "--calibration", "c\xff.txt", "--json", "b.json", "--threads", "1"});
  ASSERT_TRUE(r.status == 0 || r.status == 3) << r.err;
  j = nlohmann::json::parse(read_all(tmp.path / "b.json"));
  EXPECT_EQ(j["model"], "m\xef\xbf\xbd");
  EXPECT_EQ(j["calibration"], "c\xef\xbf\xbd.txt");
}

TEST(FreshUserRound12, NonUtf8KeepPatternIsAUsageError) {
  TempDir tmp;
  CliResult r = run_kq_in(tmp.path, {"quantize", "-m", demo_model().string(), "--mode", "int8", "--keep", "h\xff",
                                     "-o", "qx"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--keep")) << r.err;
  EXPECT_TRUE(has(r.err, "is not valid UTF-8")) << r.err;
  EXPECT_FALSE(fs::exists(tmp.path / "qx"));
  r = run_kq_in(tmp.path, {"bench", "--modes", "int8", "--keep", "c_\xc3", "--no-latency"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--keep")) << r.err;
}

// As FreshUserRound10b.ModelFileTruncatedDuringARunIsACleanError, with the
// file rewritten in place instead: same size, a weight changed. The
// modification time is moved on explicitly (file system timestamps are
// coarser than the few milliseconds between the load and the rewrite here).
TEST(FreshUserRound12, ModelFileRewrittenInPlaceDuringARunIsTheDocumentedError) {
  TempDir tmp;
  const fs::path m = tmp.path / "m", err = tmp.path / "err";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  RunningKq kq({"generate", "-m", m.string(), "--prompt", "Once upon a time", "-n", "20", "--threads", "1"}, err);
  ASSERT_GT(kq.pid, 0);
  ASSERT_TRUE(kq.wait_for("Once upon a time")) << kq.out << read_all(err);
  ASSERT_EQ(::kill(kq.pid, SIGSTOP), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(kq.pid, &st, WUNTRACED), kq.pid);
  const fs::path file = m / "model.safetensors";
  const auto size = fs::file_size(file);
  poke_first_float(file, "transformer.ln_f.weight", 0.5f);
  fs::last_write_time(file, fs::last_write_time(file) + std::chrono::seconds(2));
  ASSERT_EQ(fs::file_size(file), size);
  ASSERT_EQ(::kill(kq.pid, SIGCONT), 0);
  const int status = kq.wait();
  const std::string e = read_all(err);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "status " << status << "\n" << e;
  EXPECT_TRUE(has(e, "kq: error: a model file changed or was truncated while it was being read: " + file.string() +
                         " (it was modified")) << e;
}

// Hugging Face would add the BOS token to every text; kq says so once in `kq eval`, which does not add it, and
// nothing in `kq generate`, which puts it before its prompt as Hugging Face does (GenerateSpecialPrefix tests that
// it does; tester round 18, finding 6: the warning was printed on every generate run).
TEST(FreshUserRound12, AddBosTokenIsWarnedAsIgnored) {
  TempDir tmp;
  const fs::path m = tmp.path / "m";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  nlohmann::json cfg = nlohmann::json::parse(read_all(m / "tokenizer_config.json"));
  cfg["add_bos_token"] = true;
  write_text(m / "tokenizer_config.json", cfg.dump());
  const CliResult r = run_kq({"generate", "-m", m.string(), "--prompt", "Hello", "-n", "2", "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count(r.err, "add_bos_token"), 0u) << r.err;
  std::string text;
  for (int i = 0; i < 40; ++i) text += "Hello there, this is a short text for the tiny model. ";
  write_text(tmp.path / "t.txt", text);
  const CliResult e = run_kq({"eval", "-m", m.string(), "-t", (tmp.path / "t.txt").string(), "--threads", "1"});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_EQ(count(e.err, "kq: warning: " + (m / "tokenizer_config.json").string() +
                             ": \"add_bos_token\": true: Hugging Face adds the BOS token '<|endoftext|>' to every "
                             "encoded text; kq adds none: `kq eval` and `kq bench` score the text's ids alone\n"),
            1u)
      << e.err;
}

// A model whose context is 1 position: the evaluation commands said "perplexity window length (ctx) must be >=
// 2, got 1" (no --ctx was given) and "calibration window 1 must be in [2, 1]".
TEST(FreshUserRound12, ModelContextTooSmallToEvaluateNamesConfigJson) {
  TempDir tmp;
  const fs::path m = tmp.path / "m";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  nlohmann::json cfg = nlohmann::json::parse(read_all(m / "config.json"));
  cfg["n_positions"] = 1;
  write_text(m / "config.json", cfg.dump());
  const std::string text = (demo_model() / "demo-eval.txt").string();
  const std::string says = "kq: error: " + (m / "config.json").string() +
                           ": n_positions is 1: the model's context is too small to evaluate (";
  for (const auto& [args, windows] :
       {std::pair{std::vector<std::string>{"eval", "-m", m.string(), "-t", text, "--quiet"}, "perplexity windows"},
        std::pair{std::vector<std::string>{"bench", "-m", m.string(), "--modes", "int8", "--no-latency"},
                  "perplexity windows"},
        std::pair{std::vector<std::string>{"quantize", "-m", m.string(), "--mode", "awq", "-o",
                                           (tmp.path / "q").string()},
                  "AWQ calibration windows"}}) {
    SCOPED_TRACE(args[0]);
    const CliResult r = run_kq(args);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, says + windows + " need at least 2 positions)")) << r.err;
  }
}

// "--samples 2: the text has only 1 window of 256 tokens" for a text of 3 tokens: the real window lengths.
TEST(FreshUserRound12, SamplesBeyondTheTextSaysTheRealWindowLengths) {
  TempDir tmp;
  write_text(tmp.path / "short.txt", "hello world");  // 3 tokens for the demo tokenizer
  CliResult r = run_kq_in(tmp.path, {"eval", "-m", demo_model().string(), "-t", "short.txt", "--samples", "2",
                                     "--quiet", "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: warning: --samples 2: the text (3 tokens) has only 1 window, of 3 tokens (at most 256 "
                         "per window); it was evaluated (as with --samples 1)\n"))
      << r.err;
  r = run_kq({"eval", "-m", demo_model().string(), "-t", (demo_model() / "demo-eval.txt").string(), "--ctx", "100",
              "--samples", "20", "--quiet", "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: warning: --samples 20: the text (1655 tokens) has only 17 windows, 16 of 100 tokens and "
                         "1 of 55 (at most 100 per window); all 17 were evaluated (as with --samples 17)\n"))
      << r.err;
}

// A perplexity that overflows (finite logits, a mean negative log-likelihood beyond 709.78): kq bench printed
// "inf -> inf  -nan%". ln_f's first output fixed at 1e4 and wte's first element 1e4: token 0's logit is 1e8.
TEST(FreshUserRound12, OverflowedPerplexityIsInfWithDeltaNotApplicableAndANote) {
  TempDir tmp;
  const fs::path m = tmp.path / "m";
  copy_demo_model_with_overflowing_perplexity(m);
  CliResult r = run_kq({"bench", "-m", m.string(), "--modes", "int8", "--samples", "1", "--no-latency", "--threads",
                        "1"});
  // Round 15: the delta is exp(mean NLL after - before) - 1, the perplexity ratio, which stays finite when
  // both perplexities overflow (it was "n/a", and FAIL whatever the mode did); the verdict and exit follow it.
  EXPECT_TRUE(r.status == 0 || r.status == 3) << r.err;
  EXPECT_FALSE(has(r.out, "nan")) << r.out;
  EXPECT_FALSE(has(r.out, "n/a")) << r.out;
  EXPECT_TRUE(has(r.out, "perplexity   inf -> inf  (")) << r.out;
  EXPECT_TRUE(has(r.out, "mean NLL     ")) << r.out;
  EXPECT_EQ(has(r.out, "PASS"), r.status == 0) << r.out;
  EXPECT_EQ(count(r.err, "kq: warning: the perplexities of the baseline and mode int8 overflowed: the mean negative "
                         "log-likelihood is above 709.78 nats/token"),
            1u)
      << r.err;
  EXPECT_TRUE(has(r.err, "the delta is computed from the mean NLLs")) << r.err;
  r = run_kq({"eval", "-m", m.string(), "-t", (m / "demo-eval.txt").string(), "--samples", "1", "--quiet",
              "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "perplexity:    inf\n")) << r.out;
  EXPECT_TRUE(has(r.err, "kq: warning: the perplexity of the model overflowed")) << r.err;
}

// Messages of the round: a symbolic link loop as --model read "model folder not found" (kq bench: an internal
// error), one as --json did not name --json; a weight_map that is an array was "missing"; an empty
// quantization_config was "quant_method '?' is not supported"; "1 threads".
TEST(FreshUserRound12, MessagesSayWhatIsWrong) {
  TempDir tmp;
  fs::create_symlink("loop2", tmp.path / "loop1");
  fs::create_symlink("loop1", tmp.path / "loop2");
  fs::create_symlink("nowhere", tmp.path / "dangling");
  const std::string text = (demo_model() / "demo-eval.txt").string();
  CliResult r = run_kq_in(tmp.path, {"eval", "-m", "loop1", "-t", text, "--quiet"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: loop1: model folder is a symbolic link loop")) << r.err;
  r = run_kq_in(tmp.path, {"eval", "-m", "dangling", "-t", text, "--quiet"});
  EXPECT_TRUE(has(r.err, "kq: error: dangling: model folder is a symbolic link to 'nowhere', which does not exist"))
      << r.err;
  r = run_kq_in(tmp.path, {"bench", "-m", "loop1", "--modes", "int8", "--no-latency"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: --model: 'loop1' is a symbolic link loop")) << r.err;
  r = run_kq_in(tmp.path, {"eval", "-m", demo_model().string(), "-t", text, "--json", "loop1", "--quiet"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: --json: loop1: too many levels of symbolic links")) << r.err;

  const fs::path sharded = tmp.path / "sharded";
  fs::copy(demo_model(), sharded, fs::copy_options::recursive);
  fs::rename(sharded / "model.safetensors", sharded / "model-00001-of-00001.safetensors");
  write_text(sharded / "model.safetensors.index.json", R"({"weight_map": ["model-00001-of-00001.safetensors"]})");
  r = run_kq({"eval", "-m", sharded.string(), "-t", text, "--quiet"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "model.safetensors.index.json: \"weight_map\" is not an object")) << r.err;

  const fs::path q = tmp.path / "q";
  fs::copy(demo_model(), q, fs::copy_options::recursive);
  nlohmann::json cfg = nlohmann::json::parse(read_all(q / "config.json"));
  cfg["quantization_config"] = nlohmann::json::object();
  write_text(q / "config.json", cfg.dump());
  r = run_kq({"eval", "-m", q.string(), "-t", text, "--quiet"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, (q / "config.json").string() + ": quantization_config has no \"quant_method\"")) << r.err;
  EXPECT_FALSE(has(r.err, "'?'")) << r.err;

  r = run_kq({"eval", "-m", demo_model().string(), "-t", text, "--samples", "1", "--threads", "1", "--quiet"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "tokens/s, 1 thread)")) << r.out;
  r = run_kq({"generate", "-m", demo_model().string(), "--prompt", "a", "-n", "300", "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "the prompt's 1 token leaves 255 of the model's 256 positions")) << r.err;
}

// `--keep c_fc c_attn` was refused while help showed "--keep TEXT:REGEX ...", a list.
TEST(FreshUserRound12, KeepHelpSaysOnePatternPerOption) {
  const CliResult h = run_kq({"quantize", "--help"});
  EXPECT_TRUE(has(h.out, "--keep TEXT:REGEX ")) << h.out;
  EXPECT_FALSE(has(h.out, "REGEX ...")) << h.out;
  EXPECT_TRUE(has(h.out, "one pattern per --keep: repeat the option for more (--keep c_fc --keep c_attn)")) << h.out;
  EXPECT_FALSE(has(run_kq({"bench", "--help"}).out, "REGEX ..."));
  TempDir tmp;
  const CliResult r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "--keep", "c_fc", "--keep",
                              "c_attn", "-o", (tmp.path / "q").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(read_all(tmp.path / "q" / "config.json"))["quantization_config"]["keep_patterns"],
            nlohmann::json::parse(R"(["c_fc", "c_attn"])"));
}

// As root (permissions do not stop it) the file is readable: skipped.
TEST(FreshUserRound12, UnreadableJsonFileSaysWhy) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: a mode-000 file is readable";
  TempDir tmp;
  const fs::path m = tmp.path / "m";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  fs::permissions(m / "config.json", fs::perms::none);
  const CliResult r = run_kq({"eval", "-m", m.string(), "-t", (m / "demo-eval.txt").string(), "--quiet"});
  fs::permissions(m / "config.json", fs::perms::owner_all);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, (m / "config.json").string() + ": cannot open for reading: Permission denied")) << r.err;
}

// --overwrite into an existing empty folder was accepted while README and help said an --out without
// config.json is refused: an empty folder is written like a new one (documented), a non-empty one is refused.
TEST(FreshUserRound12, EmptyOutFolderIsWrittenLikeANewOneAsDocumented) {
  TempDir tmp;
  for (const bool overwrite : {false, true}) {
    const fs::path out = tmp.path / (overwrite ? "e2" : "e1");
    fs::create_directories(out);
    std::vector<std::string> args{"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string()};
    if (overwrite) args.push_back("--overwrite");
    const CliResult r = run_kq(args);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(out / "config.json"));
  }
  const fs::path full = tmp.path / "full";
  fs::create_directories(full);
  write_text(full / "notes.txt", "mine");
  const CliResult r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", full.string(),
                              "--overwrite"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(read_all(full / "notes.txt"), "mine");
  const std::string help = run_kq({"quantize", "--help"}).out;
  EXPECT_TRUE(has(help, "an empty folder is written like a new one, with or without --overwrite")) << help;
  EXPECT_TRUE(has(help, "a non-empty one without config.json")) << help;
  const std::string readme = read_all(kq::testing::source_dir() / "README.md");
  EXPECT_TRUE(has(readme, "An `--out` that is an empty folder is written like a\n  new one, with or without "
                          "`--overwrite` ("));
}

// --json naming, through a link, the file standard output (or error) writes to replaced the report with the
// JSON; it is refused like /dev/stdout (same device and inode as fd 1 or 2).
TEST(FreshUserRound12, JsonOnTheFileOfStandardOutputIsRefused) {
  if (!fs::exists("/proc/self/fd/1")) GTEST_SKIP() << "no /proc/self/fd";
  TempDir tmp;
  fs::create_symlink("/proc/self/fd/1", tmp.path / "myout");
  fs::create_symlink("/proc/self/fd/2", tmp.path / "myerr");
  const std::string text = (demo_model() / "demo-eval.txt").string();
  for (const auto& [link, stream] : {std::pair{"myout", "standard output"}, std::pair{"myerr", "standard error"}}) {
    const CliResult r = run_kq_in(tmp.path, {"eval", "-m", demo_model().string(), "-t", text, "--json", link,
                                             "--samples", "1", "--quiet"});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, std::string("kq: error: --json: '") + link + "' is the file " + stream +
                               " writes to; give --json - for the JSON on standard output"))
        << r.err;
    EXPECT_FALSE(has(r.out, "\"ppl\"")) << r.out;
  }
}

}  // namespace
}  // namespace kq::testing
