// `kq quantize` findings of a fresh-user test of AWQ: an empty calibration
// file is named (no C++ field names), a short one is warned about; --calibration
// with a mode that does not use it is a usage error; an already-quantized
// --model, or a run that keeps every layer, is an error instead of a "success"
// with 0 quantized layers (and no alpha table header); the awq-b64 /
// awq-g128-asym spellings are documented in --help and reported canonically.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kDemo = kq::testing::demo_model().string();

using kq::testing::has;
using kq::testing::write_text;

}  // namespace

TEST(CliAwqFindings, EmptyOrBlankCalibrationFileIsNamed) {
  TempDir tmp;
  for (const char* text : {"", " \n\t\n  \r\n"}) {
    SCOPED_TRACE(::testing::PrintToString(std::string(text)));
    const fs::path calib = write_text(tmp.path / "calib.txt", text);
    const auto r = run_kq({"quantize", "-m", kDemo, "--mode", "awq", "-o", (tmp.path / "q").string(),
                           "--calibration", calib.string()});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "--calibration '" + calib.string() + "'")) << r.err;
    EXPECT_TRUE(has(r.err, std::string(text).empty() ? "is empty" : "only whitespace")) << r.err;
    EXPECT_FALSE(has(r.err, "calibration.tokens")) << r.err;  // a C++ field name means nothing to a CLI user
    EXPECT_FALSE(has(r.err, "QuantizeOptions")) << r.err;
    EXPECT_FALSE(fs::exists(tmp.path / "q"));
  }
}

TEST(CliAwqFindings, ShortCalibrationTextIsWarnedAndUsed) {
  TempDir tmp;
  const fs::path calib = write_text(tmp.path / "short.txt", "The cat sat on the mat. It was warm.\n");
  const auto r = run_kq({"quantize", "-m", kDemo, "--mode", "awq", "-o", (tmp.path / "q").string(),
                         "--calibration", calib.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: warning: --calibration '" + calib.string() + "': only ")) << r.err;
  EXPECT_TRUE(has(r.err, " tokens of calibration text, less than one calibration window of 256 tokens")) << r.err;
  EXPECT_TRUE(fs::is_regular_file(tmp.path / "q" / "model.safetensors"));

  // The shipped demo text (1,754 tokens, several windows) is not warned about.
  const auto d = run_kq({"quantize", "-m", kDemo, "--mode", "awq", "-o", (tmp.path / "d").string()});
  EXPECT_EQ(d.status, 0) << d.err;
  EXPECT_FALSE(has(d.err, "warning")) << d.err;
}

// A calibration text of one token: one error naming the file, its token count
// and the 2 needed (it was a few-tokens warning, then "AWQ needs at least 2
// calibration tokens (--calibration FILE holds 1)"), from quantize and bench.
// Two tokens are warned about and used (as ShortCalibrationTextIsWarnedAndUsed).
TEST(CliAwqFindings, OneTokenCalibrationTextIsOneErrorNamingTheFile) {
  TempDir tmp;
  const fs::path calib = write_text(tmp.path / "one.txt", "a");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"quantize", "-m", kDemo, "--mode", "awq", "-o", (tmp.path / "q").string(),
                                 "--calibration", calib.string()},
        std::vector<std::string>{"bench", "-m", kDemo, "--modes", "awq", "--no-latency", "--calibration",
                                 calib.string()}}) {
    SCOPED_TRACE(args[0]);
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_EQ(r.err, "kq: error: --calibration '" + calib.string() +
                         "': the calibration text is 1 token long; AWQ needs at least 2 (the first position alone is "
                         "no statistic of the model's activations) and a few thousand tokens of ordinary text in the "
                         "model's language for reliable scales\n");
    EXPECT_FALSE(fs::exists(tmp.path / "q"));
  }
  const fs::path two = write_text(tmp.path / "two.txt", "a b");
  const auto r = run_kq({"quantize", "-m", kDemo, "--mode", "awq", "-o", (tmp.path / "q2").string(),
                         "--calibration", two.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: warning: --calibration '" + two.string() + "': only 2 tokens of calibration text"))
      << r.err;
}

TEST(CliAwqFindings, CalibrationWithAModeThatDoesNotUseItIsAUsageError) {
  TempDir tmp;
  const std::string calib = kDemo + "/demo-calibration.txt";
  for (const char* mode : {"int8", "int4-g128", "adaptive"}) {
    SCOPED_TRACE(mode);
    const auto r = run_kq(
        {"quantize", "-m", kDemo, "--mode", mode, "-o", (tmp.path / "q").string(), "--calibration", calib});
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_TRUE(has(r.err, "--calibration goes with the AWQ modes")) << r.err;
    EXPECT_TRUE(has(r.err, std::string("not ") + mode)) << r.err;
    EXPECT_FALSE(fs::exists(tmp.path / "q"));
  }
}

TEST(CliAwqFindings, QuantizedModelOrEveryLayerKeptIsAnError) {
  TempDir tmp;
  const std::string q = (tmp.path / "q").string();
  ASSERT_EQ(run_kq({"quantize", "-m", kDemo, "--mode", "int8", "-o", q}).status, 0);
  // Quantizing a quantized folder, with every layer kept or not.
  for (const char* mode : {"int8", "awq"}) {
    SCOPED_TRACE(mode);
    const auto r = run_kq({"quantize", "-m", q, "--mode", mode, "--keep", ".", "-o", (tmp.path / "o").string()});
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_TRUE(has(r.err, "--model '" + q + "' is already quantized")) << r.err;
    EXPECT_FALSE(has(r.out, "alpha")) << r.out;
    EXPECT_FALSE(fs::exists(tmp.path / "o"));
  }
  // Every layer of an original model kept: nothing to quantize, no folder, no AWQ table header.
  for (const char* mode : {"int8", "awq"}) {
    SCOPED_TRACE(mode);
    const auto r = run_kq({"quantize", "-m", kDemo, "--mode", mode, "--keep", ".", "-o", (tmp.path / "o").string()});
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_TRUE(has(r.err, "nothing to quantize: every one of the 9 linear layers")) << r.err;
    EXPECT_TRUE(has(r.err, "(--keep .)")) << r.err;
    EXPECT_FALSE(has(r.out, "alpha")) << r.out;
    EXPECT_FALSE(has(r.out, "quantized 0 of")) << r.out;
    EXPECT_FALSE(fs::exists(tmp.path / "o"));
  }
}

TEST(CliAwqFindings, AwqSpellingsAreDocumentedAndReportedCanonically) {
  const auto h = run_kq({"quantize", "--help"});
  EXPECT_EQ(h.status, 0);
  for (const char* s : {"awq-gN", "awq-sym", "awq-b64 = awq-g64", "awq-g128-asym = awq"})
    EXPECT_TRUE(has(h.out, s)) << s << "\n" << h.out;
  TempDir tmp;
  const auto r = run_kq({"quantize", "-m", kDemo, "--mode", "awq-b64", "-o", (tmp.path / "q").string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "to awq-g64 in")) << r.out;
}
