// save_gptq_model: kq's INT4 models written as AutoGPTQ v1 checkpoints. The layout is checked against
// tests/common/hub_pack.hpp (a packer written from AutoGPTQ's published layout, not from kq's writer), and the
// written folder is read back by kq's own GPTQ importer (Model::load): every layer's codes and zero points are
// the original ones, its scales the FP16-rounded originals, and the logits those of the kq model with its
// scales rounded so, bit for bit. Unsupported options are refused before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/hub_pack.hpp"
#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "formats/packed4.hpp"
#include "io/safetensors.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/eval.hpp"
#include "kq/gptq_export.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"
#include "quant/gptq_pack.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::has;

QuantizeOptions int4_options(const std::string& mode) {
  QuantizeOptions o;
  o.spec = parse_quant_mode(mode);
  return o;
}

const QuantizedLinear& quantized_op(const LinearSlot& s) {
  const auto* q = dynamic_cast<const QuantizedLinear*>(s.op->get());
  if (!q) throw std::runtime_error("layer " + s.name + " is not quantized");
  return *q;
}

/// A copy of the model folder `src` at `dst` with every F32 / BF16 tensor stored as F16 (an fp16 checkpoint,
/// what AutoGPTQ quantizes), config.json and the tokenizer files as they are.
fs::path f16_copy(const fs::path& src, const fs::path& dst) {
  fs::create_directories(dst);
  const TensorStore store = TensorStore::open_dir(src);
  std::map<std::string, Tensor> out;
  for (const std::string& name : store.names()) {
    const Tensor t = store.get(name);
    if (t.dtype() != DType::F32 && t.dtype() != DType::BF16) {
      out[name] = t;
      continue;
    }
    const Tensor f = t.to_f32();
    Tensor h = Tensor::empty(DType::F16, t.shape());
    convert_from_f32(DType::F16, f.data<float>(), h.mutable_data<uint16_t>(), size_t(t.numel()));
    out[name] = h;
  }
  write_safetensors(dst / "model.safetensors", out);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                        "generation_config.json"})
    if (fs::exists(src / f)) fs::copy_file(src / f, dst / f);
  return dst;
}

/// Every quantized layer of `orig` against the same layer of `back` (the exported folder loaded by kq's GPTQ
/// importer), element by element along K (the importer may pick another kq group size for a layer whose K is
/// below the group, and symmetric INT4 for a layer whose zero points are all 8): the same codes, the same zero
/// points, scales equal to the FP16-rounded originals.
void expect_same_layers(Model& orig, Model& back) {
  const auto a = orig.linear_layers(), b = back.linear_layers();
  ASSERT_EQ(a.size(), b.size());
  int quantized = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].name, b[i].name);
    if (!quantized_linear_spec(**a[i].op)) {
      EXPECT_FALSE(quantized_linear_spec(**b[i].op)) << a[i].name;
      continue;
    }
    ++quantized;
    const PackedWeight& p = quantized_op(a[i]).packed();
    const PackedWeight& q = quantized_op(b[i]).packed();
    ASSERT_EQ(p.N, q.N);
    ASSERT_EQ(p.K, q.K);
    std::vector<float> sp(size_t(p.blocks_per_row)), sq(size_t(q.blocks_per_row));
    for (int64_t n = 0; n < p.N; ++n) {
      ASSERT_EQ(std::memcmp(p.row_codes(n), q.row_codes(n), size_t(p.K / 2)), 0) << a[i].name << " row " << n;
      p.row_scales(n, sp.data());
      q.row_scales(n, sq.data());
      for (int64_t k = 0; k < p.K; k += 8) {
        const int64_t bp = k / p.block, bq = k / q.block;
        const int zp = p.weight_format() == formats::WeightFormat::INT4_SYM ? 8 : p.zero(n, bp);
        const int zq = q.weight_format() == formats::WeightFormat::INT4_SYM ? 8 : q.zero(n, bq);
        ASSERT_EQ(zp, zq) << a[i].name << " [" << n << ", " << k << "]";
        ASSERT_EQ(gptq_f16_scale(sp[size_t(bp)]), sq[size_t(bq)]) << a[i].name << " [" << n << ", " << k << "]";
      }
    }
    // The bias, F32 in kq, F16 in the file.
    const Tensor ba = quantized_op(a[i]).bias(), bb = quantized_op(b[i]).bias();
    ASSERT_EQ(ba.defined(), bb.defined()) << a[i].name;
    if (ba.defined()) {
      for (int64_t n = 0; n < ba.numel(); ++n)
        ASSERT_EQ(f16_to_f32(f32_to_f16(ba.data<float>()[n])), bb.data<float>()[n]) << a[i].name << " bias " << n;
    }
  }
  EXPECT_GT(quantized, 0);
}

