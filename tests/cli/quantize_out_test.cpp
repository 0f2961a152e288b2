// kq quantize's --out and --keep: a symbolic link is said to be one (a link
// to a folder is followed), the output folder is neither the input folder nor
// inside it, and a --keep that is not a regular expression is a usage error.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

using kq::testing::has;

TEST(CliQuantizeOut, KeepThatIsNotARegexIsAUsageError) {
  TempDir tmp;
  const auto q = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o",
                         (tmp.path / "q").string(), "--keep", "(("});
  EXPECT_EQ(q.status, 2) << q.err;
  EXPECT_TRUE(has(q.err, "kq: error: --keep: '((' is not a valid regular expression")) << q.err;
  EXPECT_FALSE(fs::exists(tmp.path / "q"));
  const auto b = run_kq({"bench", "--modes", "int8", "--keep", "a[", "--samples", "1"});
  EXPECT_EQ(b.status, 2) << b.err;
  EXPECT_TRUE(has(b.err, "kq: error: --keep: 'a[' is not a valid regular expression")) << b.err;
}

TEST(CliQuantizeOut, OutputInsideOrEqualToTheInputFolderIsRefused) {
  TempDir tmp;
  const fs::path model = tmp.path / "m";
  fs::copy(kq::testing::demo_model(), model);
  fs::create_directory(model / "a");  // (a '..' after a missing folder is refused before: AtomicDir tests)
  for (const fs::path& out : {model / "sub", model / "a" / ".." / "sub2", model, fs::path(model.string() + "/")}) {
    const auto r = run_kq({"quantize", "-m", model.string(), "--mode", "int8", "-o", out.string()});
    EXPECT_EQ(r.status, 1) << out << ": " << r.err;
    EXPECT_TRUE(has(r.err, "the output folder must not be")) << out << ": " << r.err;
  }
  // Through a symbolic link to a folder of the model too.
  fs::create_directory(model / "inner");
  fs::create_directory_symlink(model / "inner", tmp.path / "link");
  const auto r = run_kq({"quantize", "-m", model.string(), "--mode", "int8", "-o", (tmp.path / "link").string()});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "inside the --model folder")) << r.err;
  EXPECT_FALSE(fs::exists(model / "sub"));
  EXPECT_TRUE(fs::is_empty(model / "inner"));
}

TEST(CliQuantizeOut, SymbolicLinkIsNamedAndALinkToAFolderIsFollowed) {
  TempDir tmp;
  const std::string model = kq::testing::demo_model().string();
  fs::create_directory(tmp.path / "real");
  fs::create_directory_symlink(tmp.path / "real", tmp.path / "link");
  const auto ok = run_kq({"quantize", "-m", model, "--mode", "int8", "-o", (tmp.path / "link").string()});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(fs::is_symlink(tmp.path / "link"));
  EXPECT_TRUE(fs::is_regular_file(tmp.path / "real" / "model.safetensors"));
  fs::create_symlink(tmp.path / "nowhere", tmp.path / "dangling");
  const auto bad = run_kq({"quantize", "-m", model, "--mode", "int8", "-o", (tmp.path / "dangling").string()});
  EXPECT_EQ(bad.status, 1) << bad.err;
  EXPECT_TRUE(has(bad.err, "is a symbolic link to '")) << bad.err;
  EXPECT_FALSE(has(bad.err, "is not a folder\n") && !has(bad.err, "symbolic link")) << bad.err;
}

// Fresh-user finding: an --out name longer than the file system allows (255
// bytes) ended in "kq: internal error: filesystem error: status: File name too
// long" (exit 70); it is exit 1 naming --out, as for --json, --text and -o LONG/sub.
TEST(CliQuantizeOut, NameTooLongIsNamedWithTheOption) {
  TempDir tmp;
  const std::string long_name = (tmp.path / std::string(300, 'x')).string();
  const auto r = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o", long_name});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: --out '" + long_name + "': cannot be accessed (File name too long)")) << r.err;
  EXPECT_FALSE(has(r.err, "internal error")) << r.err;
}

// Fresh-user finding: an --out that is a symbolic link to itself was "a
// symbolic link to 'selfloop', which does not exist"; it is named as a loop.
TEST(CliQuantizeOut, SymbolicLinkLoopIsNamedAsOne) {
  TempDir tmp;
  const fs::path loop = tmp.path / "selfloop";
  fs::create_symlink("selfloop", loop);
  const auto r = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "int8", "-o", loop.string()});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: --out " + loop.string() + ": is a symbolic link loop")) << r.err;
  EXPECT_FALSE(has(r.err, "does not exist")) << r.err;
}

