// Output paths whose parent folders are missing: kq quantize --out and the --json files (kq eval, compare, bench,
// tokenize) make them (mkdir -p),
// still writing atomically; a write that fails leaves neither the output nor the folders it made (the folders
// that were there stay); a part of the path that is a file is an error naming it, before any work.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"

using namespace kq::testing;
namespace fs = std::filesystem;

namespace {

/// Runs `kq ARGS` with files limited to `blocks` blocks of 512 bytes (ulimit -f) and SIGXFSZ ignored, so that a
/// write past the limit fails (EFBIG) as a full disk would, instead of killing kq. Standard output goes to
/// /dev/null (not limited), standard error to the result.
CliResult run_kq_file_limit(int blocks, const std::vector<std::string>& args) {
  TempDir tmp;
  std::string inner =
      std::string("trap '' XFSZ; ulimit -f ") + std::to_string(blocks) + "; exec " + sh_quote(KQ_CLI_BINARY);
  for (const std::string& a : args) inner.append(" ").append(sh_quote(a));
  const std::string cmd =
      std::string("sh -c ") + sh_quote(inner) + " </dev/null >/dev/null 2>" + sh_quote((tmp.path / "err").string());
  const int rc = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.err = read_all(tmp.path / "err");
  return r;
}

/// The names in folder `dir`, sorted.
std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// A text of about 20,000 characters: its --json (ids and tokens) is far above 8 blocks of 512 bytes.
std::string long_text() {
  std::string text;
  for (int i = 0; i < 800; ++i) text += std::string("The quick brown fox ") + std::to_string(i) + ". ";
  return text;
}

}  // namespace

TEST(CliOutputParents, QuantizeMakesMissingParentFolders) {
  TempDir tmp;
  const fs::path out = tmp.path / "a" / "b" / "c";
  const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::is_regular_file(out / "config.json"));
  EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
  // Written through a staging folder next to it, renamed into place: nothing else is left there.
  EXPECT_EQ(names_in(tmp.path / "a" / "b"), std::vector<std::string>{"c"});
  EXPECT_EQ(names_in(tmp.path), std::vector<std::string>{"a"});
  // The folder loads: kq eval reads it.
  const auto e = run_kq({"eval", "-m", out.string(), "-t", (demo_model() / "demo-eval.txt").string(), "--samples",
                         "1", "--quiet"});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(has(e.out, "weights:       int8")) << e.out;
}

TEST(CliOutputParents, FailedQuantizeLeavesNoFolderAndRemovesTheParentsItMade) {
  TempDir tmp;
  fs::create_directory(tmp.path / "kept");  // there before: it stays
  const fs::path out = tmp.path / "kept" / "new" / "deeper" / "q";
  // model.safetensors cannot be written past 8 blocks (4 KiB): the write fails after the folders are made.
  const auto r = run_kq_file_limit(8, {"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string()});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, std::string("kq: error: ") + (out / "model.safetensors").string())) << r.err;
  EXPECT_TRUE(fs::is_directory(tmp.path / "kept"));
  EXPECT_TRUE(fs::is_empty(tmp.path / "kept")) << "left: " << names_in(tmp.path / "kept").front();
  // The same run without the limit writes it.
  EXPECT_EQ(run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string()}).status, 0);
  EXPECT_TRUE(fs::is_regular_file(out / "model.safetensors"));
}

