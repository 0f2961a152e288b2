// Fresh-user finding: GPT-2's config.json keys under transformers' alias
// names (GPT2Config.attribute_map: num_hidden_layers, hidden_size,
// num_attention_heads, max_position_embeddings). "num_attention_heads": 8
// beside "n_head": 4 gave the same perplexity without a word; a config with
// only the aliases was refused. Re-run through `kq eval`.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

/// A copy of the demo model in tmp/name with config.json passed through `edit`.
fs::path edited_demo(const TempDir& tmp, const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  const fs::path m = tmp.path / name;
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  nlohmann::json cfg = nlohmann::json::parse(read_all(m / "config.json"));
  edit(cfg);
  write_text(m / "config.json", cfg.dump());
  return m;
}

CliResult eval_json(const fs::path& m) {
  return run_kq({"eval", "-m", m.string(), "-t", (demo_model() / "demo-eval.txt").string(), "--samples", "1",
                 "--json", "-", "--quiet", "--threads", "1"});
}

TEST(Gpt2ConfigAliases, EvalReadsAliasesAndRefusesConflicts) {
  TempDir tmp;
  const CliResult base = eval_json(demo_model());
  ASSERT_EQ(base.status, 0) << base.err;
  const fs::path aliases = edited_demo(tmp, "aliases", [](nlohmann::json& j) {
    for (const auto& [key, alias] : {std::pair{"n_layer", "num_hidden_layers"}, std::pair{"n_embd", "hidden_size"},
                                     std::pair{"n_head", "num_attention_heads"},
                                     std::pair{"n_positions", "max_position_embeddings"}}) {
      j[alias] = j[key];
      j.erase(key);
    }
  });
  const CliResult a = eval_json(aliases);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["ppl"], nlohmann::json::parse(base.out)["ppl"]);

  const fs::path heads = edited_demo(tmp, "heads", [](nlohmann::json& j) { j["num_attention_heads"] = 8; });
  const CliResult h = eval_json(heads);
  EXPECT_EQ(h.status, 1) << h.err;
  EXPECT_TRUE(has(h.err, "kq: error: " + (heads / "config.json").string() +
                             ": n_head 4 conflicts with num_attention_heads 8"))
      << h.err;

  // A context too small to evaluate names the key the config gives it under.
  const fs::path tiny = edited_demo(tmp, "tiny", [](nlohmann::json& j) {
    j.erase("n_positions");
    j["max_position_embeddings"] = 1;
  });
  const CliResult t = eval_json(tiny);
  EXPECT_EQ(t.status, 1) << t.err;
  EXPECT_TRUE(has(t.err, (tiny / "config.json").string() +
                             ": max_position_embeddings is 1: the model's context is too small to evaluate"))
      << t.err;
}

}  // namespace
}  // namespace kq::testing