/// `m` with every quantized layer's scales rounded to FP16 as the export rounds them (gptq_f16_scale).
void round_scales_to_f16(Model& m) {
  for (const LinearSlot& s : m.linear_layers()) {
    const auto* q = dynamic_cast<const QuantizedLinear*>(s.op->get());
    if (!q) continue;
    PackedWeight p = q->packed();
    p.scales = p.scales.clone();
    float* sc = p.scales.mutable_data<float>();
    for (int64_t i = 0; i < p.scales.numel(); ++i) sc[i] = gptq_f16_scale(sc[i]);
    *s.op = make_quantized_linear(std::move(p), q->bias());
  }
}

std::vector<int32_t> demo_tokens(size_t n) {
  const Tokenizer tok = Tokenizer::load(testing::demo_model());
  std::vector<int32_t> ids = tok.encode(testing::read_all(testing::demo_model() / "demo-eval.txt"));
  if (ids.size() > n) ids.resize(n);
  return ids;
}

// The packer's tensors are those of the test-side AutoGPTQ v1 packer (hub_pack.hpp) for the same codes, zero
// points and FP16 scales, symmetric and asymmetric, with a K tail shorter than the group.
TEST(GptqExport, PackedTensorsMatchAutoGptqV1Layout) {
  for (const char* mode : {"int4-g32", "int4-g64-asym", "int4-g128-asym"}) {
    SCOPED_TRACE(mode);
    const int64_t N = 24, K = 200;  // K: 1 full group of 128 and a tail of 72 (g128)
    Tensor w = Tensor::empty(DType::F32, {N, K});
    for (int64_t i = 0; i < N * K; ++i)
      w.mutable_data<float>()[i] = 0.05f * std::sin(0.37f * float(i)) + (i % 4 == 0 ? -0.08f : 0.01f);  // z >= 1
    const PackedWeight p = quantize_weight(w, parse_quant_mode(mode));
    const int64_t G = p.blocks_per_row;
    testing::HubCodes c;
    c.N = N;
    c.K = K;
    c.group = p.block;
    c.G = G;
    c.q.resize(size_t(N * K));
    c.z.resize(size_t(G * N));
    std::vector<float> s(static_cast<size_t>(G * N)), row(static_cast<size_t>(G));
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) c.q[size_t(n * K + k)] = formats::get_nibble(p.row_codes(n), k);
      p.row_scales(n, row.data());
      for (int64_t g = 0; g < G; ++g) {
        c.z[size_t(g * N + n)] = p.spec.symmetric ? 8 : p.zero(n, g);
        s[size_t(g * N + n)] = row[size_t(g)];
      }
    }
    c.scales = Tensor::empty(DType::F16, {G, N});
    convert_from_f32(DType::F16, s.data(), c.scales.mutable_data<uint16_t>(), s.size());
    const auto ref = testing::hub_layer_tensors(c, "l", testing::HubFormat::GptqV1);
    const GptqV1Tensors t = pack_gptq_v1(p, "l");
    for (const auto& [suffix, got] : std::map<std::string, Tensor>{
             {".qweight", t.qweight}, {".qzeros", t.qzeros}, {".scales", t.scales}, {".g_idx", t.g_idx}}) {
      const Tensor& want = ref.at("l" + suffix);
      ASSERT_EQ(got.dtype(), want.dtype()) << suffix;
      ASSERT_EQ(got.shape(), want.shape()) << suffix;
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), got.nbytes()), 0) << suffix;
    }
  }
}

