// Quantized folders a fresh user edited by hand (fresh-user findings): a
// linear layer that lost its bias loaded and evaluated with another
// perplexity; quantization_config.mode / keep_patterns / quantize_lm_head
// that contradict the folder (or are not even of the right type) were
// accepted. And adaptive plans reported the bits per weight of their
// quantized layers only.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "api/generation_config.hpp"
#include "common/checksum_record.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/adaptive.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kDemo = kq::testing::demo_model();

using kq::testing::has;

/// The FormatError Model::load(dir) throws ("" and a test failure when none).
std::string load_error(const fs::path& dir) {
  try {
    Model::load(dir);
  } catch (const FormatError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a FormatError loading " << dir;
  return {};
}

/// gpt2-tiny quantized to `mode` (AWQ with the demo calibration text) and saved to tmp/name.
fs::path quantized_folder(const TempDir& tmp, const std::string& mode) {
  const fs::path out = tmp.path / mode;
  auto m = Model::load(kDemo);
  QuantizeOptions o;
  o.spec = parse_quant_mode(mode);
  if (o.spec.awq) {
    std::ifstream f(kDemo / "demo-calibration.txt");
    std::stringstream text;
    text << f.rdbuf();
    o.calibration.tokens = Tokenizer::load(kDemo).encode(text.str());
    o.calibration.grid = 2;
  }
  quantize_model(*m, o);
  save_quantized_model(*m, o, out);
  return out;
}

/// Rewrites dir/model.safetensors (header and offsets) with `edit` applied to
/// its tensors and metadata, and records the tensors' checksums again (the
/// checks behind them are tested, as if kq had written the edited tensors).
template <class F>
void rewrite_weights(const fs::path& dir, F&& edit) {
  std::map<std::string, Tensor> t;
  std::map<std::string, std::string> meta;
  {
    const TensorStore store = TensorStore::open_dir(dir);
    for (const auto& n : store.names()) t[n] = store.get(n).clone();
    meta = store.metadata();
  }
  edit(t, meta);
  write_safetensors(dir / "model.safetensors", t, meta);
  kq::testing::record_checksums_again(dir);
}

/// Applies `edit` to the quantization record in config.json and (when
/// `also_weights`) in the 'kq_quantization' safetensors metadata.
template <class F>
void edit_record(const fs::path& dir, F&& edit, bool also_weights = true) {
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  edit(cfg["quantization_config"]);
  { std::ofstream(dir / "config.json") << cfg.dump(2); }
  if (also_weights)
    rewrite_weights(dir, [&](auto&, std::map<std::string, std::string>& meta) {
      nlohmann::json q = nlohmann::json::parse(meta.at("kq_quantization"));
      edit(q);
      meta["kq_quantization"] = q.dump();
    });
}

}  // namespace

// It loaded with rc 0 and another perplexity (the layer ran without its bias);
// the unquantized model with a missing bias was already refused.
TEST(QuantizedFolderChecks, LinearThatLostItsBiasIsAMissingTensor) {
  TempDir tmp;
  const std::string bias = "transformer.h.0.mlp.c_fc.bias";
  for (const std::string mode : {"int8", "nf4", "fp8", "awq"}) {
    const fs::path dir = quantized_folder(tmp, mode);
    EXPECT_NO_THROW(Model::load(dir)) << mode;
    rewrite_weights(dir, [&](std::map<std::string, Tensor>& t, auto&) { ASSERT_EQ(t.erase(bias), 1u) << mode; });
    const std::string msg = load_error(dir);
    EXPECT_TRUE(has(msg, dir.string())) << msg;
    EXPECT_TRUE(has(msg, "missing tensor '" + bias + "' (expected shape [512])")) << mode << ": " << msg;
  }
}

