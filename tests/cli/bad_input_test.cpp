// What `kq` prints for four kinds of bad input found by a fresh-user test:
// an output path whose folder is a file, an output name too long for the
// atomic writer's temporary sibling (the message names the user's path, never
// the temporary name or its XXXXXX template), a malformed JSON file holding
// raw binary or control bytes (escaped as \xNN, never sent to the terminal),
// and a safetensors offset that is no unsigned 64-bit integer (not printed as
// a floating-point number such as 1e+30).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::demo_model;
using kq::testing::read_all;
using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

using kq::testing::has;

const std::string kDemoText = (demo_model() / "demo-eval.txt").string();

/// A copy of the demo model in `dir` (the files kq reads).
fs::path copy_demo(const fs::path& dir) {
  const fs::path m = dir / "model";
  fs::create_directories(m);
  for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json",
                        "tokenizer_config.json", "generation_config.json"})
    if (fs::exists(demo_model() / f)) fs::copy_file(demo_model() / f, m / f);
  return m;
}

using kq::testing::write_text;

/// Replaces `from` by `to` in the JSON header of a safetensors file (the
/// 8-byte length is rewritten; the data section is kept as it is).
void edit_safetensors_header(const fs::path& file, const std::string& from, const std::string& to) {
  const std::string bytes = read_all(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header = bytes.substr(8, size_t(n));
  const std::string data = bytes.substr(8 + size_t(n));
  const size_t at = header.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  header.replace(at, from.size(), to);
  const uint64_t n2 = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n2, 8);
  write_text(file, out + header + data);
}

/// true when every byte of `s` is printable ASCII, a newline, or part of a
/// well-formed multi-byte UTF-8 sequence (no control character, no raw
/// binary byte reaches the terminal).
bool terminal_safe(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n' || (c >= 0x20 && c < 0x7F)) {
      ++i;
      continue;
    }
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    if (c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) return false;  // C1 control U+0080..U+009F
    i += len;
  }
  return true;
}

}  // namespace

// 1. An output whose folder is a regular file: "is not a directory", naming it.
TEST(CliBadInput, OutputFolderThatIsAFileIsNamed) {
  TempDir tmp;
  const fs::path file = tmp.path / "notes.txt";
  write_text(file, "keep me\n");
  const std::string named = std::string("'") + file.string() + "' is not a directory";
  for (const fs::path& out : {file / "q", file / "sub" / "q"}) {
    const auto r =
        run_kq({"quantize", "--model", demo_model().string(), "--mode", "int8", "--out", out.string()});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, std::string("--out '") + out.string() + "'")) << r.err;
    EXPECT_TRUE(has(r.err, named)) << r.err;
    EXPECT_FALSE(has(r.err, "does not exist")) << r.err;
  }
  for (const char* cmd : {"eval", "bench"}) {
    for (const fs::path& out : {file / "out.json", file / "sub" / "out.json"}) {
      const auto r = run_kq({cmd, "--model", demo_model().string(), "--text", kDemoText, "--samples", "1",
                             "--json", out.string()});
      EXPECT_EQ(r.status, 1) << r.err;
      EXPECT_TRUE(has(r.err, "--json")) << r.err;
      EXPECT_TRUE(has(r.err, out.string())) << r.err;
      EXPECT_TRUE(has(r.err, named)) << r.err;
      EXPECT_FALSE(has(r.out, "perplexity")) << "ran before failing: " << r.out;
    }
  }
  EXPECT_EQ(read_all(file), "keep me\n");
}

