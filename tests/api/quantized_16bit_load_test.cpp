// Model::load of a kq-quantized folder of a BF16/F16 checkpoint read its embedding tables, an unquantized lm_head
// and the layers kept by --keep as FP32 and only then turned them back into 16 bits
// (hold_unquantized_in_disk_dtype after the build: a 7B table, a transient 0.5 GB FP32 copy). On the CPU it now
// reads them in their 16-bit dtype from the start. On tiny Llama and GPT-2 folders quantized here (BF16, F16,
// F32; tied and untied lm_head; kept layers): the model is the one the previous path builds (a load with a
// transform still takes it: the transform gets FP32 ops, as documented) and the one load_quantized of the
// original folder builds (ops, formats, 16-bit weight bytes, weight accounting, logits bit for bit), and the F32
// bytes the loader converts (file_weights_f32_copy_bytes) are the previous path's minus exactly those parts.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/tiny_folder.hpp"
#include "kernels/linear_w16.hpp"
#include "kq/dtype.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "kq/warning.hpp"
#include "models/weights.hpp"

using namespace kq;
using kq::testing::kHidden;
using kq::testing::kInter;
using kq::testing::kLayers;
using kq::testing::kPositions;
using kq::testing::kVocab;
using Folder = kq::testing::TinyFolder;
using kq::testing::write_folder;

namespace {

namespace fs = std::filesystem;

struct Case {
  Folder folder;
  const char* mode;
  std::vector<std::string> keep;
  int64_t kept_elements;  // weight elements of the layers `keep` matches (lm_head not included)
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << (c.folder.gpt2 ? "gpt2 " : "llama ") << dtype_name(c.folder.dtype) << (c.folder.tied ? " tied " : " untied ")
      << c.mode;
  for (const std::string& k : c.keep) *os << " keep '" << k << "'";
}

/// The F32 bytes of what a load of the quantized folder now reads in 16 bits: the tables (GPT-2: wte and wpe),
/// an untied lm_head and the kept layers' weights; none for an F32 checkpoint.
size_t held_f32_bytes(const Case& c) {
  if (c.folder.dtype == DType::F32) return 0;
  int64_t n = kVocab * kHidden + (c.folder.gpt2 ? kPositions * kHidden : 0) + c.kept_elements;
  if (!c.folder.tied) n += kVocab * kHidden;
  return size_t(n) * sizeof(float);
}

struct Loaded {
  std::unique_ptr<Model> model;
  size_t f32_copied = 0;                    // file_weights_f32_copy_bytes() during the load
  std::map<std::string, std::string> seen;  // the transform's view: layer -> op format (previous path only)
};

Loaded plain_load(const fs::path& dir) {
  Loaded r;
  kq::testing::CapturedWarnings quiet;  // no tokenizer
  const size_t before = models::file_weights_f32_copy_bytes();
  r.model = Model::load(dir);
  r.f32_copied = models::file_weights_f32_copy_bytes() - before;
  return r;
}

/// The previous path: a transform (here one that changes nothing) makes Model::load read the unquantized parts
/// as FP32 and hold them in 16 bits after the build.
Loaded previous_load(const fs::path& dir) {
  Loaded r;
  kq::testing::CapturedWarnings quiet;
  const size_t before = models::file_weights_f32_copy_bytes();
  r.model = Model::load(dir, {}, [&](const std::string& name, std::unique_ptr<Linear> op) {
    r.seen[name] = op->format();
    return op;
  });
  r.f32_copied = models::file_weights_f32_copy_bytes() - before;
  return r;
}

const std::vector<int32_t> kTokens = {1, 50, 30, 7, 11, 95};

/// Same ops (format, weight bytes, the 16-bit weights byte for byte), accounting and logits; with `same_folder`
/// (both loaded from it) the same disk dtypes and disk bytes too (a model quantized from the original folder has
/// that folder's: its quantized layers were BF16/F16 there).
void expect_same_model(Model& a, Model& b, bool same_folder) {
  const std::vector<LinearSlot> x = a.linear_layers(), y = b.linear_layers();
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE(x[i].name);
    EXPECT_EQ(x[i].name, y[i].name);
    EXPECT_EQ((*x[i].op)->format(), (*y[i].op)->format());
    EXPECT_EQ((*x[i].op)->weight_bytes(), (*y[i].op)->weight_bytes());
    const Tensor *wx = linear_w16_weight(**x[i].op), *wy = linear_w16_weight(**y[i].op);
    ASSERT_EQ(wx != nullptr, wy != nullptr);
    if (same_folder || wx) {
      EXPECT_EQ(x[i].disk_dtype, y[i].disk_dtype);
    }
    if (wx) {
      ASSERT_EQ(wx->nbytes(), wy->nbytes());
      EXPECT_EQ(std::memcmp(wx->raw(), wy->raw(), wx->nbytes()), 0) << "16-bit weights differ";
    }
  }
  EXPECT_EQ(a.weight_breakdown().linear, b.weight_breakdown().linear);
  EXPECT_EQ(a.weight_breakdown().other, b.weight_breakdown().other);
  EXPECT_EQ(a.weight_bytes(), b.weight_bytes());
  if (same_folder) {
    EXPECT_EQ(a.disk_weight_bytes(), b.disk_weight_bytes());
  }
  const std::vector<float> la = kq::testing::prefill_logits(a, kTokens), lb = kq::testing::prefill_logits(b, kTokens);
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0) << "logits differ";
}

