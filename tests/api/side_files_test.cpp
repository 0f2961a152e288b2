// save_quantized_model / check_quantized_side_files: the side files copied
// into a quantized folder are run through the loaders that will read them
// there, before anything is written.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/config.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"

namespace fs = std::filesystem;
using namespace kq;
using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;
using kq::testing::TempDir;
using kq::testing::write_text;

namespace {

fs::path copy_demo(const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(demo_model())) fs::copy_file(e.path(), to / e.path().filename());
  return to;
}

}  // namespace

// The file changes after the model was loaded: save_quantized_model itself
// refuses it (the quantized folder's tokenizer would not load) and writes nothing.
TEST(SideFiles, SaveRefusesAFileTheTokenizerLoaderRefusesAndWritesNothing) {
  TempDir tmp;
  const fs::path src = copy_demo(tmp.path / "model"), out = tmp.path / "q";
  auto m = Model::load(src);
  const QuantizeOptions o{.spec = parse_quant_mode("int8")};
  quantize_model(*m, o);
  write_text(src / "tokenizer_config.json", R"({"eos_token": 5})");
  const std::string msg = error_of<FormatError>([&] { save_quantized_model(*m, o, out); });
  EXPECT_TRUE(has(msg, (src / "tokenizer_config.json").string() + ": 'eos_token' must be a string")) << msg;
  EXPECT_TRUE(has(msg, "nothing was written")) << msg;
  EXPECT_FALSE(fs::exists(out));
}

// A tokenizer with more tokens than the model's vocabulary is refused as
// kq eval / kq generate refuse it (Tokenizer::check_fits); the shipped folder passes.
TEST(SideFiles, TokenizerLargerThanTheModelIsRefused) {
  const std::string msg = error_of<FormatError>([] { check_quantized_side_files(demo_model(), 100); });
  EXPECT_TRUE(has(msg, "but the model's vocabulary is 100")) << msg;
  EXPECT_NO_THROW(check_quantized_side_files(demo_model(), load_model_config(demo_model()).vocab_size));
  EXPECT_NO_THROW(check_quantized_side_files(demo_model(), 0));  // 0: the size is not checked
}
