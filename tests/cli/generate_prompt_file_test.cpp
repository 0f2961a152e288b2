// `kq generate --prompt-file FILE` (tester 22: a long prompt had to go through the shell's argument list): the
// file's whole text is the prompt, exactly as --prompt with the same text (same output, same token count); it is
// checked as kq eval's --text is (UTF-8 with the byte offset named; a folder or a device refused); '-' reads
// standard input and a FIFO is read to its end (tester26), both capped at 16 MiB; it and --prompt exclude each
// other, and one of the two is required (usage errors, exit status 2).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::run_kq;

namespace {

kq::testing::CliResult generate(const std::vector<std::string>& prompt_args) {
  std::vector<std::string> args = {"generate", "-m", demo_model().string(), "-n", "6", "--ignore-eos",
                                   "--threads", "1"};
  args.insert(args.end(), prompt_args.begin(), prompt_args.end());
  return run_kq(args);
}

TEST(CliGeneratePromptFile, TheFilesTextIsThePromptAsWithPrompt) {
  kq::testing::TempDir tmp;
  const std::string text = "Once upon a time,\nthere was a";  // a newline inside, none at the end
  const auto file = tmp.path / "prompt.txt";
  kq::testing::write_text(file, text);
  const auto a = generate({"--prompt", text});
  const auto b = generate({"--prompt-file", file.string()});
  ASSERT_EQ(a.status, 0) << a.err;
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_TRUE(has(a.out, text)) << a.out;  // the echo
  const auto tokens = [](const std::string& err) { return err.substr(err.find("kq: prompt "), 20); };
  EXPECT_EQ(tokens(a.err), tokens(b.err)) << a.err << b.err;
  // Read as it is: a final newline is part of the prompt (one token more here).
  kq::testing::write_text(file, text + "\n");
  const auto c = generate({"--prompt-file", file.string()});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(tokens(a.err), tokens(c.err)) << c.err;
}

TEST(CliGeneratePromptFile, BadFilesAndOptionsAreRefused) {
  kq::testing::TempDir tmp;
  const auto latin1 = tmp.path / "latin1.txt";
  kq::testing::write_text(latin1, "caf\xe9 au lait");
  auto r = generate({"--prompt-file", latin1.string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, latin1.string()) && has(r.err, "invalid UTF-8 at byte offset 3")) << r.err;
  r = generate({"--prompt-file", (tmp.path / "missing.txt").string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--prompt-file") && has(r.err, "missing.txt")) << r.err;
  r = generate({"--prompt-file", tmp.path.string()});  // a folder
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--prompt-file")) << r.err;
  r = generate({"--prompt-file", ""});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "--prompt-file") && has(r.err, "the path is empty")) << r.err;
  r = generate({"--prompt-file", "/dev/zero"});  // a device is never read (it would not end)
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--prompt-file: '/dev/zero' is a character device")) << r.err;
  kq::testing::write_text(tmp.path / "p.txt", "Hello");
  r = generate({"--prompt", "Hi", "--prompt-file", (tmp.path / "p.txt").string()});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "--prompt-file") && has(r.err, "--prompt") && has(r.err, "exclude")) << r.err;
  r = generate({});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "Exactly 1 option from [--prompt,--prompt-file] is required")) << r.err;
  // An empty file is an empty prompt (the BOS token), named as the file.
  kq::testing::write_text(tmp.path / "empty.txt", "");
  r = generate({"--prompt-file", (tmp.path / "empty.txt").string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "(empty --prompt-file '" + (tmp.path / "empty.txt").string() + "': the BOS token")) << r.err;
}

// tester26: `--prompt-file -` was refused and a pipe (`<(...)`) too; both are read to their end now, as a file is.
TEST(CliGeneratePromptFile, StandardInputAndPipesAreReadWhole) {
  kq::testing::TempDir tmp;
  const std::string text = "Once upon a time,\nthere was a";
  const auto file = kq::testing::write_text(tmp.path / "prompt.txt", text);
  const auto a = generate({"--prompt", text});
  ASSERT_EQ(a.status, 0) << a.err;
  std::vector<std::string> args = {"generate", "-m", demo_model().string(), "-n", "6", "--ignore-eos",
                                   "--threads", "1", "--prompt-file", "-"};
  const auto in = kq::testing::run_kq_in(tmp.path, args, 60, file);
  ASSERT_EQ(in.status, 0) << in.err;
  EXPECT_EQ(in.out, a.out);
  // A FIFO written by another process (what a shell's <(...) gives).
  const auto fifo = tmp.path / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  args.back() = fifo.string();
  const auto p = kq::testing::run_kq_after(
      "cd " + kq::testing::sh_quote(tmp.path.string()) + " && (cat prompt.txt > fifo &) && timeout -s KILL 60 ",
      args);
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_EQ(p.out, a.out);
  // Standard input is checked as a file is: UTF-8 with the offset named, and at most 16 MiB.
  kq::testing::write_text(tmp.path / "latin1.txt", "caf\xe9");
  args.back() = "-";
  auto r = kq::testing::run_kq_in(tmp.path, args, 60, tmp.path / "latin1.txt");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--prompt-file - (standard input): invalid UTF-8 at byte offset 3")) << r.err;
  kq::testing::write_text(tmp.path / "big.txt", std::string((size_t(1) << 24) + 1, 'a'));
  r = kq::testing::run_kq_in(tmp.path, args, 60, tmp.path / "big.txt");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--prompt-file - (standard input): more than 16777216 bytes")) << r.err;
  // An empty standard input is an empty prompt.
  r = kq::testing::run_kq_in(tmp.path, args, 60);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "(empty --prompt-file - (standard input): the BOS token")) << r.err;
}

}  // namespace