// mode "int3", "nf4" on an int8 folder, mode removed, keep_patterns ["("] or
// "x", quantize_lm_head true with lm_head not quantized: all were accepted.
TEST(QuantizedFolderChecks, DescriptiveFieldsAreCheckedAgainstTheModules) {
  TempDir tmp;
  const fs::path base = quantized_folder(tmp, "int8");
  int n = 0;
  auto expect_refused = [&](auto edit, const std::string& field, const std::string& want, bool also_weights = true) {
    const fs::path dir = tmp.path / fmt::format("case{}", n++);
    fs::copy(base, dir);
    edit_record(dir, edit, also_weights);
    const std::string msg = load_error(dir);
    EXPECT_TRUE(has(msg, (dir / "config.json").string() + ": quantization_config." + field)) << msg;
    EXPECT_TRUE(has(msg, want)) << msg;
  };
  using json = nlohmann::json;
  expect_refused([](json& q) { q["mode"] = "int3"; }, "mode", "unknown quantization mode 'int3'");
  expect_refused([](json& q) { q["mode"] = "nf4"; }, "mode",
                 "mode is 'nf4' but module 'transformer.h.0.attn.c_attn' is \"int8\"");
  expect_refused([](json& q) { q["mode"] = 8; }, "mode", "mode must be a string, not 8");
  expect_refused([](json& q) { q.erase("mode"); }, "mode", "mode is missing");
  expect_refused([](json& q) { q["keep_patterns"] = json::array({"("}); }, "keep_patterns",
                 "keep_patterns[0] '(' is not a valid regular expression");
  // Hostile patterns (std::regex overflowed its stack or backtracked for hours): refused within kq's bounds.
  expect_refused([](json& q) { q["keep_patterns"] = json::array({std::string(20000, '(') + std::string(20000, ')')}); },
                 "keep_patterns", "keep_patterns[0] a pattern of 40000 bytes is too long");
  expect_refused([](json& q) { q["keep_patterns"] = json::array({"(.*)*x$"}); }, "keep_patterns",
                 "keep_patterns[0] ");
  expect_refused([](json& q) { q["keep_patterns"] = "x"; }, "keep_patterns",
                 "keep_patterns must be an array of regular expression strings, not \"x\"");
  expect_refused([](json& q) { q["keep_patterns"] = json::array({"mlp"}); }, "keep_patterns",
                 "keep_patterns[0] 'mlp' matches module 'transformer.h.0.mlp.c_fc', which is quantized");
  expect_refused([](json& q) { q["quantize_lm_head"] = true; }, "quantize_lm_head",
                 "quantize_lm_head is true but module 'lm_head' is not quantized");
  expect_refused([](json& q) { q["quantize_lm_head"] = "no"; }, "quantize_lm_head",
                 "quantize_lm_head must be true or false, not \"no\"");
  // Only config.json edited: the weights' own record disagrees.
  {
    const fs::path dir = tmp.path / "config-only";
    fs::copy(base, dir);
    edit_record(dir, [](json& q) { q["keep_patterns"] = json::array({"lm_"}); }, /*also_weights=*/false);
    const std::string msg = load_error(dir);
    EXPECT_TRUE(has(msg, "keep_patterns is [] in model.safetensors ('kq_quantization' metadata) but [\"lm_\"] in "
                         "config.json quantization_config: the folder mixes two quantizations"))
        << msg;
  }
  // Sound edits: a keep pattern that covers lm_head only, with quantize_lm_head true.
  {
    const fs::path dir = tmp.path / "sound";
    fs::copy(base, dir);
    edit_record(dir, [](json& q) {
      q["keep_patterns"] = json::array({"lm_head"});
      q["quantize_lm_head"] = true;
    });
    EXPECT_NO_THROW(Model::load(dir));
  }
}

// An adaptive folder says "mixed"; a single mode name there must match every module.
TEST(QuantizedFolderChecks, AdaptiveFolderIsMixed) {
  TempDir tmp;
  auto m = Model::load(kDemo);
  AdaptivePlan plan;
  quantize_model_adaptive(*m, parse_adaptive_mode("adaptive-r80"), &plan);
  const fs::path dir = tmp.path / "adaptive";
  save_quantized_model(*m, plan.to_options(), dir);
  const nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  ASSERT_EQ(cfg["quantization_config"]["mode"], "mixed");
  EXPECT_NO_THROW(Model::load(dir));
  std::set<std::string> modes;
  for (const auto& [k, v] : cfg["quantization_config"]["modules"].items()) modes.insert(v.get<std::string>());
  ASSERT_GT(modes.size(), 1u) << "the plan should mix formats on gpt2-tiny";
  edit_record(dir, [](nlohmann::json& q) { q["mode"] = "int8"; });
  const std::string msg = load_error(dir);
  EXPECT_TRUE(has(msg, "quantization_config.mode is 'int8' but module")) << msg;
}

