// tester25 #4: load_quantized of a BF16/F16 checkpoint converted the embedding
// tables (and an unquantized lm_head) to FP32 while loading and only went back
// to the 16-bit dtype after the quantization (a 2 GiB BF16 embedding: a 4 GiB
// FP32 copy). It now reads them in their disk dtype (Model::load's
// tables_in_disk_dtype). On tiny Llama and GPT-2 folders written here in BF16,
// F16 and F32, tied and untied: the result is that of Model::load +
// quantize_model (report, layer formats and bytes, logits bit for bit, saved
// folder byte for byte), and the F32 bytes the loader converts
// (file_weights_f32_copy_bytes) are the reference's minus exactly the tables
// and the 16-bit lm_head, so no FP32 copy of them was ever made.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "common/quantized_compare.hpp"
#include "common/tiny_folder.hpp"
#include "io/safetensors.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "kq/warning.hpp"
#include "models/weights.hpp"

using namespace kq;

namespace {

namespace fs = std::filesystem;

using kq::testing::kHidden;
using kq::testing::kInter;
using kq::testing::kLayers;
using kq::testing::kPositions;
using kq::testing::kVocab;
using Folder = kq::testing::TinyFolder;
using kq::testing::write_folder;

/// The F32 bytes of what the new path reads in 16 bits: the tables (GPT-2: wte and wpe) and an untied lm_head.
size_t tables_f32_bytes(const Folder& f) {
  if (f.dtype == DType::F32) return 0;
  size_t n = size_t(kVocab * kHidden) + (f.gpt2 ? size_t(kPositions * kHidden) : 0);
  if (!f.tied) n += size_t(kVocab * kHidden);
  return n * sizeof(float);
}

struct Result {
  std::unique_ptr<Model> model;
  QuantizeReport report;
  std::vector<std::string> warnings;
  size_t f32_copied = 0;  // file_weights_f32_copy_bytes() during the load
};

template <class F>
Result run(F&& load) {
  Result r;
  kq::testing::CapturedWarnings w;
  const size_t before = models::file_weights_f32_copy_bytes();
  load(r);
  r.f32_copied = models::file_weights_f32_copy_bytes() - before;
  r.warnings = w.list;
  return r;
}

void expect_same(const Result& s, const Result& ref) {
  kq::testing::expect_same_quantized_models(*s.model, s.report, *ref.model, ref.report);
  EXPECT_EQ(s.warnings, ref.warnings);
  EXPECT_EQ(s.model->disk_weight_bytes(), ref.model->disk_weight_bytes());
}

struct Case {
  Folder folder;
  const char* mode;
  bool quantize_lm_head;
  std::vector<std::string> keep;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << (c.folder.gpt2 ? "gpt2 " : "llama ") << dtype_name(c.folder.dtype) << (c.folder.tied ? " tied " : " untied ")
      << c.mode << (c.quantize_lm_head ? " quantize_lm_head" : "");
  for (const std::string& k : c.keep) *os << " keep '" << k << "'";
}

class Streaming16BitTables : public ::testing::TestWithParam<Case> {};

TEST_P(Streaming16BitTables, SameAsLoadThenQuantizeWithoutAnFp32CopyOfTheTables) {
  const Case& c = GetParam();
  kq::testing::TempDir tmp;
  const fs::path dir = write_folder(tmp.path / "m", c.folder);
  QuantizeOptions o;
  o.spec = parse_quant_mode(c.mode);
  o.quantize_lm_head = c.quantize_lm_head;
  o.keep_patterns = c.keep;
  const Result s = run([&](Result& r) { r.model = load_quantized(dir, o, {}, &r.report); });
  const Result ref = run([&](Result& r) {
    r.model = Model::load(dir);
    r.report = quantize_model(*r.model, o);
  });
  expect_same(s, ref);
  ASSERT_GT(s.report.quantized_elements, 0);

  // The loader converted to F32 all the reference did but the tables and the 16-bit lm_head (F32 folders:
  // the same, none of them; the reference's count includes them, so this can fail).
  EXPECT_EQ(s.f32_copied + tables_f32_bytes(c.folder), ref.f32_copied);
  EXPECT_EQ(tables_f32_bytes(c.folder) > 0, c.folder.dtype != DType::F32);

  kq::testing::TempDir out;
  {
    kq::testing::CapturedWarnings quiet;  // no tokenizer files: warned about for both
    save_quantized_model(*s.model, o, out.path / "streamed");
    save_quantized_model(*ref.model, o, out.path / "reference");
  }
  kq::testing::expect_same_folder_files(out.path / "streamed", out.path / "reference");
}

INSTANTIATE_TEST_SUITE_P(
    Folders, Streaming16BitTables,
    ::testing::Values(Case{{false, DType::BF16, false}, "int8", false, {}},
                      Case{{false, DType::BF16, true}, "int8", false, {}},
                      Case{{false, DType::BF16, false}, "nf4", true, {}},
                      Case{{false, DType::BF16, true}, "nf4", true, {}},
                      Case{{false, DType::F16, false}, "int8", false, {"down_proj"}},
                      Case{{false, DType::F16, true}, "fp8", true, {"lm_head"}},
                      Case{{false, DType::F32, false}, "int8", false, {}},
                      Case{{false, DType::F32, true}, "nf4", false, {}},
                      Case{{true, DType::BF16, true}, "int8", false, {}},
                      Case{{true, DType::F16, true}, "nf4", true, {}},
                      Case{{true, DType::BF16, false}, "int8", false, {"c_fc"}},
                      Case{{true, DType::F32, true}, "int8", false, {}}));

// The held parts right after load_quantized: the tables and the kept lm_head are the 16-bit tensors
// (2 bytes per value in weight_breakdown: norms and biases F32), and Model::load with tables_in_disk_dtype hands
// the transform a 16-bit lm_head, tied over the table or untied, never an FP32 op.
TEST(Streaming16BitTablesHeld, TheTablesAndTheLmHeadAreSixteenBitFromTheStart) {
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    kq::testing::TempDir tmp;
    const Folder f{false, DType::BF16, tied};
    const fs::path dir = write_folder(tmp.path / "m", f);
    std::string lm_head_format;
    const size_t before = models::file_weights_f32_copy_bytes();
    auto m = Model::load(
        dir, {},
        [&](const std::string& name, std::unique_ptr<Linear> op) -> std::unique_ptr<Linear> {
          if (name == "lm_head") {
            lm_head_format = op->format();
            return op;
          }
          return quantize_linear(op->dequantized_weight(), op->bias(), parse_quant_mode("int8"));
        },
        /*tables_in_disk_dtype=*/true);
    const size_t copied = models::file_weights_f32_copy_bytes() - before;
    EXPECT_EQ(lm_head_format, "bf16");
    // Copied to F32: the quantized layers' weights and the three norm gains of each layer (Llama: two) and the
    // final one; nothing of the table or the lm_head.
    const size_t layer_weights = size_t(64 * kHidden + 2 * 32 * kHidden + kHidden * 64 + 3 * kInter * kHidden);
    EXPECT_EQ(copied, size_t(kLayers) * (layer_weights + 2 * kHidden) * 4 + kHidden * 4);
    const size_t norms = size_t(kLayers * 2 + 1) * kHidden * 4;
    const size_t table = size_t(kVocab * kHidden) * 2;
    // Tied: the lm_head shares the table, counted once (with the linear layers); untied: the table is "other".
    EXPECT_EQ(m->weight_breakdown().other, norms + (tied ? 0 : table));
    for (const LinearSlot& s : m->linear_layers())
      if (s.is_lm_head) {
        EXPECT_EQ((*s.op)->format(), "bf16");
        EXPECT_EQ((*s.op)->weight_bytes(), table);
      }
  }
}