// 2. A name that fits the file system but leaves no room for the temporary
// sibling's suffix: the message names the user's path only, and nothing is left behind.
TEST(CliBadInput, NameTooLongForTheTemporaryNamesTheUserPathOnly) {
  TempDir tmp;
  const long name_max = ::pathconf(tmp.path.c_str(), _PC_NAME_MAX);
  if (name_max < 32 || name_max > 4096) GTEST_SKIP() << "unusual NAME_MAX " << name_max;
  const fs::path out = tmp.path / std::string(size_t(name_max) - 4, 'q');
  const auto q =
      run_kq({"quantize", "--model", demo_model().string(), "--mode", "int8", "--out", out.string()});
  const auto e = run_kq({"eval", "--model", demo_model().string(), "--text", kDemoText, "--samples", "1",
                         "--json", out.string()});
  for (const auto* r : {&q, &e}) {
    EXPECT_EQ(r->status, 1) << r->err;
    EXPECT_TRUE(has(r->err, out.string())) << r->err;
    EXPECT_TRUE(has(r->err, "choose a shorter name")) << r->err;
    EXPECT_FALSE(has(r->err, "XXXXXX")) << r->err;
    EXPECT_FALSE(has(r->err, ".tmp-")) << r->err;
  }
  EXPECT_TRUE(fs::is_empty(tmp.path)) << "a temporary file or folder was left behind";
}

// 3. A malformed config.json holding raw non-UTF-8 and control bytes, and one
// whose duplicate key decodes to an escape sequence: the bytes are printed as
// \xNN, the terminal never receives them.
TEST(CliBadInput, MalformedJsonBytesAreEscaped) {
  TempDir tmp;
  const fs::path m = copy_demo(tmp.path);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"model_type\": \"gpt2\xff\xfe\"}", "\\xFF"},
      {"{\"model_type\": \"gpt2\", \"n_embd\": \xc3\x28\x1b[31m}", "\\xC3'"},
      {"{\"model_type\": \"gpt2\", \"\\u001b]0;title\\u0007\": 1, \"\\u001b]0;title\\u0007\": 2}",
       "\\x1B]0;title\\x07"},
  };
  for (const auto& [json, escaped] : cases) {
    write_text(m / "config.json", json);
    const auto r = run_kq({"eval", "--model", m.string(), "--text", kDemoText});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, (m / "config.json").string())) << r.err;
    EXPECT_TRUE(has(r.err, escaped)) << r.err;
    EXPECT_TRUE(terminal_safe(r.err)) << r.err;
  }
}

// Names quoted from a valid file (here a dtype holding an escape sequence)
// are escaped by kq when it prints any error.
TEST(CliBadInput, NamesFromModelFilesAreEscapedInErrors) {
  TempDir tmp;
  const fs::path m = copy_demo(tmp.path);
  edit_safetensors_header(m / "model.safetensors", R"("dtype":"F32","shape":[384])",
                          R"("dtype":"\u001b[2J\u009b","shape":[384])");
  const auto r = run_kq({"eval", "--model", m.string(), "--text", kDemoText});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "unknown dtype '\\x1B[2J\\u009B'")) << r.err;
  EXPECT_TRUE(terminal_safe(r.err)) << r.err;
}

// 4. data_offsets beyond the unsigned 64-bit range are named as such, with the
// tensor and file, never printed in floating-point form.
TEST(CliBadInput, HugeDataOffsetIsNotPrintedAsAFloat) {
  TempDir tmp;
  const fs::path m = copy_demo(tmp.path);
  const std::string kOffsets = "\"data_offsets\":[0,1536]";
  for (const std::string& end : {std::string("1e30"), std::string("18446744073709551616")}) {
    fs::copy_file(demo_model() / "model.safetensors", m / "model.safetensors",
                  fs::copy_options::overwrite_existing);
    edit_safetensors_header(m / "model.safetensors", kOffsets,
                            std::string("\"data_offsets\":[0,") + end + "]");
    const auto r = run_kq({"eval", "--model", m.string(), "--text", kDemoText});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, (m / "model.safetensors").string())) << r.err;
    EXPECT_TRUE(has(r.err, "tensor 'transformer.h.0.attn.c_attn.bias'")) << r.err;
    EXPECT_TRUE(has(r.err, "not a valid unsigned 64-bit integer")) << r.err;
    EXPECT_FALSE(has(r.err, "e+")) << r.err;
  }
}