class Quantized16BitLoad : public ::testing::TestWithParam<Case> {};

TEST_P(Quantized16BitLoad, SameModelWithoutAnFp32CopyOfTheUnquantizedParts) {
  const Case& c = GetParam();
  kq::testing::TempDir tmp;
  const fs::path original = write_folder(tmp.path / "m", c.folder);
  QuantizeOptions o;
  o.spec = parse_quant_mode(c.mode);
  o.keep_patterns = c.keep;
  std::unique_ptr<Model> reference;  // load_quantized holds these parts in 16 bits from the start
  {
    kq::testing::CapturedWarnings quiet;
    reference = load_quantized(original, o);
    save_quantized_model(*reference, o, tmp.path / "q");
  }
  const Loaded now = plain_load(tmp.path / "q");
  const Loaded before = previous_load(tmp.path / "q");
  {
    SCOPED_TRACE("plain load vs the previous path");
    expect_same_model(*now.model, *before.model, /*same_folder=*/true);
  }
  {
    SCOPED_TRACE("plain load vs load_quantized of the original folder");
    expect_same_model(*now.model, *reference, /*same_folder=*/false);
  }
  // The previous path converted to F32 all this load does plus the held parts (it can fail: the previous path's
  // count includes them for a 16-bit folder).
  EXPECT_EQ(now.f32_copied + held_f32_bytes(c), before.f32_copied);
  EXPECT_EQ(held_f32_bytes(c) > 0, c.folder.dtype != DType::F32);

  // The held parts are 16-bit ops for a 16-bit checkpoint; the transform still sees them as FP32 ops.
  const std::string w16 = c.folder.dtype == DType::BF16 ? "bf16" : c.folder.dtype == DType::F16 ? "f16" : "f32";
  int kept = 0;
  for (const LinearSlot& s : now.model->linear_layers()) {
    const std::string format = (*s.op)->format();
    if (format != w16) continue;
    ++kept;
    EXPECT_EQ(before.seen.at(s.name), "f32") << s.name;
  }
  EXPECT_EQ(kept, 1 + (c.keep.empty() ? 0 : int(kLayers)));  // the lm_head, one kept layer per block
}

INSTANTIATE_TEST_SUITE_P(
    Folders, Quantized16BitLoad,
    ::testing::Values(Case{{false, DType::BF16, false}, "int8", {}, 0},
                      Case{{false, DType::BF16, true}, "nf4", {}, 0},
                      Case{{false, DType::BF16, false}, "int4-g32", {"down_proj"}, kLayers * kHidden * kInter},
                      Case{{false, DType::F16, true}, "int8", {"down_proj"}, kLayers * kHidden * kInter},
                      Case{{false, DType::F16, false}, "fp8", {"o_proj"}, kLayers * kHidden * 64},
                      Case{{false, DType::F32, false}, "int8", {"down_proj"}, kLayers * kHidden * kInter},
                      Case{{true, DType::BF16, true}, "int8", {}, 0},
                      Case{{true, DType::BF16, false}, "int8", {"c_fc"}, kLayers * 4 * kHidden * kHidden},
                      Case{{true, DType::F16, true}, "nf4", {"attn.c_proj"}, kLayers * kHidden * kHidden},
                      Case{{true, DType::F32, true}, "int8", {}, 0}));

}  // namespace
