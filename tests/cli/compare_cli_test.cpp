// kq compare: a candidate folder against a reference folder. The figures are checked against
// compare_models run here on the same folders, and against kq bench's for the same mode and text; the
// same folder twice gives KL 0 and 100 % agreement; models that do not tokenize the text alike, and bad
// paths, are refused naming the folders.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "common/hub_pack.hpp"
#include "common/test_data.hpp"
#include "io/utf8_text.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"
#include "models/llama_variant.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::has;
using testing::run_kq;

/// The demo model's evaluation text.
std::string demo_text() { return (testing::demo_model() / "demo-eval.txt").string(); }

/// The --json document `kq compare` wrote to `file`.
json read_json(const fs::path& file) { return json::parse(testing::read_all(file)); }

/// compare_models run here, on 2 threads (as the kq runs of these tests: the per-thread sums of the KL are then
/// added in the same order), on the model of `ref_dir` and `cand` (the model of `cand_dir`, or `quantize`'s
/// quantization of it), with the demo text tokenized by the reference's tokenizer. Only folders that outlive
/// the test process are loaded here: a mapped file is recorded for the process (core/mapped_file_identity.hpp),
/// and a temporary one removed afterwards would be reported as changed to the later tests that check them.
ComparisonResult compare_here(const fs::path& ref_dir, const fs::path& cand_dir, int ctx = 0, int samples = 0,
                              const std::string& quantize = "") {
  const ExecContext two{Device::CPU, 2};
  auto ref = Model::load(ref_dir, two);
  std::unique_ptr<Model> cand;
  if (quantize.empty()) {
    cand = Model::load(cand_dir, two);
  } else {
    QuantizeOptions qo;
    qo.spec = parse_quant_mode(quantize);
    cand = load_quantized(cand_dir, qo, two);
  }
  const std::vector<int32_t> tokens =
      Tokenizer::load(ref_dir).encode(io::read_utf8_text_file(demo_text(), uint64_t(1) << 31));
  return compare_models(*ref, *cand, tokens, ctx, samples);
}