TEST(CliOutputParents, JsonFilesMakeMissingParentFolders) {
  TempDir tmp;
  const fs::path eval_json = tmp.path / "runs" / "eval" / "r.json";
  const auto e = run_kq({"eval", "-m", demo_model().string(), "-t", (demo_model() / "demo-eval.txt").string(),
                         "--samples", "1", "--quiet", "--json", eval_json.string()});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(nlohmann::json::parse(read_all(eval_json)).contains("ppl"));
  const fs::path tok_json = tmp.path / "runs" / "tok" / "x" / "ids.json";
  const auto t = run_kq({"tokenize", "--json", tok_json.string(), "Hello world"});
  EXPECT_EQ(t.status, 0) << t.err;
  EXPECT_EQ(nlohmann::json::parse(read_all(tok_json)).at("ids").size(), 3u);
  EXPECT_EQ(names_in(tok_json.parent_path()), std::vector<std::string>{"ids.json"});  // no temporary file left
  // kq compare and kq bench write theirs the same way (tester round 23 asked for compare).
  const fs::path cmp_json = tmp.path / "runs" / "cmp" / "c.json";
  const auto c = run_kq({"compare", demo_model().string(), demo_model().string(), "-t",
                         (demo_model() / "demo-eval.txt").string(), "--samples", "1", "--quiet", "--json",
                         cmp_json.string()});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_TRUE(nlohmann::json::parse(read_all(cmp_json)).contains("candidate"));
  EXPECT_EQ(names_in(cmp_json.parent_path()), std::vector<std::string>{"c.json"});
  const fs::path bench_json = tmp.path / "runs" / "bench" / "b.json";
  const auto b = run_kq({"bench", "--modes", "int8", "--samples", "1", "--no-latency", "--threads", "1", "--quiet",
                         "--json", bench_json.string()});
  EXPECT_EQ(b.status, 0) << b.err;
  EXPECT_TRUE(nlohmann::json::parse(read_all(bench_json)).contains("results"));
  // ... and their help says so (kq compare's did not).
  for (const char* command : {"eval", "bench", "compare", "tokenize"}) {
    const auto h = run_kq({command, "--help"});
    EXPECT_EQ(h.status, 0) << h.err;
    EXPECT_TRUE(has(h.out, "missing folders above it are made")) << command << ": " << h.out;
  }
  // A write that fails leaves neither the file nor the folders made for it.
  fs::create_directory(tmp.path / "kept");
  const fs::path big = tmp.path / "kept" / "new" / "ids.json";
  const fs::path text = write_text(tmp.path / "long.txt", long_text());
  const auto f = run_kq_file_limit(8, {"tokenize", "--file", text.string(), "--json", big.string()});
  EXPECT_EQ(f.status, 1) << f.err;
  EXPECT_TRUE(has(f.err, big.string())) << f.err;
  EXPECT_TRUE(fs::is_empty(tmp.path / "kept"));
}

TEST(CliOutputParents, APartOfThePathThatIsAFileIsNamedBeforeAnyWork) {
  TempDir tmp;
  const fs::path file = write_text(tmp.path / "notes.txt", "keep me\n");
  const std::string named = std::string("'") + file.string() + "' is not a directory";
  for (const fs::path& out : {file / "a" / "b" / "q", file / "q"}) {
    const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string()});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, std::string("kq: error: --out '") + out.string() + "': cannot create it: " + named))
        << r.err;
    EXPECT_FALSE(has(r.out, "quantized")) << "ran before failing: " << r.out;
  }
  const fs::path json = file / "a" / "b" / "r.json";
  const auto e = run_kq({"eval", "-m", demo_model().string(), "-t", (demo_model() / "demo-eval.txt").string(),
                         "--samples", "1", "--json", json.string()});
  EXPECT_EQ(e.status, 1) << e.err;
  EXPECT_TRUE(has(e.err, std::string("kq: error: --json: cannot write '") + json.string() + "': " + named)) << e.err;
  EXPECT_FALSE(has(e.out, "perplexity")) << "ran before failing: " << e.out;
  const auto t = run_kq({"tokenize", "--json", json.string(), "x"});
  EXPECT_EQ(t.status, 1) << t.err;
  EXPECT_TRUE(has(t.err, named)) << t.err;
  const auto c = run_kq({"compare", demo_model().string(), demo_model().string(), "-t",
                         (demo_model() / "demo-eval.txt").string(), "--samples", "1", "--json", json.string()});
  EXPECT_EQ(c.status, 1) << c.err;
  EXPECT_TRUE(has(c.err, std::string("kq: error: --json: cannot write '") + json.string() + "': " + named)) << c.err;
  EXPECT_FALSE(has(c.out, "perplexity")) << "ran before failing: " << c.out;
  // A dangling symbolic link on the way is named as one.
  fs::create_symlink(tmp.path / "nowhere", tmp.path / "dangling");
  const fs::path under_link = tmp.path / "dangling" / "sub" / "q";
  const auto d = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", under_link.string()});
  EXPECT_EQ(d.status, 1) << d.err;
  EXPECT_TRUE(has(d.err, std::string("'") + (tmp.path / "dangling").string() + "' is a symbolic link to '" +
                             (tmp.path / "nowhere").string() + "', which does not exist"))
      << d.err;
  EXPECT_EQ(read_all(file), "keep me\n");
  EXPECT_EQ(names_in(tmp.path), (std::vector<std::string>{"dangling", "notes.txt"}));
}
