// Findings of a fresh C++ user of the installed library (round 13), each re-run
// here: a heap storage whose size wrapped in the 64-byte rounding (crash),
// enum values and arguments accepted without a check, documented promises the
// code did not keep, messages that did not name the API function.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/bench.hpp"
#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "kq/tensor.hpp"
#include "kq/tokenizer.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;

// HeapStorage(SIZE_MAX): (n + 63) / 64 * 64 wrapped to 0, a 64-byte block was
// allocated while size() said SIZE_MAX, and Tensor::view over it wrote past the end.
TEST(ApiUserRound13, HeapStorageSizeNearSizeMaxIsBadAlloc) {
  const size_t max = std::numeric_limits<size_t>::max();
  EXPECT_THROW((void)std::make_shared<HeapStorage>(max), std::bad_alloc);
  EXPECT_THROW((void)std::make_shared<HeapStorage>(max - 62), std::bad_alloc);
  EXPECT_EQ(std::make_shared<HeapStorage>(100)->size(), 100u);
  EXPECT_EQ(std::make_shared<HeapStorage>(0)->size(), 0u);
}

// A small consistent GPT-2 shape for Model::random / random_quantized.
ModelConfig tiny_gpt2() { return kq::testing::tiny_gpt2_config(); }

// arch = Arch(9) built a model whose config().arch was "unknown(9)" (the Llama
// path ran for it); the docs promise InvalidArgument for an inconsistent config.
TEST(ApiUserRound13, ModelConfigArchOutsideTheEnumIsRefused) {
  ModelConfig c = tiny_gpt2();
  c.arch = Arch(9);
  std::string msg = error_of<InvalidArgument>([&] { (void)Model::random(c, 1); });
  EXPECT_TRUE(has(msg, "Model::random: config: ModelConfig::arch 9 is not an Arch (gpt2, llama, mistral, qwen2, "
                      "qwen3, phi3, gemma3_text, gemma or gemma2)"))
      << msg;
  msg = error_of<InvalidArgument>([&] { (void)Model::random_quantized(c, 1, {}, "int8"); });
  EXPECT_TRUE(has(msg, "Model::random_quantized: config: ModelConfig::arch 9")) << msg;
  EXPECT_EQ(Model::random(tiny_gpt2(), 1)->config().arch, Arch::GPT2);
}

// The docs said load_quantized / LLMOptimizer::load_model accept "a Hugging
// Face folder or a KernelQuant quantized folder" and BenchOptions::model_dir a
// "Hugging Face or KernelQuant folder"; quantizing refuses a quantized folder
// (by design: requantizing quantized weights), as the docs now say. Loading
// without a quantization accepts it.
TEST(ApiUserRound13, QuantizedFolderIsRefusedWhereTheDocsSaySo) {
  kq::testing::TempDir tmp;
  const auto q = tmp.path / "int8";
  const QuantizeOptions o{.spec = parse_quant_mode("int8")};
  auto m = load_quantized(demo_model(), o);
  save_quantized_model(*m, o, q);
  std::string msg = error_of<InvalidArgument>([&] { (void)load_quantized(q, o); });
  EXPECT_TRUE(has(msg, "the model is already quantized")) << msg;
  msg = error_of<InvalidArgument>([&] { (void)LLMOptimizer({.quantization = o}).load_model(q); });
  EXPECT_TRUE(has(msg, "the model is already quantized")) << msg;
  EXPECT_NE(LLMOptimizer({}).load_model(q), nullptr);  // no quantization: Model::load
  BenchOptions b;
  b.model_dir = q;
  b.text = demo_model() / "demo-calibration.txt";
  msg = error_of<InvalidArgument>([&] { (void)run_bench(b); });
  EXPECT_TRUE(has(msg, "bench needs the original model")) << msg;
}

// A Linear implemented by a user: counts the forward calls of the op it wraps.
class CountingLinear final : public Linear {
 public:
  CountingLinear(std::unique_ptr<Linear> inner, int* calls) : inner_(std::move(inner)), calls_(calls) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    ++*calls_;
    inner_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return "counting-" + inner_->format(); }
  Tensor dequantized_weight() const override { return inner_->dequantized_weight(); }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
  int* calls_;
};

