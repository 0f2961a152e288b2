// Regression tests for what a fresh user broke (bad input must give a clear
// error, never a crash, data loss or a silent wrong answer).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace fs = std::filesystem;
using namespace kq;

namespace {

using kq::testing::demo_model;

fs::path copy_demo(const fs::path& to) {
  fs::create_directories(to);
  for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt"})
    fs::copy_file(demo_model() / f, to / f);
  return to;
}

void set_config(const fs::path& dir, const std::string& key, const nlohmann::json& v) {
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  cfg[key] = v;
  std::ofstream(dir / "config.json", std::ios::trunc) << cfg.dump();
}

using kq::testing::error_of;

}  // namespace

TEST(TesterFindings, HugeThreadCountIsAnErrorNotACrash) {
  ExecContext ctx;
  ctx.threads = 100000;
  EXPECT_NE(error_of<InvalidArgument>([&] { Model::load(demo_model(), ctx); }).find("ExecContext::threads"),
            std::string::npos);
}

TEST(TesterFindings, OverwriteNeverDeletesTheSourceOrANonModelFolder) {
  kq::testing::TempDir tmp;
  const fs::path parent = tmp.path / "p";
  const fs::path src = copy_demo(parent / "src");
  std::ofstream(parent / "notes.txt") << "keep me";
  auto m = Model::load(src);
  QuantizeOptions o;
  quantize_model(*m, o);
  EXPECT_NE(error_of<InvalidArgument>([&] { save_quantized_model(*m, o, parent, true); }).find("contains the source"),
            std::string::npos);
  const fs::path other = tmp.path / "home";
  fs::create_directories(other);
  std::ofstream(other / "thesis.tex") << "precious";
  EXPECT_NE(error_of<InvalidArgument>([&] { save_quantized_model(*m, o, other, true); }).find("not a model folder"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(parent / "notes.txt"));
  EXPECT_TRUE(fs::exists(other / "thesis.tex"));
  // Replacing an earlier quantized folder is what --overwrite is for.
  save_quantized_model(*m, o, tmp.path / "q");
  save_quantized_model(*m, o, tmp.path / "q", true);
  EXPECT_TRUE(fs::exists(tmp.path / "q" / "config.json"));
}

TEST(TesterFindings, WeightsFileFromAnotherQuantizationIsRefused) {
  kq::testing::TempDir tmp;
  for (const char* mode : {"nf4", "fp4"}) {
    auto m = Model::load(demo_model());
    QuantizeOptions o;
    o.spec = parse_quant_mode(mode);
    quantize_model(*m, o);
    save_quantized_model(*m, o, tmp.path / mode);
  }
  fs::copy_file(tmp.path / "fp4" / "model.safetensors", tmp.path / "nf4" / "model.safetensors",
                fs::copy_options::overwrite_existing);
  EXPECT_NE(error_of<FormatError>([&] { Model::load(tmp.path / "nf4"); }).find("mixes two quantizations"),
            std::string::npos);
}

TEST(TesterFindings, NonFiniteWeightsAreAnErrorNamingTheTensor) {
  kq::testing::TempDir tmp;
  const fs::path dir = copy_demo(tmp.path / "m");
  auto store = TensorStore::open_dir(dir);
  std::map<std::string, Tensor> t;
  for (const auto& n : store.names()) t[n] = store.get(n).clone();
  t["transformer.h.1.mlp.c_fc.weight"].mutable_data<float>()[17] = std::numeric_limits<float>::quiet_NaN();
  store = TensorStore();  // drop the mapping before rewriting the file
  write_safetensors(dir / "model.safetensors", t);
  EXPECT_NE(error_of<FormatError>([&] { Model::load(dir); }).find("transformer.h.1.mlp.c_fc.weight"),
            std::string::npos);
}

TEST(TesterFindings, Gpt2AttentionVariantsWeDoNotComputeAreRefused) {
  kq::testing::TempDir tmp;
  const fs::path a = copy_demo(tmp.path / "a");
  set_config(a, "scale_attn_by_inverse_layer_idx", true);
  EXPECT_THROW(Model::load(a), FormatError);
  const fs::path b = copy_demo(tmp.path / "b");
  set_config(b, "scale_attn_weights", false);
  EXPECT_THROW(Model::load(b), FormatError);
}

// A model loaded through a relative path was saved from that path taken from the working directory at save time:
// after a chdir, a folder of the same name there (a decoy) gave its config.json, side files and unquantized tensors
// to the quantized folder. source_dir() is made absolute at load.
TEST(TesterFindings, RelativeSourceFolderSurvivesAChdir) {
  kq::testing::TempDir tmp;
  copy_demo(tmp.path / "a" / "m");
  const fs::path decoy = copy_demo(tmp.path / "b" / "m");
  set_config(decoy, "kq_test_decoy", true);
  const fs::path cwd = fs::current_path();
  struct Restore {
    fs::path to;
    ~Restore() { fs::current_path(to); }
  } restore{cwd};
  fs::current_path(tmp.path / "a");
  auto m = Model::load("m");
  EXPECT_TRUE(m->source_dir().is_absolute()) << m->source_dir();
  QuantizeOptions o;
  quantize_model(*m, o);
  fs::current_path(tmp.path / "b");
  save_quantized_model(*m, o, tmp.path / "q");
  const auto cfg = nlohmann::json::parse(std::ifstream(tmp.path / "q" / "config.json"));
  EXPECT_FALSE(cfg.contains("kq_test_decoy")) << "config.json was read from the decoy folder";
}

// tester25 F7: an output folder that is the current directory, or holds it, was renamed over it (the process and
// its shell left in the deleted folder); check_quantized_output refuses it, a sibling stays fine.
TEST(TesterFindings, OutputFolderHoldingTheCurrentDirectoryIsRefused) {
  kq::testing::TempDir tmp;
  fs::create_directories(tmp.path / "o" / "in");
  const fs::path cwd = fs::current_path();
  struct Restore {
    fs::path to;
    ~Restore() { fs::current_path(to); }
  } restore{cwd};
  fs::current_path(tmp.path / "o" / "in");
  for (const fs::path& out : {fs::path("."), fs::path(".."), tmp.path / "o", tmp.path / "o" / "in"}) {
    const std::string msg = error_of<InvalidArgument>([&] { check_quantized_output(out, "", false); });
    EXPECT_TRUE(msg.starts_with("output folder '" + out.string() + "' ")) << msg;
    EXPECT_NE(msg.find("the current directory"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(check_quantized_output("../sibling", "", false));
  EXPECT_NO_THROW(check_quantized_output(tmp.path / "elsewhere", "", false));
}

// A source folder removed before the save was named by an internal step ("check_quantized_side_files: ...: not a
// model folder (not found)").
TEST(TesterFindings, SaveSaysTheSourceFolderIsGone) {
  kq::testing::TempDir tmp;
  const fs::path src = copy_demo(tmp.path / "src");
  auto m = Model::load(src);
  QuantizeOptions o;
  quantize_model(*m, o);
  fs::remove(src / "config.json");
  std::string msg = error_of<FormatError>([&] { save_quantized_model(*m, o, tmp.path / "q"); });
  EXPECT_NE(msg.find("the folder the model was loaded from, '" + m->source_dir().string() +
                     "', is no longer a model folder (no config.json)"),
            std::string::npos)
      << msg;
  fs::remove_all(src);
  msg = error_of<FormatError>([&] { save_quantized_model(*m, o, tmp.path / "q"); });
  EXPECT_NE(msg.find("the folder the model was loaded from, '" + m->source_dir().string() + "', is gone"),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("check_quantized_side_files"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp.path / "q"));
}