// FP16 scales: rounded to nearest even with subnormals kept (as torch's .half()); one below 2^-25 becomes 0
// and is counted; one beyond 65504 is refused naming the layer. A zero point 0 (GPTQ v1 would store -1) is
// refused naming the layer, the group and the channel.
TEST(GptqExport, ScalesRoundToFp16AndOutOfRangeValuesAreRefused) {
  Tensor w = Tensor::empty(DType::F32, {8, 32});
  for (int64_t i = 0; i < 256; ++i) w.mutable_data<float>()[i] = float(i % 13) - 6.0f;
  PackedWeight p = quantize_weight(w, parse_quant_mode("int4-g32"));
  p.scales = p.scales.clone();
  float* s = p.scales.mutable_data<float>();
  s[0] = 1.0e-6f;   // an FP16 subnormal: kept, rounded to the nearest multiple of 2^-24
  s[1] = 1.0e-9f;   // below 2^-25: flushed to 0
  s[2] = 0.1f;
  GptqScaleRounding r;
  const GptqV1Tensors t = pack_gptq_v1(p, "blk.0.q", &r);
  EXPECT_EQ(r.flushed, 1);
  const uint16_t* h = t.scales.data<uint16_t>();  // [G = 1, N = 8]
  EXPECT_EQ(f16_to_f32(h[0]), std::ldexp(17.0f, -24));  // 1e-6 / 2^-24 = 16.78 -> 17
  EXPECT_EQ(f16_to_f32(h[1]), 0.0f);
  EXPECT_EQ(f16_to_f32(h[2]), gptq_f16_scale(0.1f));
  EXPECT_NE(gptq_f16_scale(0.1f), 0.1f);  // the rounding changes it
  s[3] = 70000.0f;
  const std::string big = error_of<InvalidArgument>([&] { pack_gptq_v1(p, "blk.0.q"); });
  EXPECT_TRUE(has(big, "blk.0.q") && has(big, "output channel 3") && has(big, "65504")) << big;

  PackedWeight a = quantize_weight(w, parse_quant_mode("int4-g32-asym"));
  a.zeros = a.zeros.clone();
  a.zeros.mutable_data<uint8_t>()[5] = 0;
  const std::string zero = error_of<InvalidArgument>([&] { pack_gptq_v1(a, "blk.0.k"); });
  EXPECT_TRUE(has(zero, "blk.0.k") && has(zero, "output channel 5") && has(zero, "zero point 0") &&
              has(zero, "int4-g32"))
      << zero;
  Tensor odd = Tensor::empty(DType::F32, {8, 36});
  for (int64_t i = 0; i < odd.numel(); ++i) odd.mutable_data<float>()[i] = 0.01f * float(i % 5);
  const std::string k36 = error_of<InvalidArgument>([&] { pack_gptq_v1(quantize_weight(odd, parse_quant_mode("int4-g32")), "x"); });
  EXPECT_TRUE(has(k36, "in_features") && has(k36, "multiple of 8")) << k36;
}

// gpt2-tiny (F32, Conv1D layers, biases, tied lm_head) quantized in each exportable group mode, written as
// GPTQ and read back by kq's importer: the same codes and zero points, FP16-rounded scales; config.json and
// quantize_config.json hold the GPTQ keys; no source .weight of a quantized layer is left in the file.
TEST(GptqExport, RoundTripThroughKqsGptqImporterKeepsCodesAndZeroPoints) {
  for (const char* mode : {"int4-g128", "int4-g32", "int4-g256", "int4-g64-asym", "int4-g128-asym"}) {
    SCOPED_TRACE(mode);
    testing::TempDir tmp;
    const QuantizeOptions o = int4_options(mode);
    auto m = load_quantized(testing::demo_model(), o);
    save_gptq_model(*m, o, tmp.path / "gptq");
    auto back = Model::load(tmp.path / "gptq");
    expect_same_layers(*m, *back);

    const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(tmp.path / "gptq/config.json"));
    const nlohmann::json& q = cfg.at("quantization_config");
    EXPECT_EQ(q.at("quant_method"), "gptq");
    EXPECT_EQ(q.at("bits"), 4);
    EXPECT_EQ(q.at("group_size"), o.spec.block_size);
    EXPECT_EQ(q.at("desc_act"), false);
    EXPECT_EQ(q.at("sym"), o.spec.symmetric);
    EXPECT_EQ(q.at("checkpoint_format"), "gptq");
    EXPECT_EQ(cfg.at("torch_dtype"), "float16");
    EXPECT_EQ(nlohmann::json::parse(testing::read_all(tmp.path / "gptq/quantize_config.json")), q);
    const TensorStore st = TensorStore::open_dir(tmp.path / "gptq");
    EXPECT_FALSE(st.contains("transformer.h.0.attn.c_attn.weight"));
    EXPECT_EQ(st.get("transformer.h.0.attn.c_attn.qweight").shape(), (Shape{128 / 8, 384}));
    EXPECT_EQ(st.get("transformer.h.0.attn.c_attn.bias").dtype(), DType::F16);
    EXPECT_EQ(st.get("transformer.wte.weight").dtype(), DType::F16);
    EXPECT_EQ(st.get("transformer.ln_f.weight").dtype(), DType::F16);
    for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt", "generation_config.json"})
      EXPECT_EQ(testing::read_all(tmp.path / "gptq" / f), testing::read_all(testing::demo_model() / f)) << f;
  }
}

