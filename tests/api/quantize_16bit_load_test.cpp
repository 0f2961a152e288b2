// AWQ and adaptive (layer_specs) quantization of a BF16/F16 checkpoint load it
// in its 16-bit dtype (load_to_quantize: every linear layer a 16-bit op, the
// embedding tables and the lm_head read in that dtype) and convert each layer
// to FP32 only while it is searched and quantized, instead of loading the whole
// model in FP32 first. On tiny GPT-2 and Llama folders written here in BF16,
// F16 and F32 and on the shared llama-small (BF16, tied): the result is that of
// Model::load + quantize_model / quantize_model_adaptive bit for bit (report
// with AWQ's α / duo / errors per layer, the adaptive plan, formats, bytes,
// logits, saved folder files), and no FP32 Linear weights beyond one layer's (an
// AWQ group's: q/k/v, gate/up) are alive at once (linear_f32_peak_bytes; the
// reference holds them all) and no table is converted to F32
// (file_weights_f32_copy_bytes). The calibration forward pass through the
// 16-bit ops gives the FP32 ops' statistics bit for bit on these models (the
// AWQ errors and α compared exactly).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "common/quantized_compare.hpp"
#include "common/tiny_folder.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/adaptive.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/warning.hpp"
#include "models/weights.hpp"

using namespace kq;

namespace {

namespace fs = std::filesystem;
using kq::testing::TinyFolder;

/// What a load and quantization produced.
struct Result {
  std::unique_ptr<Model> model;
  QuantizeReport report;
  AdaptivePlan plan;  // quantize_model_adaptive's
  std::vector<std::string> warnings;
  size_t f32_copied = 0;  ///< file_weights_f32_copy_bytes() during it
  size_t f32_peak = 0;    ///< FP32 Linear weight bytes alive at once at most during it, beyond those before
};

template <class F>
Result run(F&& quantize) {
  Result r;
  kq::testing::CapturedWarnings w;
  const size_t before = models::file_weights_f32_copy_bytes();
  const size_t live = linear_f32_live_bytes();
  reset_linear_f32_peak_bytes();
  quantize(r);
  r.f32_peak = linear_f32_peak_bytes() - live;
  r.f32_copied = models::file_weights_f32_copy_bytes() - before;
  r.warnings = w.list;
  return r;
}

/// Deterministic token ids in [0, vocab): calibration text for AWQ.
std::vector<int32_t> calibration_ids(int64_t vocab, int n) {
  std::vector<int32_t> ids;
  uint32_t x = 7;
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    ids.push_back(int32_t((x >> 8) % uint32_t(vocab)));
  }
  return ids;
}

void expect_same_plan(const AdaptivePlan& a, const AdaptivePlan& b) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerAnalysis &x = a.layers[i], &y = b.layers[i];
    SCOPED_TRACE(y.name);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.held, y.held);
    EXPECT_EQ(x.entropy_bits, y.entropy_bits);
    EXPECT_EQ(x.sensitivity, y.sensitivity);
    EXPECT_EQ(x.chosen, y.chosen);
    ASSERT_EQ(x.candidates.size(), y.candidates.size());
    for (size_t c = 0; c < x.candidates.size(); ++c) {
      EXPECT_EQ(x.candidates[c].format, y.candidates[c].format);
      EXPECT_EQ(x.candidates[c].bytes, y.candidates[c].bytes);
      EXPECT_EQ(x.candidates[c].rel_error, y.candidates[c].rel_error);
      EXPECT_EQ(x.candidates[c].est_loss, y.candidates[c].est_loss);
    }
  }
  EXPECT_EQ(a.bytes_before, b.bytes_before);
  EXPECT_EQ(a.bytes_after, b.bytes_after);
  EXPECT_EQ(a.achieved_reduction, b.achieved_reduction);
  EXPECT_EQ(a.estimated_loss, b.estimated_loss);
  EXPECT_EQ(a.kept_layers, b.kept_layers);
  EXPECT_EQ(a.kept_bytes, b.kept_bytes);
}