// LinearTransform, Model::random(..., transform) and LinearSlot::op named
// kq::Linear, which the installed headers only forward-declared: even an
// identity transform did not compile. kq/linear.hpp is public now (model.hpp
// includes it).
TEST(ApiUserRound13, LinearTransformsCompileAndRunFromThePublicHeaders) {
  std::vector<std::string> names;
  auto same = Model::random(tiny_gpt2(), 3, {}, [&](const std::string& name, std::unique_ptr<Linear> op) {
    names.push_back(name);
    return op;
  });
  EXPECT_EQ(names.size(), same->linear_layers().size());
  int calls = 0;
  auto counted = Model::random(tiny_gpt2(), 3, {}, [&](const std::string&, std::unique_ptr<Linear> op) {
    return std::unique_ptr<Linear>(std::make_unique<CountingLinear>(std::move(op), &calls));
  });
  for (const LinearSlot& s : counted->linear_layers()) EXPECT_EQ((*s.op)->format(), "counting-f32") << s.name;
  const std::vector<int32_t> tokens{1, 2, 3};
  std::vector<float> a(3 * 64), b(a.size());
  KVCache ca = same->make_cache(), cb = counted->make_cache();
  same->forward(tokens, ca, a.data());
  counted->forward(tokens, cb, b.data());
  EXPECT_EQ(a, b);
  EXPECT_GT(calls, 0);
}

// random_quantized("") built an unquantized model; the unknown-mode list did not
// name "bf16" / "f32", which it accepts; "awq" failed in an internal function.
TEST(ApiUserRound13, RandomQuantizedModesAreChecked) {
  std::string msg = error_of<InvalidArgument>([] { (void)Model::random_quantized(tiny_gpt2(), 1, {}, ""); });
  EXPECT_TRUE(has(msg, "Model::random_quantized: unknown quantization mode ''")) << msg;
  EXPECT_TRUE(has(msg, "bf16, f32, fp32 (unquantized)")) << msg;
  msg = error_of<InvalidArgument>([] { (void)Model::random_quantized(tiny_gpt2(), 1, {}, "int3"); });
  EXPECT_TRUE(has(msg, "bf16, f32")) << msg;
  msg = error_of<InvalidArgument>([] { (void)Model::random_quantized(tiny_gpt2(), 1, {}, "awq"); });
  EXPECT_TRUE(has(msg, "Model::random_quantized: mode 'awq' is AWQ, which needs calibration data")) << msg;
  EXPECT_FALSE(has(msg, "quantize_weight")) << msg;
  EXPECT_EQ((*Model::random_quantized(tiny_gpt2(), 1, {}, "f32")->linear_layers()[0].op)->format(), "f32");
  EXPECT_NE((*Model::random_quantized(tiny_gpt2(), 1, {}, "int8")->linear_layers()[0].op)->format(), "f32");
}

// fp8_quant_spec({.format = FP8Format(7)}) returned an "fp8-e5m2" spec.
TEST(ApiUserRound13, Fp8QuantSpecRefusesAFormatOutsideTheEnum) {
  FP8Config cfg;
  cfg.format = FP8Format(7);
  const std::string msg = error_of<InvalidArgument>([&] { (void)fp8_quant_spec(cfg); });
  EXPECT_TRUE(has(msg, "fp8_quant_spec: FP8Config.format 7 is neither E4M3 nor E5M2")) << msg;
  cfg.format = FP8Format::E5M2;
  EXPECT_EQ(fp8_quant_spec(cfg).format, PrecisionFormat::FP8_E5M2);
}

Tensor f32_tensor(Shape shape, const std::vector<float>& v) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  std::memcpy(t.raw_mut(), v.data(), v.size() * sizeof(float));
  return t;
}

// {1e-44, -3.3e-45} per tensor: absmax / 448 underflowed to 0, the scale became
// 1 and both values decoded to 0 (100 % error). Tiny magnitudes now round-trip
// within FP8's own precision (plus the float subnormal grid).
TEST(ApiUserRound13, Fp8TinyMagnitudesRoundTrip) {
  const float denorm = std::numeric_limits<float>::denorm_min();
  for (const FP8Format f : {FP8Format::E4M3, FP8Format::E5M2})
    for (const bool saturate : {true, false}) {
      const FP8Config cfg{.format = f, .saturate = saturate, .weight_scales = ScaleGranularity::PerTensor};
      const Tensor x = f32_tensor({2}, {1e-44f, -3.3e-45f});
      const Fp8Tensor q = quantize_to_fp8(x, cfg);
      EXPECT_GT(q.scales.data<float>()[0], 0.0f);
      const Tensor d = dequantize_from_fp8(q);
      EXPECT_EQ(d.data<float>()[0], x.data<float>()[0]) << fp8_format_name(f);
      EXPECT_EQ(d.data<float>()[1], x.data<float>()[1]) << fp8_format_name(f);
      // Per channel, from subnormal to just normal absmax: relative error of the format, never all zeros.
      const std::vector<float> amax{1e-44f, 7e-43f, 3e-42f, 1e-40f, 1e-39f, 2e-38f, 1e-36f};
      std::vector<float> v;
      for (float a : amax)
        for (int i = 0; i < 8; ++i) v.push_back(a * float((i * 37) % 17 - 8) / 8.0f);
      const int64_t rows = int64_t(amax.size());
      const FP8Config per_row{.format = f, .saturate = saturate, .weight_scales = ScaleGranularity::PerChannel};
      const Fp8Tensor qc = quantize_to_fp8(f32_tensor({rows, 8}, v), per_row);
      const Tensor dc = dequantize_from_fp8(qc);
      const float rel = f == FP8Format::E4M3 ? 1.0f / 16 : 1.0f / 8;  // half a step of the 3 / 2 mantissa bits
      for (int64_t r = 0; r < rows; ++r)
        for (int i = 0; i < 8; ++i) {
          const float want = v[size_t(r * 8 + i)], got = dc.data<float>()[r * 8 + i];
          EXPECT_TRUE(std::isfinite(got));
          EXPECT_LE(std::fabs(got - want), rel * amax[size_t(r)] + 2 * denorm)
              << fp8_format_name(f) << " row " << r << " value " << want << " got " << got;
        }
    }
  // absmax 0 still gives scale 1.
  EXPECT_EQ(quantize_to_fp8(Tensor::zeros(DType::F32, {3}), {}).scales.data<float>()[0], 1.0f);
}