// From an fp16 checkpoint (the unquantized tensors are then written as they are), the exported folder's logits
// are those of the kq model with its scales rounded to FP16 (round_scales_to_f16), bit for bit.
TEST(GptqExport, LogitsEqualTheKqModelWithFp16ScalesBitForBit) {
  testing::TempDir tmp;
  const fs::path src = f16_copy(testing::demo_model(), tmp.path / "f16");
  const std::vector<int32_t> ids = demo_tokens(48);
  for (const char* mode : {"int4-g128", "int4-g64-asym"}) {
    SCOPED_TRACE(mode);
    const QuantizeOptions o = int4_options(mode);
    auto m = load_quantized(src, o);
    save_gptq_model(*m, o, tmp.path / mode);
    auto back = Model::load(tmp.path / mode);
    const std::vector<float> before = testing::prefill_logits(*m, ids);
    round_scales_to_f16(*m);
    const std::vector<float> ref = testing::prefill_logits(*m, ids), got = testing::prefill_logits(*back, ids);
    ASSERT_EQ(ref.size(), got.size());
    EXPECT_EQ(std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float)), 0);
    EXPECT_NE(std::memcmp(before.data(), ref.data(), ref.size() * sizeof(float)), 0);  // the rounding shows
  }
}

// The perplexity change FP16 scales bring (README.md "Quantized folders" gives the figures): gpt2-tiny on its
// demo text, kq's int4-g128 against the exported GPTQ folder, within 0.5 %.
TEST(GptqExport, Fp16ScalesChangePerplexityLittleOnTheDemoModel) {
  testing::TempDir tmp;
  const QuantizeOptions o = int4_options("int4-g128");
  auto m = load_quantized(testing::demo_model(), o);
  save_gptq_model(*m, o, tmp.path / "gptq");
  auto back = Model::load(tmp.path / "gptq");
  const std::vector<int32_t> ids = demo_tokens(100000);
  const double a = evaluate_perplexity(*m, ids).ppl, b = evaluate_perplexity(*back, ids).ppl;
  std::printf("gpt2-tiny int4-g128 perplexity: kq %.6f, GPTQ export %.6f (%+.4f %%)\n", a, b, 100.0 * (b - a) / a);
  EXPECT_NEAR(b, a, 0.005 * a);
}

// llama-small (BF16, tied embeddings, GQA, K = 688 with a tail group) on WikiText-2 test: the layers round-trip, and
// the perplexity change of FP16 scales (8 windows of its context).
TEST(GptqExport, LlamaSmallRoundTripAndPerplexity) {
  KQ_REQUIRE_SHARED("models/llama-small");
  KQ_REQUIRE_SHARED("data/text/wikitext-2-test.txt");
  const fs::path llama = testing::shared_dir() / "models/llama-small";
  const Tokenizer tok = Tokenizer::load(llama);
  std::vector<int32_t> ids = tok.encode(testing::read_all(testing::shared_dir() / "data/text/wikitext-2-test.txt"));
  for (const char* mode : {"int4-g128", "int4-g128-asym"}) {
    SCOPED_TRACE(mode);
    testing::TempDir tmp;
    const QuantizeOptions o = int4_options(mode);
    auto m = load_quantized(llama, o);
    save_gptq_model(*m, o, tmp.path / "gptq");
    auto back = Model::load(tmp.path / "gptq");
    expect_same_layers(*m, *back);
    const double a = evaluate_perplexity(*m, ids, 0, 8).ppl, b = evaluate_perplexity(*back, ids, 0, 8).ppl;
    std::printf("llama-small %s perplexity (8 windows): kq %.6f, GPTQ export %.6f (%+.4f %%)\n", mode, a, b,
                100.0 * (b - a) / a);
    EXPECT_NEAR(b, a, 0.005 * a);
  }
}

