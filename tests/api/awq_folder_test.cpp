// A quantized AWQ folder whose `<module>.awq_scales` tensor is damaged or
// missing fails to load with an error that names the tensor and the
// safetensors file (as other bad tensors of a quantized layer do), never a
// C++ function. A subnormal scale (1e-45) used to pass the load check and give
// non-finite logits, as 1/s overflowed. And a model that is already quantized
// is refused by quantize_model even when every layer is kept.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>

#include "common/checksum_record.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"

namespace kq {
namespace {
namespace fs = std::filesystem;

const fs::path kDemo = kq::testing::demo_model();
const std::string kScales = "transformer.h.1.mlp.c_fc.awq_scales";

using kq::testing::has;

/// The demo model quantized with AWQ (a coarse α grid: the values do not matter here) into `out`.
void write_awq_folder(const fs::path& out) {
  std::ifstream f(kDemo / "demo-calibration.txt");
  std::stringstream text;
  text << f.rdbuf();
  auto m = Model::load(kDemo);
  QuantizeOptions o;
  o.spec = parse_quant_mode("awq");
  o.calibration.tokens = Tokenizer::load(kDemo).encode(text.str());
  o.calibration.grid = 2;
  quantize_model(*m, o);
  save_quantized_model(*m, o, out);
}

/// Rewrites out/model.safetensors through `edit` (its tensors copied, metadata kept) and records the tensors'
/// checksums again (as if kq had written the bad values: the loader's value checks are tested, not the checksums).
template <class Edit>
void edit_weights(const fs::path& out, Edit edit) {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> meta;
  {
    const TensorStore store = TensorStore::open_file(out / "model.safetensors");
    for (const std::string& n : store.names()) tensors[n] = store.get(n).clone();
    meta = store.metadata();
  }
  edit(tensors);
  write_safetensors(out / "model.safetensors", tensors, meta);
  testing::record_checksums_again(out);
}

/// The message of the FormatError Model::load(dir) throws ("" if it loads).
std::string load_error(const fs::path& dir) {
  try {
    Model::load(dir);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

TEST(AwqFolder, BadOrMissingScalesNameTheTensorAndTheFile) {
  testing::TempDir tmp;
  const fs::path good = tmp.path / "awq";
  write_awq_folder(good);
  ASSERT_EQ(load_error(good), "");
  const std::string file = (tmp.path / "bad" / "model.safetensors").string();
  for (const float v : {1e-45f, 0.0f, -2.0f, std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity()}) {
    SCOPED_TRACE(v);
    fs::remove_all(tmp.path / "bad");
    fs::copy(good, tmp.path / "bad");
    edit_weights(tmp.path / "bad", [&](std::map<std::string, Tensor>& t) {
      ASSERT_TRUE(t.count(kScales));
      t[kScales].mutable_data<float>()[3] = v;
    });
    const std::string m = load_error(tmp.path / "bad");
    EXPECT_TRUE(has(m, "'" + kScales + "'")) << m;
    EXPECT_TRUE(has(m, "(in " + file + ")")) << m;
    EXPECT_TRUE(has(m, "input channel 3")) << m;
    EXPECT_FALSE(has(m, "make_awq_linear")) << m;
  }
  // A missing scales tensor: named, with the file the layer's tensors are in.
  fs::remove_all(tmp.path / "bad");
  fs::copy(good, tmp.path / "bad");
  edit_weights(tmp.path / "bad", [&](std::map<std::string, Tensor>& t) { t.erase(kScales); });
  const std::string m = load_error(tmp.path / "bad");
  EXPECT_TRUE(has(m, "'" + kScales + "' is missing")) << m;
  EXPECT_TRUE(has(m, "(in " + file + ")")) << m;
}

TEST(AwqFolder, AnAlreadyQuantizedModelIsRefusedEvenWithEveryLayerKept) {
  testing::TempDir tmp;
  {
    auto m = Model::load(kDemo);
    QuantizeOptions o;
    o.spec = parse_quant_mode("int8");
    quantize_model(*m, o);
    save_quantized_model(*m, o, tmp.path / "q");
  }
  auto q = Model::load(tmp.path / "q");
  QuantizeOptions keep_all;
  keep_all.spec = parse_quant_mode("int8");
  keep_all.keep_patterns = {"."};
  try {
    quantize_model(*q, keep_all);
    FAIL() << "an already-quantized model was 'quantized' with every layer kept";
  } catch (const InvalidArgument& e) {
    EXPECT_TRUE(has(e.what(), "already quantized")) << e.what();
    EXPECT_TRUE(has(e.what(), "transformer.h.0.attn.c_attn")) << e.what();
  }
}

}  // namespace
}  // namespace kq
