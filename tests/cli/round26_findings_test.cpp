// Fresh-user findings, round 26 (tester26b.md), as a `kq` user meets them:
// 1. kq quantize / kq bench --mode adaptive with --keep: the target is of the planned layers; the plan header says
//    how many are planned and kept, and a line (bench: the "kept" line and JSON keys) gives all layers' reduction;
// 5. kq eval / kq compare --json name the kq version, as kq bench --json does;
// 6. kq tokenize --decode --json has the decoded "text";
// 8, 9. kq info's CPU fp8 line says W8A8; kq help help / kq help --help show help's own usage; kq info extra is
//    said in kq's words; quantize --help lists the adaptive suffixes; eval / generate -m name kq and hub folders.
// (Staging folders, n_layer below the quantized modules, non-linear modules: tests/api/quantized_folder_checks.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

nlohmann::json json_file(const fs::path& p) { return nlohmann::json::parse(std::ifstream(p)); }

TEST(CliRound26, AdaptivePlanWithKeepSaysWhatTheTargetCovers) {
  TempDir tmp;
  const std::string model = demo_model().string();
  const CliResult r = run_kq({"quantize", "-m", model, "--mode", "adaptive", "--keep", "c_fc", "-o",
                              (tmp.path / "q").string(), "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "target 80 % of the 6 planned linear layers' f32 bytes removed (2 kept by --keep are not "
                         "in the budget)"))
      << r.out;
  EXPECT_TRUE(has(r.out, "  with the 2 layers kept by --keep: 1.51 MiB -> ")) << r.out;
  // Without --keep: no such line, and the header counts every planned layer.
  const CliResult w =
      run_kq({"quantize", "-m", model, "--mode", "adaptive", "-o", (tmp.path / "w").string(), "--threads", "1"});
  ASSERT_EQ(w.status, 0) << w.err;
  EXPECT_TRUE(has(w.out, "target 80 % of the 8 planned linear layers' f32 bytes removed):")) << w.out;
  EXPECT_FALSE(has(w.out, "kept by --keep")) << w.out;

  const std::string json = (tmp.path / "b.json").string();
  const CliResult b = run_kq({"bench", "--modes", "adaptive", "int8", "--keep", "c_fc", "--samples", "1",
                              "--no-latency", "--threads", "1", "--json", json});
  ASSERT_TRUE(b.status == 0 || b.status == 3) << b.err;
  EXPECT_TRUE(has(b.out, "  kept         2 linear layers by --keep (")) << b.out;
  const nlohmann::json j = json_file(json);
  EXPECT_EQ(j["results"][0]["linear_kept_layers"], 2);
  EXPECT_GT(j["results"][0]["linear_kept_bytes"].get<size_t>(), 0u);
  EXPECT_EQ(j["results"][1]["linear_kept_layers"], 0);  // not an adaptive mode
}

TEST(CliRound26, EvalAndCompareJsonNameTheVersion) {
  TempDir tmp;
  const CliResult v = run_kq({"--version"});
  ASSERT_EQ(v.status, 0) << v.err;
  const std::string version = v.out.substr(0, v.out.find('\n'));
  const std::string model = demo_model().string(), text = (demo_model() / "demo-eval.txt").string();
  const std::string e = (tmp.path / "e.json").string(), c = (tmp.path / "c.json").string();
  const CliResult er = run_kq({"eval", "-m", model, "-t", text, "--samples", "1", "--threads", "1", "--json", e});
  ASSERT_EQ(er.status, 0) << er.err;
  EXPECT_EQ(json_file(e)["kq_version"], version);
  const CliResult cr =
      run_kq({"compare", model, model, "-t", text, "--samples", "1", "--threads", "1", "--json", c});
  ASSERT_EQ(cr.status, 0) << cr.err;
  EXPECT_EQ(json_file(c)["kq_version"], version);
}

TEST(CliRound26, TokenizeDecodeJsonHasTheText) {
  const CliResult r = run_kq({"tokenize", "--decode", "--json", "-", "40 5677"});
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ids"], nlohmann::json::array({40, 5677}));
  EXPECT_EQ(j["text"], "Hello");
  const CliResult e = run_kq({"tokenize", "--json", "-", "Hello"});  // encoding: no "text" (the input is)
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_FALSE(nlohmann::json::parse(e.out).contains("text")) << e.out;
}

TEST(CliRound26, InfoAndHelpWording) {
  const CliResult i = run_kq({"info"});
  ASSERT_EQ(i.status, 0) << i.err;
  if (has(i.out, "FP8 tensor cores not available")) {
    EXPECT_TRUE(has(i.out, "W8A8, the activations quantized to FP8 per token")) << i.out;
  }
  EXPECT_FALSE(has(i.out, "FP8 weights decoded to FP32")) << i.out;

  const CliResult hh = run_kq({"help", "help"});
  ASSERT_EQ(hh.status, 0) << hh.err;
  EXPECT_TRUE(has(hh.out, "kq help [OPTIONS] [COMMAND]")) << hh.out;
  const CliResult hf = run_kq({"help", "--help"});
  ASSERT_EQ(hf.status, 0) << hf.err;
  EXPECT_EQ(hf.out, hh.out);

  const CliResult x = run_kq({"info", "extra"});
  EXPECT_EQ(x.status, 2);
  EXPECT_TRUE(has(x.err, "kq: error: unexpected argument extra for 'kq info' (see 'kq info --help'")) << x.err;
  EXPECT_FALSE(has(x.err, "The following argument")) << x.err;

  const CliResult q = run_kq({"quantize", "--help"});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_TRUE(has(q.out, "-entropy (default), -error,")) << q.out;
  for (const char* cmd : {"eval", "generate"}) {
    const CliResult h = run_kq({cmd, "--help"});
    ASSERT_EQ(h.status, 0) << h.err;
    EXPECT_TRUE(has(h.out, "a kq")) << cmd << h.out;
    EXPECT_TRUE(has(h.out, "AutoAWQ / AutoGPTQ / bitsandbytes")) << cmd << h.out;
  }
}

}  // namespace
}  // namespace kq::testing