/// Report (AWQ fields included), warnings, formats and bytes of every layer, weights held, logits bit for bit.
void expect_same(const Result& s, const Result& ref) {
  kq::testing::expect_same_quantized_models(*s.model, s.report, *ref.model, ref.report);
  EXPECT_EQ(s.warnings, ref.warnings);
}

/// The saved folders of both are the same files, byte for byte.
void expect_same_saved(const Result& s, const Result& ref, const QuantizeOptions& o) {
  kq::testing::TempDir out;
  {
    kq::testing::CapturedWarnings quiet;  // a tiny folder has no tokenizer: warned about for both
    save_quantized_model(*s.model, o, out.path / "sixteen");
    save_quantized_model(*ref.model, o, out.path / "reference");
  }
  kq::testing::expect_same_folder_files(out.path / "sixteen", out.path / "reference");
}

/// The most FP32 weight bytes one linear layer holds (F32 [out, in]), or one group of layers that AWQ searches
/// together (Model::fusion_groups: Llama's q/k/v, gate/up; the search holds the group's weights stacked).
size_t largest_layer_f32_bytes(Model& m, const QuantizeReport& r) {
  const auto bytes = [&](const std::string& name) {
    for (const LayerQuantization& l : r.layers)
      if (l.name == name) return size_t(l.out_features * l.in_features) * 4;
    return size_t(0);
  };
  size_t most = 0;
  for (const LayerQuantization& l : r.layers) most = std::max(most, bytes(l.name));
  for (const std::vector<std::string>& group : m.fusion_groups()) {
    size_t sum = 0;
    for (const std::string& name : group) sum += bytes(name);
    most = std::max(most, sum);
  }
  return most;
}

/// The F32 bytes of the tables (GPT-2: wte and wpe) and an untied lm_head of a 16-bit tiny folder: what
/// load_to_quantize reads in 16 bits from the start, never converting it to F32.
size_t tables_f32_bytes(const TinyFolder& f) {
  using namespace kq::testing;
  if (f.dtype == DType::F32) return 0;
  size_t n = size_t(kVocab * kHidden) + (f.gpt2 ? size_t(kPositions * kHidden) : 0);
  if (!f.tied) n += size_t(kVocab * kHidden);
  return n * sizeof(float);
}

/// The load's FP32 accounting of a 16-bit load `s` against the FP32 reference `ref` (`tables_f32`: the F32
/// bytes of the tables and an untied lm_head, 0 for an F32 folder): every linear layer was converted once, as
/// the reference did, but at most one layer's FP32 weights were alive at once (the reference holds them all,
/// so this can fail); the tables and the lm_head were never converted. An F32 folder loads as the reference.
void expect_one_fp32_layer_at_a_time(const Result& s, const Result& ref, size_t tables_f32) {
  const size_t one_layer = largest_layer_f32_bytes(*ref.model, ref.report);
  EXPECT_GT(ref.f32_peak, 2 * one_layer);
  EXPECT_EQ(s.f32_copied + tables_f32, ref.f32_copied);
  if (tables_f32 == 0)
    EXPECT_EQ(s.f32_peak, ref.f32_peak);
  else
    EXPECT_LE(s.f32_peak, one_layer);
}

struct Case {
  TinyFolder folder;
  const char* mode;  // an AWQ mode, or "adaptive" (layer_specs of a plan)
  bool quantize_lm_head;
  std::vector<std::string> keep;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << (c.folder.gpt2 ? "gpt2 " : "llama ") << dtype_name(c.folder.dtype) << (c.folder.tied ? " tied " : " untied ")
      << c.mode << (c.quantize_lm_head ? " quantize_lm_head" : "");
  for (const std::string& k : c.keep) *os << " keep '" << k << "'";
}

