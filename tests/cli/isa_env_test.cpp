// KQ_ISA in the CLI: `kq info` reports a forced ISA this CPU lacks instead of
// failing, and the values KQ_ISA accepts are the values kq info, the error
// message and the README list.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::ScopedEnv;

namespace {

using kq::testing::has;

/// The CPU flags of /proc/cpuinfo (Linux spelling: avx2, fma, f16c, avx512f,
/// avx512bw, avx512vl, avx512_vnni): an oracle independent of kq's CPUID code.
std::set<std::string> cpu_flags() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

/// A KQ_ISA value whose instructions this CPU lacks, or "" when it has them all.
std::string missing_isa() {
  const std::set<std::string> fl = cpu_flags();
  auto all = [&](std::initializer_list<const char*> need) {
    for (const char* n : need)
      if (!fl.count(n)) return false;
    return true;
  };
  if (!all({"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"})) return "avx512vnni";
  if (!all({"avx2", "fma", "f16c"})) return "avx2";
  return "";
}

/// The list after "force with KQ_ISA=" in `kq info`, e.g. "ref|avx2|avx512vnni|generic".
std::string listed_values(const std::string& info_out) {
  const std::string key = "force with KQ_ISA=";
  const auto p = info_out.find(key);
  if (p == std::string::npos) return "";
  const auto e = info_out.find_first_of(") \n", p + key.size());
  return info_out.substr(p + key.size(), e - p - key.size());
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> v;
  std::istringstream in(s);
  for (std::string w; std::getline(in, w, sep);) v.push_back(w);
  return v;
}

}  // namespace

TEST(CliIsa, InfoReportsAForcedIsaThisCpuLacks) {
  const std::string isa = missing_isa();
  if (isa.empty()) GTEST_SKIP() << "this CPU has AVX2, FMA, F16C and AVX-512F/BW/VL/VNNI: no KQ_ISA value to force that it lacks";
  ScopedEnv env("KQ_ISA", isa.c_str());
  const auto r = run_kq({"info"});
  EXPECT_EQ(r.status, 0) << r.err;
  // The whole report is still printed ...
  for (const char* line : {"KernelQuant ", "CPU:", "features:", "threads:"})
    EXPECT_TRUE(has(r.out, line)) << line << " missing:\n" << r.out;
  // ... and says clearly that the forced ISA is not available, what would be
  // used without it, and the error the other commands give.
  EXPECT_TRUE(has(r.out, "KQ_ISA=" + isa + " IS NOT USABLE HERE")) << r.out;
  EXPECT_TRUE(has(r.out, "this CPU lacks")) << r.out;
  EXPECT_TRUE(has(r.out, "unset KQ_ISA to use ")) << r.out;
  EXPECT_TRUE(has(r.err, "kq: warning: KQ_ISA=" + isa)) << r.err;
  const auto other = run_kq({"eval", "--model", kq::testing::demo_model().string(), "--text", "README.md"});
  EXPECT_EQ(other.status, 1) << other.err;
  const std::string prefix = "kq: error: ";
  ASSERT_TRUE(other.err.rfind(prefix, 0) == 0) << other.err;
  const std::string error = other.err.substr(prefix.size(), other.err.find('\n') - prefix.size());
  EXPECT_TRUE(has(r.out, error)) << "info does not show the error other commands give (" << error << "):\n" << r.out;
}

TEST(CliIsa, HelpWorksWhateverKqIsaSays) {
  ScopedEnv env("KQ_ISA", "sse9");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"eval", "--help"}, {"bench", "-h"}, {"quantize", "--help"}}) {
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 0) << args[0] << ": " << r.err;
    EXPECT_TRUE(has(r.out, "--")) << r.out;
  }
  // A command that runs still fails up front (once its command line is valid).
  const auto r = run_kq({"eval", "--model", kq::testing::demo_model().string(), "--text", "README.md", "--samples", "1"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "is not an instruction set")) << r.err;
}

TEST(CliIsa, InfoReportsAnUnknownValue) {
  ScopedEnv env("KQ_ISA", "sse9");
  const auto r = run_kq({"info"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "features:")) << r.out;
  EXPECT_TRUE(has(r.out, "KQ_ISA=sse9 IS NOT USABLE HERE")) << r.out;
  EXPECT_TRUE(has(r.out, "is not an instruction set")) << r.out;
}

TEST(CliIsa, ListedValuesAreTheAcceptedValues) {
  std::string list;
  {
    ScopedEnv env("KQ_ISA", nullptr);
    const auto r = run_kq({"info"});
    ASSERT_EQ(r.status, 0) << r.err;
    list = listed_values(r.out);
    ASSERT_FALSE(list.empty()) << r.out;
  }
  const std::vector<std::string> values = split(list, '|');
  // Every listed value is accepted (it may be unavailable on this CPU, never unknown).
  for (const std::string& v : values) {
    ScopedEnv env("KQ_ISA", v.c_str());
    const auto r = run_kq({"info"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(has(r.out, "is not an instruction set")) << "listed value " << v << " rejected:\n" << r.out;
  }
  // "avx512" (no kernels of its own) is neither listed nor accepted, and the
  // error lists exactly the same values.
  EXPECT_EQ(std::count(values.begin(), values.end(), "avx512"), 0) << list;
  {
    ScopedEnv env("KQ_ISA", "avx512");
    const auto r = run_kq({"bench", "--modes", "int8", "--samples", "1", "--no-latency"});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "KQ_ISA='avx512' is not an instruction set")) << r.err;
    std::string joined;
    for (const std::string& v : values) joined += (joined.empty() ? "" : ", ") + v;
    EXPECT_TRUE(has(r.err, "valid values: " + joined + "\n")) << r.err;
  }
  // The README documents the same list.
  const std::string readme = kq::testing::read_all(kq::testing::source_dir() / "README.md");
  EXPECT_TRUE(has(readme, "`KQ_ISA=" + list + "`")) << "README.md does not list KQ_ISA=" << list;
}

TEST(CliIsa, VersionAndUsageErrorsWhateverKqIsaSays) {
  ScopedEnv env("KQ_ISA", "sse9");
  // --version runs no kernel: it works.
  const auto v = run_kq({"--version"});
  EXPECT_EQ(v.status, 0) << v.err;
  EXPECT_FALSE(v.out.empty());
  EXPECT_FALSE(has(v.err, "is not an instruction set")) << v.err;
  // Usage errors are found while parsing, before the ISA check: exit 2 and
  // the usage error, not exit 1 and the KQ_ISA error.
  const std::string model = kq::testing::demo_model().string();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"eval", "--no-such-option"},
           {"eval", "--model"},
           {"quantize", "--mode", "int8"},
           {"generate", "-m", model},
           {"eval", "--samples", "abc"},
           {"--no-such-option"}}) {
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 2) << args[0] << " " << args[1 % args.size()] << ": " << r.err;
    EXPECT_TRUE(r.err.rfind("kq: error: ", 0) == 0) << r.err;
    EXPECT_FALSE(has(r.err, "is not an instruction set")) << r.err;
  }
}
