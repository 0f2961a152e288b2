// load_quantized without AWQ quantizes each linear layer as Model::load reads
// it (a LinearTransform) instead of loading the whole FP32 model first: on the
// shared llama-small (BF16, tied) and gpt2-small (F32, sharded) the result is
// that of Model::load + quantize_model (report field by field, warnings,
// formats, logits bit for bit, saved folder byte for byte), and besides the
// FP32 layers the model keeps, no more than one layer's FP32 Linear weights
// are alive at once during the load (linear_f32_peak_bytes; load-then-quantize
// holds them all).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/warning.hpp"

using namespace kq;

namespace {

constexpr const char* kLlama = "models/llama-small";
constexpr const char* kGpt2 = "models/gpt2-small";

struct Case {
  const char* model;
  const char* mode;
  bool quantize_lm_head;
  std::vector<std::string> keep;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << " " << c.mode << (c.quantize_lm_head ? " quantize_lm_head" : "");
  for (const std::string& k : c.keep) *os << " keep '" << k << "'";
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n = std::string(info.param.model).substr(7) + "_" + info.param.mode +
                  (info.param.quantize_lm_head ? "_lmhead" : "") + (info.param.keep.empty() ? "" : "_keep");
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n + "_" + std::to_string(info.index);
}

QuantizeOptions options_of(const Case& c) {
  QuantizeOptions o;
  o.spec = parse_quant_mode(c.mode);
  o.quantize_lm_head = c.quantize_lm_head;
  o.keep_patterns = c.keep;
  return o;
}

/// What a quantization produced, with the warnings it gave (in order).
struct Result {
  std::unique_ptr<Model> model;
  QuantizeReport report;
  std::vector<std::string> warnings;
  /// FP32 Linear weight bytes alive at once at most during it, and at its end (kept layers that stay
  /// FP32: F32 on disk), beyond those alive before.
  size_t f32_peak = 0, f32_end = 0;
};

template <class F>
Result run(F&& quantize) {
  Result r;
  const WarningHandler old = set_warning_handler([&](const std::string& w) { r.warnings.push_back(w); });
  const size_t live = linear_f32_live_bytes();
  reset_linear_f32_peak_bytes();
  try {
    quantize(r);
  } catch (...) {
    set_warning_handler(old);
    throw;
  }
  r.f32_peak = linear_f32_peak_bytes() - live;
  r.f32_end = linear_f32_live_bytes() - live;
  set_warning_handler(old);
  return r;
}

Result streamed(const std::filesystem::path& dir, const QuantizeOptions& o) {
  return run([&](Result& r) { r.model = load_quantized(dir, o, {}, &r.report); });
}

/// The reference: the whole model loaded, then quantized in place.
Result loaded_then_quantized(const std::filesystem::path& dir, const QuantizeOptions& o) {
  return run([&](Result& r) {
    r.model = Model::load(dir);
    r.report = quantize_model(*r.model, o);
  });
}

void expect_same_report(const QuantizeReport& a, const QuantizeReport& b) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerQuantization& x = a.layers[i];
    const LayerQuantization& y = b.layers[i];
    SCOPED_TRACE(y.name);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.out_features, y.out_features);
    EXPECT_EQ(x.in_features, y.in_features);
    EXPECT_EQ(x.format, y.format);
    EXPECT_EQ(x.bytes_before, y.bytes_before);
    EXPECT_EQ(x.bytes_after, y.bytes_after);
    EXPECT_EQ(x.quantized, y.quantized);
    EXPECT_EQ(x.awq_alpha, y.awq_alpha);
    EXPECT_EQ(x.awq_rtn_error, y.awq_rtn_error);
    EXPECT_EQ(x.awq_error, y.awq_error);
    EXPECT_EQ(x.awq_duo, y.awq_duo);
  }
  EXPECT_EQ(a.quantized_bytes_before, b.quantized_bytes_before);
  EXPECT_EQ(a.quantized_bytes_after, b.quantized_bytes_after);
  EXPECT_EQ(a.quantized_matrix_bytes, b.quantized_matrix_bytes);
  EXPECT_EQ(a.quantized_elements, b.quantized_elements);
  EXPECT_EQ(a.unmatched_keep_patterns, b.unmatched_keep_patterns);
}