/// The options of case `c` for the folder `dir`: AWQ with a few calibration tokens, or the layer_specs of an
/// adaptive plan made on the FP32 load (every layer planned: int8, nf4 or kept).
QuantizeOptions options_of(const Case& c, const fs::path& dir) {
  if (std::string(c.mode) == "adaptive") {
    auto m = Model::load(dir);
    AdaptiveOptions ao;
    ao.target_reduction = 0.5;
    ao.quantize_lm_head = c.quantize_lm_head;
    ao.keep_patterns = c.keep;
    kq::testing::CapturedWarnings quiet;
    return plan_adaptive_precision(*m, ao).to_options();
  }
  QuantizeOptions o;
  o.spec = parse_quant_mode(c.mode);
  o.quantize_lm_head = c.quantize_lm_head;
  o.keep_patterns = c.keep;
  o.calibration.tokens = calibration_ids(kq::testing::kVocab, 48);
  o.calibration.window = 16;
  o.calibration.search_rows = 32;
  o.calibration.grid = 3;
  return o;
}

class Quantize16BitLoad : public ::testing::TestWithParam<Case> {};

TEST_P(Quantize16BitLoad, LoadQuantizedIsLoadThenQuantizeBitForBitWithOneFp32LayerAtATime) {
  const Case& c = GetParam();
  kq::testing::TempDir tmp;
  const fs::path dir = kq::testing::write_folder(tmp.path / "m", c.folder);
  const QuantizeOptions o = options_of(c, dir);
  const Result s = run([&](Result& r) { r.model = load_quantized(dir, o, {}, &r.report); });
  const Result ref = run([&](Result& r) {
    r.model = Model::load(dir);
    r.report = quantize_model(*r.model, o);
  });
  expect_same(s, ref);
  ASSERT_GT(s.report.quantized_elements, 0);
  if (o.spec.awq) {  // the calibration ran: AWQ chose its α per layer
    EXPECT_TRUE(std::any_of(s.report.layers.begin(), s.report.layers.end(),
                            [](const LayerQuantization& l) { return l.awq_alpha >= 0; }));
  } else {
    EXPECT_FALSE(o.layer_specs.empty());
  }
  expect_one_fp32_layer_at_a_time(s, ref, tables_f32_bytes(c.folder));
  expect_same_saved(s, ref, o);
}

INSTANTIATE_TEST_SUITE_P(
    Folders, Quantize16BitLoad,
    ::testing::Values(Case{{false, DType::BF16, false}, "awq-g32", false, {}},
                      Case{{false, DType::BF16, true}, "awq-g32", false, {"down_proj"}},
                      Case{{false, DType::F16, false}, "awq-g32-sym", true, {}},
                      Case{{false, DType::F32, true}, "awq-g32", false, {}},
                      Case{{true, DType::BF16, true}, "awq-g32", false, {"c_fc"}},
                      Case{{true, DType::F16, false}, "awq-g32", true, {}},
                      Case{{false, DType::BF16, false}, "adaptive", true, {}},
                      Case{{false, DType::BF16, true}, "adaptive", false, {"layers\\.0\\."}},
                      Case{{false, DType::F16, true}, "adaptive", false, {}},
                      Case{{true, DType::BF16, true}, "adaptive", false, {}},
                      Case{{false, DType::F32, false}, "adaptive", true, {}}));

// kq quantize --mode adaptive: load_to_quantize + quantize_model_adaptive is Model::load +
// quantize_model_adaptive (the plan field by field, the report, the model, the saved folder).
TEST(Quantize16BitLoadAdaptive, PlanAndQuantizationAreThoseOfTheFp32Load) {
  for (const TinyFolder f : {TinyFolder{false, DType::BF16, false}, TinyFolder{false, DType::F16, true},
                             TinyFolder{true, DType::BF16, true}, TinyFolder{false, DType::F32, true}}) {
    SCOPED_TRACE(std::string(f.gpt2 ? "gpt2 " : "llama ") + std::string(dtype_name(f.dtype)) +
                 (f.tied ? " tied" : " untied"));
    kq::testing::TempDir tmp;
    const fs::path dir = kq::testing::write_folder(tmp.path / "m", f);
    AdaptiveOptions ao;
    ao.target_reduction = 0.45;
    ao.quantize_lm_head = !f.tied;
    const Result s = run([&](Result& r) {
      r.model = load_to_quantize(dir);
      r.report = quantize_model_adaptive(*r.model, ao, &r.plan);
    });
    const Result ref = run([&](Result& r) {
      r.model = Model::load(dir);
      r.report = quantize_model_adaptive(*r.model, ao, &r.plan);
    });
    expect_same_plan(s.plan, ref.plan);
    expect_same(s, ref);
    expect_one_fp32_layer_at_a_time(s, ref, tables_f32_bytes(f));
    expect_same_saved(s, ref, s.plan.to_options());
  }
}