/// `kq compare` with --json into `json_file`, 2 threads, no progress bar, and `extra` options.
testing::CliResult run_compare(const fs::path& ref, const fs::path& cand, const fs::path& json_file,
                               const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args{"compare", ref.string(), cand.string(), "-t",        demo_text(),
                                "--quiet", "--threads",  "2",          "--json", json_file.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_kq(args);
}

/// Expects the figures of a --json document to be those of `c`, within 1e-9 (relative for the
/// perplexities).
void expect_figures(const json& j, const ComparisonResult& c) {
  EXPECT_NEAR(j["reference"]["ppl"].get<double>(), c.ppl_ref, 1e-9 * c.ppl_ref);
  EXPECT_NEAR(j["candidate"]["ppl"].get<double>(), c.ppl_cand, 1e-9 * c.ppl_cand);
  EXPECT_NEAR(j["reference"]["nll"].get<double>(), c.nll_ref, 1e-9 * c.nll_ref);
  EXPECT_NEAR(j["candidate"]["nll"].get<double>(), c.nll_cand, 1e-9 * c.nll_cand);
  EXPECT_NEAR(j["kl_div"].get<double>(), c.mean_kl, 1e-9);
  EXPECT_NEAR(j["top1_agreement_pct"].get<double>(), c.top1_agreement * 100, 1e-9);
  EXPECT_EQ(j["scored_tokens"].get<int64_t>(), c.scored_tokens);
  EXPECT_EQ(j["windows"].get<int64_t>(), c.windows);
  EXPECT_EQ(j["ctx"].get<int>(), c.ctx);
}

TEST(CliCompare, TheSameModelTwiceHasKlZeroAndFullAgreement) {
  testing::TempDir tmp;
  // The same folder (loaded once), and a copy of it (two models, loaded apart: their logits are the same bits).
  const fs::path copy = tmp.path / "copy";
  fs::copy(testing::demo_model(), copy, fs::copy_options::recursive);
  for (const fs::path& cand : {testing::demo_model(), copy}) {
    const fs::path out = tmp.path / "same.json";
    const auto r = run_compare(testing::demo_model(), cand, out);
    ASSERT_EQ(r.status, 0) << r.err;
    const json j = read_json(out);
    EXPECT_EQ(j["kl_div"].get<double>(), 0.0) << cand;
    EXPECT_EQ(j["top1_agreement_pct"].get<double>(), 100.0) << cand;
    EXPECT_EQ(j["ppl_delta_pct"].get<double>(), 0.0) << cand;
    EXPECT_EQ(j["reference"]["ppl"].get<double>(), j["candidate"]["ppl"].get<double>());
    EXPECT_EQ(j["weight_reduction_pct"].get<double>(), 0.0);
    EXPECT_TRUE(has(r.out, "0.00000 nats/token") && has(r.out, "100.00 %") && has(r.out, "+0.00 %")) << r.out;
    // The perplexity is kq eval's.
    const fs::path eval_json = tmp.path / "eval.json";
    const auto e = run_kq({"eval", "-m", cand.string(), "-t", demo_text(), "--quiet", "--threads", "2", "--json",
                           eval_json.string()});
    ASSERT_EQ(e.status, 0) << e.err;
    EXPECT_NEAR(read_json(eval_json)["ppl"].get<double>(), j["candidate"]["ppl"].get<double>(),
                1e-9 * j["candidate"]["ppl"].get<double>());
  }
}

TEST(CliCompare, AnInt8FolderGivesCompareModelsAndBenchFigures) {
  testing::TempDir tmp;
  const fs::path q8 = tmp.path / "q8", out = tmp.path / "c.json", bench_out = tmp.path / "b.json";
  const auto q = run_kq({"quantize", "-m", testing::demo_model().string(), "--mode", "int8", "-o", q8.string()});
  ASSERT_EQ(q.status, 0) << q.err;
  const auto r = run_compare(testing::demo_model(), q8, out);
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = read_json(out);

  // The folder holds the int8 weights quantize_model gives the demo model (reloading is bit-identical).
  const ComparisonResult c = compare_here(testing::demo_model(), testing::demo_model(), 0, 0, "int8");
  expect_figures(j, c);
  EXPECT_GT(c.mean_kl, 0.0);  // int8 changes the distributions, a little
  EXPECT_GT(c.top1_agreement, 0.9);
  EXPECT_LT(c.top1_agreement, 1.0);
  // As printed.
  for (const std::string& s : {fmt::format("{:.4f}", c.ppl_ref), fmt::format("{:.4f}", c.ppl_cand),
                               fmt::format("{:.5f} nats/token", c.mean_kl),
                               fmt::format("{:.2f} %", c.top1_agreement * 100),
                               fmt::format("{} of ctx {} ({} scored tokens)", c.windows, c.ctx, c.scored_tokens)})
    EXPECT_TRUE(has(r.out, s)) << s << "\n" << r.out;

  // kq bench quantizes the same model in memory to the same int8 weights: the same figures, and its
  // weight bytes (before: the on-disk dtype; after: as held in memory).
  const auto b = run_kq({"bench", "--modes", "int8", "--no-latency", "-t", demo_text(), "--quiet", "--threads", "2",
                         "--json", bench_out.string()});
  ASSERT_EQ(b.status, 0) << b.err;
  const json m = read_json(bench_out)["results"][0];
  EXPECT_NEAR(m["ppl_before"].get<double>(), c.ppl_ref, 1e-9 * c.ppl_ref);
  EXPECT_NEAR(m["ppl_after"].get<double>(), c.ppl_cand, 1e-9 * c.ppl_cand);
  EXPECT_NEAR(m["kl_div"].get<double>(), j["kl_div"].get<double>(), 1e-9);
  EXPECT_NEAR(m["top1_agreement_pct"].get<double>(), j["top1_agreement_pct"].get<double>(), 1e-9);
  EXPECT_NEAR(m["ppl_delta_pct"].get<double>(), j["ppl_delta_pct"].get<double>(), 1e-9);
  EXPECT_EQ(m["weight_bytes_before"].get<size_t>(), j["reference"]["weight_bytes"].get<size_t>());
  EXPECT_EQ(m["weight_bytes_after"].get<size_t>(), j["candidate"]["weight_bytes"].get<size_t>());

  // The rest of the document.
  EXPECT_EQ(j["reference"]["model"], testing::demo_model().string());
  EXPECT_EQ(j["candidate"]["model"], q8.string());
  EXPECT_EQ(j["reference"]["weight_formats"], json({{"f32", 8}}));
  EXPECT_EQ(j["candidate"]["weight_formats"], json({{"int8", 8}}));
  EXPECT_EQ(j["reference"]["weight_bytes_counted"], "on-disk dtype");
  EXPECT_EQ(j["candidate"]["weight_bytes_counted"], "in memory");
  const double ref_bytes = j["reference"]["weight_bytes"].get<double>();
  const double cand_bytes = j["candidate"]["weight_bytes"].get<double>();
  EXPECT_NEAR(j["weight_reduction_pct"].get<double>(), (1 - cand_bytes / ref_bytes) * 100, 1e-9);
  EXPECT_LT(cand_bytes, ref_bytes);
  EXPECT_NEAR(j["ppl_delta_pct"].get<double>(), (c.ppl_cand / c.ppl_ref - 1) * 100, 1e-9);
  EXPECT_EQ(j["samples"], 0);
  EXPECT_EQ(j["text"], demo_text());
  EXPECT_EQ(j["threads"], 2);
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_GT(j["text_tokens"].get<int64_t>(), c.scored_tokens);
  EXPECT_TRUE(has(r.out, "wrote " + out.string())) << r.out;

  // --samples and --ctx reach compare_models; --json - puts the JSON alone on standard output.
  const auto s = run_kq({"compare", testing::demo_model().string(), q8.string(), "-t", demo_text(), "--quiet",
                         "--threads", "2", "--ctx", "64", "--samples", "3", "--json", "-"});
  ASSERT_EQ(s.status, 0) << s.err;
  const json js = json::parse(s.out);
  expect_figures(js, compare_here(testing::demo_model(), testing::demo_model(), 64, 3, "int8"));
  EXPECT_EQ(js["windows"], 3);
  EXPECT_EQ(js["samples"], 3);
  EXPECT_TRUE(has(s.err, "KL(ref||cand)")) << s.err;  // the report went to standard error
}

TEST(CliCompare, ModelsThatDoNotShareATokenizerAreRefusedNamingBoth) {
  testing::TempDir tmp;
  const fs::path ref = testing::demo_model();
  // Another vocabulary size in config.json.
  const fs::path other_vocab = tmp.path / "other-vocab";
  fs::copy(ref, other_vocab, fs::copy_options::recursive);
  {
    json cfg = read_json(other_vocab / "config.json");
    ASSERT_EQ(cfg["vocab_size"], 8192);
    cfg["vocab_size"] = 8000;
    std::ofstream(other_vocab / "config.json") << cfg.dump(2);
  }
  auto r = run_compare(ref, other_vocab, tmp.path / "x.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "reference '" + ref.string() + "'") && has(r.err, "candidate '" + other_vocab.string() + "'") &&
              has(r.err, "vocab_size 8192") && has(r.err, "vs 8000"))
      << r.err;
  EXPECT_FALSE(fs::exists(tmp.path / "x.json"));

  // The same size, but two tokens' ids swapped in tokenizer.json: the text's ids differ at the first of them.
  const fs::path swapped = tmp.path / "swapped";
  fs::copy(ref, swapped, fs::copy_options::recursive);
  const Tokenizer tok = Tokenizer::load(ref);
  const int32_t the = *tok.token_to_id("\xC4\xA0the"), of = *tok.token_to_id("\xC4\xA0of");  // "Ġthe", "Ġof"
  {
    json t = read_json(swapped / "tokenizer.json");
    t["model"]["vocab"]["\xC4\xA0the"] = of;
    t["model"]["vocab"]["\xC4\xA0of"] = the;
    std::ofstream(swapped / "tokenizer.json") << t.dump();
  }
  const std::vector<int32_t> ids = tok.encode(io::read_utf8_text_file(demo_text(), uint64_t(1) << 31));
  size_t first = 0;
  while (first < ids.size() && ids[first] != the && ids[first] != of) ++first;
  ASSERT_LT(first, ids.size());
  r = run_compare(ref, swapped, tmp.path / "x.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "reference '" + ref.string() + "'") && has(r.err, "candidate '" + swapped.string() + "'") &&
              has(r.err, "do not share a tokenizer") && has(r.err, fmt::format("at token {}:", first)) &&
              has(r.err, fmt::format("id {} ", ids[first])) && has(r.err, fmt::format("id {} ", ids[first] == the ? of : the)))
      << r.err;
  EXPECT_FALSE(fs::exists(tmp.path / "x.json"));
}

TEST(CliCompare, BadPathsAreNamed) {
  testing::TempDir tmp;
  const std::string demo = testing::demo_model().string(), missing = (tmp.path / "no-such-model").string();
  auto r = run_compare(demo, missing, tmp.path / "x.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "candidate '" + missing + "' is not a model folder (not found)")) << r.err;
  r = run_compare(missing, demo, tmp.path / "x.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "reference '" + missing + "' is not a model folder (not found)")) << r.err;
  r = run_compare(demo, demo_text(), tmp.path / "x.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "candidate '" + demo_text() + "' is not a model folder (not a folder)")) << r.err;
  // A folder without a model: the model load names the file it lacks.
  fs::create_directories(tmp.path / "empty");
  r = run_compare(demo, tmp.path / "empty", tmp.path / "x.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, (tmp.path / "empty" / "config.json").string())) << r.err;
  r = run_kq({"compare", demo, demo, "-t", (tmp.path / "no-such.txt").string()});
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "--text: '" + (tmp.path / "no-such.txt").string() + "' not found")) << r.err;
  // --json must not replace a file of either folder.
  const fs::path copy = tmp.path / "copy";
  fs::copy(testing::demo_model(), copy, fs::copy_options::recursive);
  const std::string before = testing::read_all(copy / "config.json");
  r = run_compare(demo, copy, copy / "config.json");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(has(r.err, "is a file of the candidate folder '" + copy.string() + "'")) << r.err;
  EXPECT_EQ(testing::read_all(copy / "config.json"), before);
  r = run_compare(copy, demo, copy / "config.json");
  EXPECT_TRUE(has(r.err, "is a file of the reference folder '" + copy.string() + "'")) << r.err;
  // Usage errors (exit status 2): a folder or the text missing.
  r = run_kq({"compare", demo, "-t", demo_text()});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "candidate is required")) << r.err;
  r = run_kq({"compare", demo, demo});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "--text is required")) << r.err;
}

