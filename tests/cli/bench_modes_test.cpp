// `kq bench` fresh-user findings about its modes: the header names the modes
// actually run (with no --modes, the CPU default includes awq), and a
// --calibration that no mode reads is a usage error (as in kq quantize), not
// silently ignored.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/quantize.hpp"

using kq::testing::demo_model;
using kq::testing::run_kq;
using kq::testing::has;

TEST(CliBenchModes, HeaderNamesTheModesRun) {
  // The header printed the option's default (int8 int4 fp8) while the CPU ran int8 int4 awq fp8.
  const auto d = run_kq({"bench", "--samples", "1", "--no-latency", "--threads", "1"});
  ASSERT_TRUE(d.status == 0 || d.status == 3) << d.err;
  EXPECT_TRUE(has(d.out, "\n  modes   int8 int4 awq fp8\n")) << d.out;
  EXPECT_TRUE(has(d.out, "== awq (awq-g128) ==")) << d.out;
  const auto g = run_kq({"bench", "--modes", "fp8", "nf4-b32", "--samples", "1", "--no-latency", "--threads", "1"});
  ASSERT_TRUE(g.status == 0 || g.status == 3) << g.err;
  EXPECT_TRUE(has(g.out, "\n  modes   fp8 nf4-b32\n")) << g.out;
}

TEST(CliBenchModes, CalibrationWithoutAnAwqModeIsAUsageError) {
  const std::string calib = (demo_model() / "demo-calibration.txt").string();
  const auto r = run_kq({"bench", "--modes", "int8", "fp8", "--calibration", calib, "--samples", "1",
                         "--no-latency", "--threads", "1"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: --calibration goes with the AWQ modes")) << r.err;
  EXPECT_TRUE(has(r.err, "--modes has none (int8 fp8)")) << r.err;
  EXPECT_EQ(r.out, "");  // before any mode ran
  // With an AWQ mode it is read, and not warned about.
  const auto a = run_kq({"bench", "--modes", "awq", "--calibration", calib, "--samples", "1", "--no-latency",
                         "--threads", "1"});
  ASSERT_TRUE(a.status == 0 || a.status == 3) << a.err;
  EXPECT_FALSE(has(a.err, "--calibration")) << a.err;
  EXPECT_TRUE(has(a.out, "  calibration " + calib + " (AWQ)")) << a.out;
}

// The list of valid modes in the unknown-mode error left out the adaptive
// modes that kq quantize --mode and kq bench --modes accept.
TEST(CliBenchModes, UnknownModeListsEveryModeTheAdaptiveOnesToo) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"quantize", "-m", demo_model().string(), "--mode", "bogus", "-o", "unused"},
        std::vector<std::string>{"bench", "--modes", "int8", "bogus"}}) {
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 2) << args[0] << ": " << r.err;
    EXPECT_TRUE(has(r.err, "unknown quantization mode 'bogus'; valid modes: ")) << r.err;
    for (const std::string& name : kq::valid_quant_mode_names())
      EXPECT_TRUE(has(r.err, " " + name + ",")) << args[0] << ": " << name << " missing: " << r.err;
    for (const std::string& name : kq::valid_adaptive_mode_names())
      EXPECT_TRUE(has(r.err, " " + name + ",") || has(r.err, " " + name + " (")) << args[0] << ": " << name
                                                                                << " missing: " << r.err;
    EXPECT_TRUE(has(r.err, "adaptive-rP-uniform (adaptive = adaptive-r80; P: the per cent")) << r.err;
  }
}

// Fresh-user finding: "int4-b64" was NF4 and "int4-g64" integer INT4 though the
// help said -bN = -gN, and the summary table showed only the mode as given
// ("int4-b128", its format only in the section header). An ambiguous int4 name
// is a usage error naming both spellings; the table shows what a mode resolved to.
TEST(CliBenchModes, AmbiguousInt4IsRefusedAndTheTableNamesTheResolvedMode) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"quantize", "-m", demo_model().string(), "--mode", "int4-b64", "-o", "unused"},
        std::vector<std::string>{"bench", "--modes", "int8", "int4-b64"}}) {
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 2) << args[0] << ": " << r.err;
    EXPECT_TRUE(has(r.err, "quantization mode 'int4-b64' is ambiguous")) << r.err;
    EXPECT_TRUE(has(r.err, "write nf4-b64 (NF4, blocks of 64, the specification's INT4) or int4-g64 (integer INT4, "
                           "groups of 64)"))
        << r.err;
    EXPECT_EQ(r.out, "");
  }
  const auto h = run_kq({"quantize", "--help"});
  EXPECT_TRUE(has(h.out, "int4 alone is nf4")) << h.out;
  EXPECT_FALSE(has(h.out, "A 4-bit block size may be written -bN or -gN (awq")) << h.out;
  // kq bench --help states the same rule (tester finding: only kq quantize --help did).
  const std::string rule = "int4 alone is nf4 (NF4, the specification's INT4); int4-gN, int4-sym, int4-asym are "
                           "integer INT4 (groups of N, default 128); any other int4-... name (int4-b64, int4-bf16) "
                           "is refused as ambiguous.";
  EXPECT_TRUE(has(h.out, rule)) << h.out;
  const auto bh = run_kq({"bench", "--help"});
  EXPECT_TRUE(has(bh.out, rule)) << bh.out;
  const auto b = run_kq({"bench", "--modes", "int4", "awq-b64", "int8", "--samples", "1", "--no-latency",
                         "--threads", "1"});
  ASSERT_TRUE(b.status == 0 || b.status == 3) << b.err;
  EXPECT_TRUE(has(b.out, "\nint4 (nf4)  ")) << b.out;
  EXPECT_TRUE(has(b.out, "\nawq-b64 (awq-g64)  ")) << b.out;
  EXPECT_TRUE(has(b.out, "\nint8               ")) << b.out;
  // The section headers likewise: the resolved name only when it differs (it was "== int8 (int8) ==").
  EXPECT_TRUE(has(b.out, "\n== int4 (nf4) ==\n")) << b.out;
  EXPECT_TRUE(has(b.out, "\n== awq-b64 (awq-g64) ==\n")) << b.out;
  EXPECT_TRUE(has(b.out, "\n== int8 ==\n")) << b.out;
}