// What load_to_quantize holds: every linear layer of a 16-bit folder as a 16-bit op and the tables in 16 bits
// (2 bytes per value: the whole model about half its FP32 bytes), an F32 folder's as Model::load's.
TEST(Quantize16BitLoadHeld, EveryLinearLayerAndTableIsSixteenBit) {
  for (const TinyFolder f : {TinyFolder{false, DType::BF16, false}, TinyFolder{true, DType::F16, true},
                             TinyFolder{false, DType::F32, false}}) {
    kq::testing::TempDir tmp;
    const fs::path dir = kq::testing::write_folder(tmp.path / "m", f);
    auto m = load_to_quantize(dir);
    auto ref = Model::load(dir);
    const std::string want = f.dtype == DType::BF16 ? "bf16" : f.dtype == DType::F16 ? "f16" : "f32";
    size_t f32_linear = 0;
    for (const LinearSlot& l : ref->linear_layers()) {
      const Tensor b = (*l.op)->bias();
      f32_linear += (*l.op)->weight_bytes() - (b.defined() ? b.nbytes() : 0);
    }
    size_t linear = 0;
    for (const LinearSlot& l : m->linear_layers()) {
      EXPECT_EQ((*l.op)->format(), want) << l.name;
      const Tensor b = (*l.op)->bias();
      linear += (*l.op)->weight_bytes() - (b.defined() ? b.nbytes() : 0);
    }
    // A tied lm_head shares the table, counted once (weight_breakdown) but here in both sums alike.
    EXPECT_EQ(linear * (f.dtype == DType::F32 ? 1 : 2), f32_linear);
    EXPECT_EQ(m->disk_weight_bytes(), ref->disk_weight_bytes());
    const std::vector<float> ls = kq::testing::prefill_decode_logits(*m), lr = kq::testing::prefill_decode_logits(*ref);
    ASSERT_EQ(ls.size(), lr.size());
    for (size_t i = 0; i < ls.size(); ++i) ASSERT_NEAR(ls[i], lr[i], 1e-4f) << i;  // summation order only
  }
  EXPECT_THROW(load_to_quantize(kq::testing::demo_model(), ExecContext{Device::CUDA}), InvalidArgument);
}