// "adaptive-r0.0001" on gpt2-tiny keeps 7 of 8 planned layers in FP32 but
// reported 8.25 bits/weight (the one INT8 layer's). The figure covers the
// same planned layers as the reduction.
TEST(QuantizedFolderChecks, AdaptiveBitsPerWeightCoverEveryPlannedLayer) {
  auto m = Model::load(kDemo);
  AdaptivePlan plan;
  const QuantizeReport r = quantize_model_adaptive(*m, parse_adaptive_mode("adaptive-r0.0001"), &plan);
  size_t bytes = 0;
  int64_t elements = 0, fp32 = 0;
  for (const LayerAnalysis& l : plan.layers) {
    bytes += l.choice().bytes;
    elements += l.N * l.K;
    fp32 += l.choice().spec ? 0 : 1;
  }
  ASSERT_GT(fp32, 0) << "the plan should keep layers in FP32";
  EXPECT_DOUBLE_EQ(r.bits_per_weight(), 8.0 * double(bytes) / double(elements));
  EXPECT_GT(r.bits_per_weight(), 20.0);
  EXPECT_LT(r.bits_per_weight(), 32.0);
}

// tester26b #3: a copy of kq quantize's staging folder (its .kq-staging marker still there: copied while being
// written, or left by a killed kq) loaded with rc 0 though files written last may be missing.
TEST(QuantizedFolderChecks, StagingFolderIsRefused) {
  TempDir tmp;
  const fs::path dir = quantized_folder(tmp, "int8");
  EXPECT_NO_THROW(Model::load(dir));
  { std::ofstream(dir / ".kq-staging"); }
  const std::string msg = load_error(dir);
  EXPECT_TRUE(has(msg, dir.string() + ": the folder holds .kq-staging: it is an unfinished kq quantize output"))
      << msg;
  EXPECT_TRUE(has(msg, "remove it and run kq quantize again")) << msg;
  // Every other reader of a model folder refuses it with the same message (io::check_not_staging_folder): the
  // tokenizer, generation_config.json (absent from an unfinished copy: not "no file"), the side-file check.
  const auto error_of = kq::testing::error_of<FormatError>;
  EXPECT_EQ(error_of([&] { (void)Tokenizer::load(dir); }), msg);
  EXPECT_EQ(error_of([&] { (void)load_eos_token_ids(dir, 0); }), msg);
  EXPECT_EQ(error_of([&] { (void)load_generation_defaults(dir); }), msg);
  EXPECT_EQ(error_of([&] { check_quantized_side_files(dir, 0); }), msg);
  fs::remove(dir / ".kq-staging");
  EXPECT_NO_THROW((void)Tokenizer::load(dir));  // the same folder without the marker reads
  EXPECT_NO_THROW((void)load_eos_token_ids(dir, 0));
  EXPECT_NO_THROW((void)load_generation_defaults(dir));
}

// tester26b #4: n_layer lowered in a kq folder whose quantization_config lists the dropped layer's modules loaded
// with a warning only (and another perplexity); kq quantize never lists a layer the model lacks.
TEST(QuantizedFolderChecks, LayerCountBelowTheQuantizedModulesIsAnError) {
  TempDir tmp;
  const fs::path dir = quantized_folder(tmp, "int8");
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  ASSERT_EQ(cfg["n_layer"], 2);
  cfg["n_layer"] = 1;
  { std::ofstream(dir / "config.json") << cfg.dump(2); }
  const std::string msg = load_error(dir);
  EXPECT_TRUE(has(msg, "config.json: n_layer = 1 but quantization_config.modules lists 4 modules of layers 1 to 1 "
                       "(e.g. 'transformer.h.1."))
      << msg;
  EXPECT_TRUE(has(msg, "put back the n_layer it wrote")) << msg;
}

// tester26b #7: a module that is no linear layer (the token embedding, a LayerNorm) listed as quantized in both
// records was ignored silently; a module the model lacks was already an error.
TEST(QuantizedFolderChecks, NonLinearModuleListedAsQuantizedIsAnError) {
  TempDir tmp;
  const fs::path base = quantized_folder(tmp, "int8");
  for (const std::string module : {"transformer.wte", "transformer.h.0.ln_1"}) {
    const fs::path dir = tmp.path / module;
    fs::copy(base, dir);
    edit_record(dir, [&](nlohmann::json& q) { q["modules"][module] = "int8"; });
    const std::string msg = load_error(dir);
    EXPECT_TRUE(has(msg, "quantization_config.modules['" + module + "'] ('int8'): not a linear layer of the gpt2 "
                         "architecture"))
        << msg;
  }
}