/// Logits of a 5-token prefill and 2 decode steps, concatenated.
std::vector<float> logits_of(Model& m) {
  const size_t V = size_t(m.config().vocab_size);
  KVCache cache = m.make_cache(16);
  std::vector<float> out(5 * V);
  m.forward(std::vector<int32_t>{1, 50, 300, 7, 4000}, cache, out.data());
  for (int32_t t : {11, 2047}) {
    std::vector<float> row(V);
    m.forward(std::vector<int32_t>{t}, cache, row.data());
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

/// The most FP32 weight bytes one linear layer of the report holds (F32 [out, in]).
size_t largest_layer_f32_bytes(const QuantizeReport& r) {
  size_t most = 0;
  for (const LayerQuantization& l : r.layers) most = std::max(most, size_t(l.out_features * l.in_features) * 4);
  return most;
}

class StreamingQuantize : public ::testing::TestWithParam<Case> {};

TEST_P(StreamingQuantize, SameAsLoadThenQuantizeHoldingOneFp32LayerAtATime) {
  const Case& c = GetParam();
  KQ_REQUIRE_SHARED(c.model);
  const std::filesystem::path dir = kq::testing::shared_dir() / c.model;
  const QuantizeOptions o = options_of(c);
  const Result s = streamed(dir, o);
  const Result ref = loaded_then_quantized(dir, o);

  expect_same_report(s.report, ref.report);
  EXPECT_EQ(s.warnings, ref.warnings);
  EXPECT_GT(s.report.quantized_elements, 0);
  const std::vector<LinearSlot> a = s.model->linear_layers(), b = ref.model->linear_layers();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ((*a[i].op)->format(), (*b[i].op)->format()) << a[i].name;
    EXPECT_EQ((*a[i].op)->weight_bytes(), (*b[i].op)->weight_bytes()) << a[i].name;
  }
  EXPECT_EQ(s.model->weight_breakdown().linear, ref.model->weight_breakdown().linear);
  EXPECT_EQ(s.model->weight_breakdown().other, ref.model->weight_breakdown().other);
  EXPECT_EQ(s.model->disk_weight_bytes(), ref.model->disk_weight_bytes());
  const std::vector<float> ls = logits_of(*s.model), lr = logits_of(*ref.model);
  ASSERT_EQ(ls.size(), lr.size());
  EXPECT_EQ(std::memcmp(ls.data(), lr.data(), ls.size() * sizeof(float)), 0) << "logits differ";

  // Besides the FP32 layers the model keeps, one layer's FP32 weights at a time; the reference holds them
  // all (so this check can fail).
  const size_t one_layer = largest_layer_f32_bytes(ref.report);
  EXPECT_EQ(s.f32_end, ref.f32_end);
  EXPECT_LE(s.f32_peak, s.f32_end + one_layer);
  EXPECT_GT(ref.f32_peak, ref.f32_end + one_layer);

  kq::testing::TempDir tmp;
  save_quantized_model(*s.model, o, tmp.path / "streamed");
  save_quantized_model(*ref.model, o, tmp.path / "reference");
  kq::testing::expect_same_folder_files(tmp.path / "streamed", tmp.path / "reference");
}

// Keep patterns that keep layers (held in BF16 as read on llama-small) or match
// nothing (warned about), the lm_head quantized (tied: warned about) or kept by
// a pattern despite quantize_lm_head (warned about).
INSTANTIATE_TEST_SUITE_P(
    Folders, StreamingQuantize,
    ::testing::Values(Case{kLlama, "int8", false, {}},
                      Case{kLlama, "nf4", false, {"mlp\\.down_proj", "no_such_layer"}},
                      Case{kLlama, "int4-g128", true, {}},
                      Case{kLlama, "fp8", true, {"layers\\.0\\.", "lm_head"}},
                      Case{kGpt2, "int8", false, {}},
                      Case{kGpt2, "nf4", true, {"c_fc", "nothing"}},
                      Case{kGpt2, "int4-g128", true, {}},
                      Case{kGpt2, "fp8", false, {"h\\.1\\."}}),
    case_name);

TEST(StreamingQuantizeEdges, EveryLayerKeptStaysF32AsLoadThenQuantize) {
  KQ_REQUIRE_SHARED(kLlama);
  const std::filesystem::path dir = kq::testing::shared_dir() / kLlama;
  QuantizeOptions o;
  o.spec = parse_quant_mode("int8");
  o.keep_patterns = {"."};
  const Result s = streamed(dir, o);
  const Result ref = loaded_then_quantized(dir, o);
  expect_same_report(s.report, ref.report);
  EXPECT_EQ(s.report.quantized_elements, 0);
  EXPECT_EQ(s.warnings, ref.warnings);
  for (const LinearSlot& l : s.model->linear_layers()) EXPECT_EQ((*l.op)->format(), "f32") << l.name;
  EXPECT_EQ(s.model->weight_breakdown().total(), ref.model->weight_breakdown().total());
  const std::vector<float> ls = logits_of(*s.model), lr = logits_of(*ref.model);
  EXPECT_EQ(std::memcmp(ls.data(), lr.data(), ls.size() * sizeof(float)), 0) << "logits differ";
}

TEST(StreamingQuantizeEdges, QuantizedFolderRefusedAsLoadThenQuantize) {
  KQ_REQUIRE_SHARED(kLlama);
  kq::testing::TempDir tmp;
  QuantizeOptions o;
  o.spec = parse_quant_mode("nf4");
  o.keep_patterns = {"layers\\.0\\.self_attn"};  // the first layers are not quantized in the folder
  save_quantized_model(*load_quantized(kq::testing::shared_dir() / kLlama, o), o, tmp.path / "q");
  QuantizeOptions again;
  std::string streamed_error, reference_error;
  try {
    load_quantized(tmp.path / "q", again);
  } catch (const InvalidArgument& e) {
    streamed_error = e.what();
  }
  try {
    auto m = Model::load(tmp.path / "q");
    quantize_model(*m, again);
  } catch (const InvalidArgument& e) {
    reference_error = e.what();
  }
  EXPECT_NE(streamed_error.find("already quantized (layer 'model.layers.0.mlp.gate_proj' is nf4"), std::string::npos)
      << streamed_error;
  EXPECT_EQ(streamed_error, reference_error);
}

}  // namespace