// Options GPTQ cannot hold are refused before anything is read or written, naming the option and the mode.
TEST(GptqExport, UnsupportedOptionsAreRefusedBeforeAnyWork) {
  for (const char* mode : {"nf4", "fp4", "int8", "int8-wo", "fp8", "awq", "awq-sym", "nf4-b128-nodq"}) {
    const std::string e = error_of<InvalidArgument>([&] { check_gptq_options(int4_options(mode)); });
    EXPECT_TRUE(has(e, parse_quant_mode(mode).name()) && has(e, "int4-gB")) << mode << ": " << e;
    if (parse_quant_mode(mode).awq) {
      EXPECT_TRUE(has(e, "per-input-channel scales")) << e;
    }
  }
  QuantizeOptions o = int4_options("int4-g128");
  EXPECT_NO_THROW(check_gptq_options(o));
  EXPECT_NO_THROW(check_gptq_options(int4_options("int4-g32-asym")));
  o.quantize_lm_head = true;
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_gptq_options(o); }), "quantize_lm_head"));
  o.quantize_lm_head = false;
  o.keep_patterns = {"c_fc"};
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_gptq_options(o); }), "keep_patterns ('c_fc')"));
  o.keep_patterns.clear();
  o.layer_specs["transformer.h.0.mlp.c_fc"] = parse_quant_mode("int8");
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_gptq_options(o); }), "layer_specs"));

  // save_gptq_model checks them first: nothing is written.
  testing::TempDir tmp;
  const QuantizeOptions nf4 = int4_options("nf4");
  auto m = load_quantized(testing::demo_model(), nf4);
  const std::string e = error_of<InvalidArgument>([&] { save_gptq_model(*m, nf4, tmp.path / "out"); });
  EXPECT_TRUE(has(e, "nf4")) << e;
  EXPECT_FALSE(fs::exists(tmp.path / "out"));

  ModelConfig c = load_model_config(testing::demo_model());
  EXPECT_NO_THROW(check_gptq_model_config(c, "m"));
  c.arch = Arch::Phi3;
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_gptq_model_config(c, "m"); }), "Phi-3"));
  c.arch = Arch::Llama;
  c.intermediate_size = 100;
  const std::string ffn = error_of<InvalidArgument>([&] { check_gptq_model_config(c, "m"); });
  EXPECT_TRUE(has(ffn, "intermediate_size is 100") && has(ffn, "multiple of 8")) << ffn;
}

// A folder save_gptq_model wrote may be replaced with overwrite = true (by either format); other GPTQ folders
// (no kq tag in quantization_config.meta.quantizer) may not.
TEST(GptqExport, OverwriteReplacesOnlyAFolderKqWrote) {
  testing::TempDir tmp;
  const QuantizeOptions o = int4_options("int4-g128");
  auto m = load_quantized(testing::demo_model(), o);
  const fs::path out = tmp.path / "gptq";
  save_gptq_model(*m, o, out);
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { save_gptq_model(*m, o, out); }), "not empty"));
  EXPECT_NO_THROW(save_gptq_model(*m, o, out, /*overwrite=*/true));
  nlohmann::json cfg = nlohmann::json::parse(testing::read_all(out / "config.json"));
  EXPECT_TRUE(has(cfg["quantization_config"]["meta"]["quantizer"][0].get<std::string>(), "kq:"));
  cfg["quantization_config"].erase("meta");  // as AutoGPTQ writes it
  testing::write_text(out / "config.json", cfg.dump());
  const std::string e = error_of<InvalidArgument>([&] { save_gptq_model(*m, o, out, true); });
  EXPECT_TRUE(has(e, "not a folder written by kq quantize")) << e;
}

}  // namespace
}  // namespace kq