// Everything kept: the model Model::load + quantize_model leave (all F32), as the streaming path gives.
TEST(Quantize16BitLoadHeld, EveryLayerKeptIsF32AsLoadThenQuantize) {
  for (const bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    kq::testing::TempDir tmp;
    const fs::path dir = kq::testing::write_folder(tmp.path / "m", {false, DType::BF16, tied});
    QuantizeOptions o;
    o.spec = parse_quant_mode("awq-g32");
    o.keep_patterns = {"."};
    o.calibration.tokens = calibration_ids(kq::testing::kVocab, 32);
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

// Errors come as from Model::load + quantize_model, in the same order: a quantized folder, an invalid option.
TEST(Quantize16BitLoadHeld, ErrorsAreThoseOfLoadThenQuantize) {
  kq::testing::TempDir tmp;
  const fs::path dir = kq::testing::write_folder(tmp.path / "m", {false, DType::BF16, false});
  QuantizeOptions nf4;
  nf4.spec = parse_quant_mode("nf4");
  nf4.keep_patterns = {"layers\\.0\\.self_attn"};  // the first layers are not quantized in the folder
  {
    kq::testing::CapturedWarnings quiet;
    save_quantized_model(*load_quantized(dir, nf4), nf4, tmp.path / "q");
  }
  QuantizeOptions awq;
  awq.spec = parse_quant_mode("awq-g32");
  awq.calibration.tokens = calibration_ids(kq::testing::kVocab, 32);
  QuantizeOptions specs;
  specs.layer_specs["model.layers.0.mlp.up_proj"] = parse_quant_mode("int8");
  QuantizeOptions bad = specs;
  bad.layer_specs["model.layers.9.mlp.up_proj"] = std::nullopt;
  const auto error = [](const std::function<void()>& f) {
    try {
      kq::testing::CapturedWarnings quiet;
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  for (const auto& [folder, o, want] :
       {std::tuple{tmp.path / "q", awq, "already quantized (layer 'model.layers.0.mlp.gate_proj' is nf4"},
        std::tuple{tmp.path / "q", specs, "already quantized (layer 'model.layers.0.mlp.gate_proj' is nf4"},
        std::tuple{dir, bad, "layer_specs: 'model.layers.9.mlp.up_proj' is not a linear layer"},
        std::tuple{tmp.path / "none", awq, "model folder"}}) {
    const std::string sixteen = error([&] { load_quantized(folder, o); });
    const std::string reference = error([&] { quantize_model(*Model::load(folder), o); });
    EXPECT_TRUE(kq::testing::has(sixteen, want)) << sixteen;
    EXPECT_EQ(sixteen, reference);
  }
}

// The shared llama-small (BF16, tied): AWQ over a few calibration tokens and an adaptive plan, through
// load_quantized and through load_to_quantize + quantize_model_adaptive, against the FP32 load.
TEST(Quantize16BitLoadLlamaSmall, AwqAndAdaptiveAreThoseOfTheFp32Load) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const fs::path dir = kq::testing::shared_dir() / "models/llama-small";
  const int64_t vocab = Model::load(dir)->config().vocab_size;
  QuantizeOptions awq;
  awq.spec = parse_quant_mode("awq");
  awq.calibration.tokens = calibration_ids(vocab, 96);
  awq.calibration.window = 48;
  awq.calibration.search_rows = 32;
  awq.calibration.grid = 3;
  {
    SCOPED_TRACE("awq");
    const Result s = run([&](Result& r) { r.model = load_quantized(dir, awq, {}, &r.report); });
    const Result ref = run([&](Result& r) {
      r.model = Model::load(dir);
      r.report = quantize_model(*r.model, awq);
    });
    expect_same(s, ref);
    expect_one_fp32_layer_at_a_time(s, ref, size_t(vocab) * size_t(s.model->config().hidden_size) * 4);
    expect_same_saved(s, ref, awq);
  }
  {
    SCOPED_TRACE("adaptive");
    AdaptiveOptions ao;
    ao.target_reduction = 0.6;
    const Result s = run([&](Result& r) {
      r.model = load_to_quantize(dir);
      r.report = quantize_model_adaptive(*r.model, ao, &r.plan);
    });
    const Result ref = run([&](Result& r) {
      r.model = Model::load(dir);
      r.report = quantize_model_adaptive(*r.model, ao, &r.plan);
    });
    expect_same_plan(s.plan, ref.plan);
    expect_same(s, ref);
    expect_one_fp32_layer_at_a_time(s, ref, size_t(vocab) * size_t(s.model->config().hidden_size) * 4);
    const QuantizeOptions specs = ref.plan.to_options();
    expect_same_saved(s, ref, specs);
    const Result l = run([&](Result& r) { r.model = load_quantized(dir, specs, {}, &r.report); });
    Result ref2 = run([&](Result& r) {
      r.model = Model::load(dir);
      r.report = quantize_model(*r.model, specs);
    });
    expect_same(l, ref2);
  }
}

}  // namespace