// quantize_to_fp8(I8 tensor) said "cannot convert dtype I8 to F32" (no function
// named); F64 was accepted though the docs listed F32 / F16 / BF16 only.
TEST(ApiUserRound13, QuantizeToFp8NamesItselfForAnIntegerTensor) {
  for (const DType dt : {DType::I8, DType::I32, DType::U8, DType::F8_E4M3, DType::BOOL}) {
    const std::string msg = error_of<InvalidArgument>([&] { (void)quantize_to_fp8(Tensor::zeros(dt, {2, 2}), {}); });
    EXPECT_TRUE(has(msg, "quantize_to_fp8: the input tensor's dtype is " + std::string(dtype_name(dt)) +
                             "; expected F32, F16, BF16 or F64"))
        << msg;
  }
  Tensor x = Tensor::zeros(DType::F64, {2});
  x.mutable_data<double>()[0] = 1.5;
  EXPECT_EQ(dequantize_from_fp8(quantize_to_fp8(x, {})).data<float>()[0], 1.5f);
}

// dequantize_from_fp8 decoded with a NaN or negative scale (NaN / sign-flipped output).
TEST(ApiUserRound13, DequantizeFromFp8RefusesScalesThatAreNotFinitePositive) {
  const Tensor x = f32_tensor({2, 2}, {1.0f, -2.0f, 3.0f, 0.5f});
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const float bad : {nan, -1.0f, 0.0f, inf}) {
    Fp8Tensor q = quantize_to_fp8(x, {.weight_scales = ScaleGranularity::PerChannel});
    q.scales.mutable_data<float>()[1] = bad;
    const std::string msg = error_of<InvalidArgument>([&] { (void)dequantize_from_fp8(q); });
    EXPECT_TRUE(has(msg, "dequantize_from_fp8: Fp8Tensor::scales[1] = ")) << msg;
    EXPECT_TRUE(has(msg, "must be finite and positive")) << msg;
  }
}

// KVCache(..., Device(7), ...) was accepted (bytes() took the CUDA branch);
// StreamDecoder(InvalidBytes(7)) too; Tensor::empty(DType(99), {4}) allocated
// 1 byte per element.
TEST(ApiUserRound13, EnumValuesOutsideTheirEnumAreRefused) {
  auto storage = std::make_shared<int>(0);
  std::string msg = error_of<InvalidArgument>([&] { KVCache c(1, 1, 4, 4, Device(7), storage); });
  EXPECT_TRUE(has(msg, "KVCache: device 7 is not a Device (cpu or cuda)")) << msg;
  using IB = StreamDecoder::InvalidBytes;
  msg = error_of<InvalidArgument>([] { StreamDecoder d(IB(7)); });
  EXPECT_TRUE(has(msg, "StreamDecoder: mode 7 is not an InvalidBytes value")) << msg;
  const Tokenizer tok = Tokenizer::load(demo_model());
  EXPECT_THROW(StreamDecoder(tok, IB(9)), InvalidArgument);
  EXPECT_EQ(StreamDecoder(IB::Replace).push_bytes("a\xff"), "a\xef\xbf\xbd");
  msg = error_of<InvalidArgument>([] { (void)Tensor::empty(DType(99), {4}); });
  EXPECT_TRUE(has(msg, "Tensor::empty / zeros / view: dtype 99 is not a DType")) << msg;
  EXPECT_THROW((void)Tensor::zeros(DType(12), {4}), InvalidArgument);
  EXPECT_THROW((void)Tensor::view(std::make_shared<HeapStorage>(64), 0, DType(200), {4}), InvalidArgument);
  EXPECT_EQ(Tensor::empty(DType::F64, {4}).nbytes(), 32u);
}