// Nothing quantized (every layer kept): as Model::load + quantize_model, everything F32 (tables converted back).
TEST(Streaming16BitTablesHeld, EveryLayerKeptIsF32AsLoadThenQuantize) {
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    kq::testing::TempDir tmp;
    const fs::path dir = write_folder(tmp.path / "m", {false, DType::BF16, tied});
    QuantizeOptions o;
    o.spec = parse_quant_mode("int8");
    o.keep_patterns = {"."};
    const Result s = run([&](Result& r) { r.model = load_quantized(dir, o, {}, &r.report); });
    const Result ref = run([&](Result& r) {
      r.model = Model::load(dir);
      r.report = quantize_model(*r.model, o);
    });
    expect_same(s, ref);
    EXPECT_EQ(s.report.quantized_elements, 0);
    for (const LinearSlot& l : s.model->linear_layers()) EXPECT_EQ((*l.op)->format(), "f32") << l.name;
  }
}

// A non-finite value in a 16-bit table is refused as the F32 conversion refused it, naming the tensor.
TEST(Streaming16BitTablesHeld, NonFiniteTableValueIsTheSameError) {
  kq::testing::TempDir tmp;
  const fs::path dir = write_folder(tmp.path / "m", {false, DType::BF16, false});
  {
    TensorStore store = TensorStore::open_dir(dir);
    std::map<std::string, Tensor> t;
    for (const std::string& n : store.names()) t[n] = store.get(n).clone();
    store = TensorStore();
    static_cast<uint16_t*>(t["model.embed_tokens.weight"].raw_mut())[77] = 0x7F80;  // BF16 +Inf
    write_safetensors(dir / "model.safetensors", t);
  }
  QuantizeOptions o;
  o.spec = parse_quant_mode("int8");
  std::string streamed, reference;
  try {
    load_quantized(dir, o);
  } catch (const FormatError& e) {
    streamed = e.what();
  }
  try {
    Model::load(dir);
  } catch (const FormatError& e) {
    reference = e.what();
  }
  EXPECT_NE(streamed.find("tensor 'model.embed_tokens.weight' holds NaN or Inf"), std::string::npos) << streamed;
  EXPECT_EQ(streamed, reference);
}

}  // namespace