TEST(CliCompare, IsListedInTheHelp) {
  const auto r = run_kq({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(has(r.out, "  compare    ") && has(r.out, "A candidate model (e.g. quantized) against a reference"))
      << r.out;
  const auto c = run_kq({"compare", "--help"});
  EXPECT_EQ(c.status, 0);
  EXPECT_TRUE(has(c.out, "compare [OPTIONS] reference candidate")) << c.out;
}

/// Whether `name` is the weight of one of llama-small's quantizable linear layers.
bool is_linear_weight(const std::string& name) {
  return name.starts_with("model.layers.") && name.ends_with("_proj.weight");
}

TEST(CliCompare, APreQuantizedGptqCheckpointAgainstItsOriginal) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  // llama-small's linear layers as a GPTQ v1 (sym, group 128) checkpoint, tests/common/hub_pack.hpp.
  const fs::path hub = testing::llama_small_variant(
      tmp.path / "gptq",
      [](json& j) {
        j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4},  {"group_size", 128},
                                    {"desc_act", false},      {"sym", true}, {"checkpoint_format", "gptq"}};
      },
      [](std::map<std::string, Tensor>& t) {
        std::map<std::string, Tensor> out;
        for (auto& [name, w] : t) {
          if (!is_linear_weight(name)) {
            out[name] = w;
            continue;
          }
          const std::string module = name.substr(0, name.size() - std::string(".weight").size());
          const testing::HubCodes c = testing::hub_codes_rtn(w.to_f32(), 128);
          for (auto& [n, q] : testing::hub_layer_tensors(c, module, testing::HubFormat::GptqV1)) out[n] = q;
        }
        t = std::move(out);
      });
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"})
    fs::copy_file(testing::llama_small_dir() / f, hub / f);
  const fs::path out = tmp.path / "c.json";
  const auto r = run_compare(testing::llama_small_dir(), hub, out, {"--ctx", "128", "--samples", "4"});
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = read_json(out);
  // (the folder is temporary: not loaded here, compare_here says why) The perplexities are kq eval's.
  for (const auto& [dir, side] : {std::pair{testing::llama_small_dir(), "reference"}, std::pair{hub, "candidate"}}) {
    const fs::path eval_json = tmp.path / "eval.json";
    const auto e = run_kq({"eval", "-m", dir.string(), "-t", demo_text(), "--ctx", "128", "--samples", "4", "--quiet",
                           "--threads", "2", "--json", eval_json.string()});
    ASSERT_EQ(e.status, 0) << e.err;
    const double ppl = read_json(eval_json)["ppl"].get<double>();
    EXPECT_NEAR(j[side]["ppl"].get<double>(), ppl, 1e-9 * ppl) << side;
  }
  EXPECT_EQ(j["windows"], 4);
  EXPECT_EQ(j["ctx"], 128);
  EXPECT_GT(j["kl_div"].get<double>(), 0.0);
  EXPECT_GT(j["top1_agreement_pct"].get<double>(), 50.0);  // int4-g128 of a working model
  EXPECT_LT(j["top1_agreement_pct"].get<double>(), 100.0);
  EXPECT_EQ(j["candidate"]["weight_formats"], json({{"int4-g128", 28}}));
  EXPECT_EQ(j["reference"]["weight_bytes_counted"], "on-disk dtype");  // BF16 on disk
  EXPECT_GT(j["weight_reduction_pct"].get<double>(), 0.0);

  // Two different models of one tokenizer (the shared models share one): gpt2-small's context is 512, the
  // demo model's 256, so the windows are 256 tokens.
  KQ_REQUIRE_SHARED("models/gpt2-small");
  const fs::path small = testing::shared_dir() / "models/gpt2-small";
  const auto g = run_compare(small, testing::demo_model(), out);
  ASSERT_EQ(g.status, 0) << g.err;
  const json jg = read_json(out);
  expect_figures(jg, compare_here(small, testing::demo_model()));
  EXPECT_EQ(jg["ctx"], 256);
  // A --ctx beyond the shorter context is named with its model, before any model is loaded.
  const auto l = run_kq({"compare", small.string(), testing::demo_model().string(), "-t", demo_text(), "--ctx", "300"});
  EXPECT_EQ(l.status, 1);
  EXPECT_TRUE(has(l.err, "--ctx 300 is longer than the candidate model's context, 256 positions (n_positions in " +
                             (testing::demo_model() / "config.json").string()))
      << l.err;
}

}  // namespace
}  // namespace kq