// Every reader of config.json refuses a UTF-8 byte-order mark before it, as load_model_config does (d3cdec4;
// transformers' json.load refuses it). kq quantize's up-front checks read it with a parser that skips one: a kq
// folder whose config.json had one was called "already quantized" as --model (instead of the load's error naming
// the mark), and was replaced as an --out with --overwrite.
TEST(CliQuantizeOut, ConfigJsonWithAByteOrderMarkIsRefusedByTheUpFrontChecks) {
  TempDir tmp;
  const std::string model = kq::testing::demo_model().string();
  const fs::path q = tmp.path / "q";
  const auto made = run_kq({"quantize", "-m", model, "--mode", "int8", "-o", q.string()});
  ASSERT_EQ(made.status, 0) << made.err;
  const std::string config = kq::testing::read_all(q / "config.json");
  kq::testing::write_text(q / "config.json", "\xEF\xBB\xBF" + config);
  const std::string bom = (q / "config.json").string() + ": starts with a UTF-8 byte-order mark (bytes EF BB BF)";
  const auto in = run_kq({"quantize", "-m", q.string(), "--mode", "int8", "-o", (tmp.path / "q2").string()});
  EXPECT_EQ(in.status, 1) << in.err;
  EXPECT_TRUE(has(in.err, "kq: error: " + bom)) << in.err;
  EXPECT_FALSE(has(in.err, "already quantized")) << in.err;
  const auto out = run_kq({"quantize", "-m", model, "--mode", "int8", "-o", q.string(), "--overwrite"});
  EXPECT_EQ(out.status, 1) << out.err;
  EXPECT_TRUE(has(out.err, "kq: error: --out '" + q.string() + "' is not a folder written by kq quantize (its "
                               "config.json cannot be read: " + bom))
      << out.err;
  EXPECT_EQ(kq::testing::read_all(q / "config.json"), "\xEF\xBB\xBF" + config);  // not replaced
}

// tester25 F7: `kq quantize -o .` in an empty folder said "wrote ." and exit 0, but the new folder had been renamed
// over the current directory, so the shell saw an empty (deleted) folder. An --out that is the current directory,
// or contains it, is refused naming --out; nothing is written or replaced.
TEST(CliQuantizeOut, CurrentDirectoryOrAFolderAboveItIsRefused) {
  TempDir tmp;
  const std::string model = kq::testing::demo_model().string();
  const fs::path here = tmp.path / "empty" / "inner";
  fs::create_directories(here);
  for (const std::string& out : {std::string("."), std::string("./"), std::string(".."), here.string(),
                                 (tmp.path / "empty").string()}) {
    const auto r = kq::testing::run_kq_in(here, {"quantize", "-m", model, "--mode", "int8", "-o", out});
    EXPECT_EQ(r.status, 1) << out << ": " << r.err;
    EXPECT_TRUE(has(r.err, "kq: error: --out '" + out + "' ")) << out << ": " << r.err;
    EXPECT_TRUE(has(r.err, "the current directory")) << out << ": " << r.err;
    EXPECT_TRUE(has(r.err, "give another --out")) << out << ": " << r.err;
    EXPECT_TRUE(fs::is_empty(here)) << out;
  }
  // A kq folder as the current directory, with --overwrite: not replaced either.
  const fs::path q = tmp.path / "q";
  ASSERT_EQ(run_kq({"quantize", "-m", model, "--mode", "int8", "-o", q.string()}).status, 0);
  const auto before = fs::last_write_time(q / "model.safetensors");
  const auto r = kq::testing::run_kq_in(q, {"quantize", "-m", model, "--mode", "nf4", "-o", ".", "--overwrite"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: --out '.' is the current directory")) << r.err;
  EXPECT_EQ(fs::last_write_time(q / "model.safetensors"), before);
  // A sibling of the current directory is still fine.
  const auto ok = kq::testing::run_kq_in(here, {"quantize", "-m", model, "--mode", "int8", "-o", "../sibling"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(fs::is_regular_file(tmp.path / "empty" / "sibling" / "model.safetensors"));
}