// Documented now, as the code does: the "gelu" (erf) activation loads; a
// missing source folder is a FormatError of check_quantized_side_files (it
// only warned); "gpu" parses as cuda; a default Tensor's sizes.
TEST(ApiUserRound13, DocumentedBehaviourOfActivationsSideFilesDevicesAndUndefinedTensors) {
  ModelConfig c = tiny_gpt2();
  c.activation = "gelu";
  EXPECT_NO_THROW((void)Model::random(c, 1));
  c.activation = "relu";
  EXPECT_THROW((void)Model::random(c, 1), Unsupported);
  std::string msg = error_of<FormatError>([] { check_quantized_side_files("/nonexistent", 0); });
  EXPECT_TRUE(has(msg, "check_quantized_side_files: /nonexistent: not a model folder (not found)")) << msg;
  msg = error_of<FormatError>([] { check_quantized_side_files(demo_model() / "config.json", 0); });
  EXPECT_TRUE(has(msg, "not a model folder (not a folder)")) << msg;
  EXPECT_EQ(parse_device("GPU"), Device::CUDA);
  msg = error_of<InvalidArgument>([] { (void)parse_device("tpu"); });
  EXPECT_TRUE(has(msg, "parse_device: unknown device 'tpu'")) << msg;
  const Tensor undefined;
  EXPECT_FALSE(undefined.defined());
  EXPECT_EQ(undefined.raw(), nullptr);
  EXPECT_EQ(undefined.numel(), 1);
  EXPECT_EQ(undefined.nbytes(), 4u);
}

// check_adaptive_options accepted 0.5000004 while the docs seemed to ask for a
// whole number of 0.000001 ("... a whole number of 0.000001 away from both
// ends": meant as the distance from 0 and 1), and adaptive_mode_name claimed an
// exact name for every allowed target though 0.8000004 gave "adaptive-r80"
// (0.8). The docs now say what the code does: any target at least 0.000001 from
// both ends is planned for as given; the name rounds it to 0.000001.
TEST(ApiUserRound13, AdaptiveTargetsBetweenMillionthsArePlannedAsGivenAndNamedRounded) {
  AdaptiveOptions o;
  auto m = Model::load(demo_model());
  o.target_reduction = 0.5000004;
  EXPECT_NO_THROW((void)check_adaptive_options(*m, o));
  EXPECT_GE(plan_adaptive_precision(*m, o).achieved_reduction, 0.5000004);
  o.target_reduction = 0.8000004;
  EXPECT_EQ(adaptive_mode_name(o), "adaptive-r80");
  EXPECT_EQ(parse_adaptive_mode(adaptive_mode_name(o)).target_reduction, 0.8);
  for (const double t : {0.8, 0.825, 0.123456}) {  // whole millionths: exact
    o.target_reduction = t;
    EXPECT_DOUBLE_EQ(parse_adaptive_mode(adaptive_mode_name(o)).target_reduction, t) << t;
  }
  for (const double t : {4e-7, 1.0 - 4e-7}) {  // less than 0.000001 from an end
    o.target_reduction = t;
    EXPECT_THROW((void)check_adaptive_options(*m, o), InvalidArgument) << t;
    EXPECT_THROW((void)adaptive_mode_name(o), InvalidArgument) << t;
  }
}

// Sampler::sample's NaN / Inf error began "generate: ..."; Model::random with
// vocab = hidden = 2^31 - 1 said "shape [...] of F32 ... overflows int64".
TEST(ApiUserRound13, MessagesNameTheFunctionAndTheConfigFields) {
  Sampler s(SamplingParams{});
  const std::vector<float> logits{0.0f, std::numeric_limits<float>::quiet_NaN()};
  const std::string msg = error_of<Error>([&] { (void)s.sample(logits); });
  EXPECT_TRUE(has(msg, "Sampler::sample: the model produced a non-finite logit (token 1: nan)")) << msg;
  EXPECT_FALSE(has(msg, "generate:")) << msg;
  ModelConfig c = tiny_gpt2();
  c.vocab_size = c.hidden_size = std::numeric_limits<int32_t>::max();
  c.num_heads = c.num_kv_heads = 1;
  c.head_dim = c.hidden_size;
  std::string m = error_of<InvalidArgument>([&] { (void)Model::random(c, 1); });
  EXPECT_TRUE(has(m, "Model::random: config: vocab_size 2147483647 x hidden_size 2147483647 F32 weights")) << m;
  EXPECT_TRUE(has(m, "overflow int64")) << m;
  m = error_of<InvalidArgument>([&] { (void)Model::random_quantized(c, 1, {}, "int8"); });
  EXPECT_TRUE(has(m, "Model::random_quantized: config: vocab_size")) << m;
}

}  // namespace
}  // namespace kq
