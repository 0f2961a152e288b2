// save_awq_model: kq's AWQ models written as AutoAWQ GEMM checkpoints, the input scales s folded into the
// operators before the layers. The packing is checked byte for byte against a packer written here from
// AutoAWQ's published order (WQLinear_GEMM.from_linear), not from kq's writer; the written folder is read back
// by kq's own AutoAWQ importer (Model::load): the same codes and zero points, the scales kq's ones (divided by
// the folded s for up_proj and v_proj) rounded to FP16, the norms w / s rounded to FP16, and logits close to
// the kq AWQ model's. What AutoAWQ cannot hold is refused before anything is written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "common/tiny_folder.hpp"
#include "formats/packed4.hpp"
#include "io/safetensors.hpp"
#include "kernels/awq_linear.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/awq_export.hpp"
#include "kq/optimizer.hpp"
#include "quant/awq_pack.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::has;

/// Deterministic token ids in [0, vocab): calibration text.
std::vector<int32_t> token_ids(int64_t vocab, int n, uint32_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint32_t x = seed;
  for (int32_t& t : ids) {
    x = x * 1664525u + 1013904223u;
    t = int32_t((x >> 8) % uint32_t(vocab));
  }
  return ids;
}

/// AWQ options for the tiny Llama folders, with the layers awq_unit_scale_layers names fixed at s = 1.
QuantizeOptions awq_options(const std::string& mode, const fs::path& dir, bool unit_scales = true) {
  QuantizeOptions o;
  o.spec = parse_quant_mode(mode);
  o.calibration.tokens = token_ids(testing::kVocab, 96, 7);
  o.calibration.window = 32;
  o.calibration.search_rows = 64;
  o.calibration.grid = 5;
  if (unit_scales) o.awq_unit_scale_layers = awq_unit_scale_layers(load_model_config(dir));
  return o;
}

const AwqLinear& awq_op(const LinearSlot& s) {
  const auto* a = dynamic_cast<const AwqLinear*>(s.op->get());
  if (!a) throw std::runtime_error("layer " + s.name + " is not AWQ");
  return *a;
}

float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

/// The divisor save_awq_model folds into output row n of layer `name` of `m`: s of down_proj for up_proj,
/// s of o_proj (query head of the kv head, same dimension) for v_proj, 1 otherwise.
float row_divisor(Model& m, const std::string& name, int64_t n) {
  const ModelConfig& c = m.config();
  const auto find = [&](const std::string& other) -> const AwqLinear& {
    for (const LinearSlot& s : m.linear_layers())
      if (s.name == other) return awq_op(s);
    throw std::runtime_error("no layer " + other);
  };
  const auto base = [&](const char* suffix) { return name.substr(0, name.size() - std::strlen(suffix)); };
  if (name.ends_with("mlp.up_proj")) return find(base("up_proj") + "down_proj").scales().data<float>()[n];
  if (name.ends_with("self_attn.v_proj")) {
    const int64_t rep = c.num_heads / c.num_kv_heads, h = n / c.head_dim, d = n % c.head_dim;
    return find(base("v_proj") + "o_proj").scales().data<float>()[h * rep * c.head_dim + d];
  }
  return 1.0f;
}

/// Every layer of `orig` (kq's AWQ model) against `back` (its AutoAWQ export read by kq's importer): the same
/// codes and zero points, scales = kq's scale / the row's divisor, rounded to FP16; the bias likewise.
void expect_same_layers(Model& orig, Model& back) {
  const auto a = orig.linear_layers(), b = back.linear_layers();
  ASSERT_EQ(a.size(), b.size());
  int quantized = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].name, b[i].name);
    if (a[i].is_lm_head) continue;
    ++quantized;
    const PackedWeight& p = dynamic_cast<const QuantizedLinear&>(awq_op(a[i]).inner()).packed();
    const auto* qb = dynamic_cast<const QuantizedLinear*>(b[i].op->get());
    ASSERT_NE(qb, nullptr) << a[i].name;
    const PackedWeight& q = qb->packed();
    ASSERT_EQ(p.N, q.N);
    ASSERT_EQ(p.K, q.K);
    std::vector<float> sp(size_t(p.blocks_per_row)), sq(size_t(q.blocks_per_row));
    for (int64_t n = 0; n < p.N; ++n) {
      ASSERT_EQ(std::memcmp(p.row_codes(n), q.row_codes(n), size_t(p.K / 2)), 0) << a[i].name << " row " << n;
      p.row_scales(n, sp.data());
      q.row_scales(n, sq.data());
      const float div = row_divisor(orig, a[i].name, n);
      for (int64_t k = 0; k < p.K; k += 8) {
        const int64_t bp = k / p.block, bq = k / q.block;
        const int zp = p.weight_format() == formats::WeightFormat::INT4_SYM ? 8 : p.zero(n, bp);
        const int zq = q.weight_format() == formats::WeightFormat::INT4_SYM ? 8 : q.zero(n, bq);
        ASSERT_EQ(zp, zq) << a[i].name << " [" << n << ", " << k << "]";
        ASSERT_EQ(f16_round(sp[size_t(bp)] / div), sq[size_t(bq)]) << a[i].name << " [" << n << ", " << k << "]";
      }
    }
  }
  EXPECT_EQ(quantized, 7 * orig.config().num_layers);
}

/// The norms of the export: f16(w / s) (Gemma: f16((1 + w) / s − 1)), s that of the layers they norm.
void expect_folded_norms(Model& orig, const fs::path& src, const fs::path& out) {
  const TensorStore a = TensorStore::open_dir(src), b = TensorStore::open_dir(out);
  const ModelConfig& c = orig.config();
  std::map<std::string, const AwqLinear*> ops;
  for (const LinearSlot& s : orig.linear_layers())
    if (!s.is_lm_head) ops[s.name] = &awq_op(s);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const auto& [norm, layer] : {std::pair<std::string, std::string>{"input_layernorm", "self_attn.q_proj"},
                                      {"post_attention_layernorm", "mlp.up_proj"}}) {
      const Tensor w = a.get(p + norm + ".weight").to_f32(), got = b.get(p + norm + ".weight");
      ASSERT_EQ(got.dtype(), DType::F16);
      const float* s = ops.at(p + layer)->scales().data<float>();
      for (int64_t k = 0; k < w.numel(); ++k) {
        const double v = double(w.data<float>()[k]);
        const float want = c.norm_offset ? float((1.0 + v) / s[k] - 1.0) : float(v / s[k]);
        ASSERT_EQ(f16_to_f32(got.data<uint16_t>()[k]), f16_round(want)) << p + norm << " " << k;
      }
    }
  }
}

/// Gives every AWQ layer of `m` new scales s in [0.5, 2] (its packed weight kept), shared as save_awq_model
/// needs them: one s for q/k/v and one for gate/up of a layer; o_proj's equal over the query heads of a kv head.
/// The AWQ search on the tiny random models often keeps s = 1 (α = 0) for some layers, which would leave
/// folds untested; the export folds whatever s the model holds, and the logits compared are this model's.
void set_scales(Model& m) {
  const ModelConfig& c = m.config();
  uint32_t x = 12345;
  const auto draw = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) {
      x = x * 1664525u + 1013904223u;
      f = std::exp2(float(x >> 8) / float(1u << 24) * 2.0f - 1.0f);
    }
    return v;
  };
  std::map<std::string, std::vector<float>> shared;  // the members' module prefix -> s
  for (const LinearSlot& slot : m.linear_layers()) {
    if (slot.is_lm_head) continue;
    const AwqLinear& op = awq_op(slot);
    const int64_t K = op.in_features();
    const size_t dot = slot.name.rfind('.');
    const std::string module = slot.name.substr(dot + 1), prefix = slot.name.substr(0, dot);
    std::vector<float> s;
    if (module == "q_proj" || module == "k_proj" || module == "v_proj" || module == "gate_proj" || module == "up_proj") {
      if (!shared.count(prefix)) shared[prefix] = draw(K);  // "...self_attn" (q/k/v) or "...mlp" (gate/up)
      s = shared[prefix];
    } else if (module == "o_proj") {
      const int64_t rep = c.num_heads / c.num_kv_heads, D = c.head_dim;
      const std::vector<float> kv = draw(c.num_kv_heads * D);
      s.resize(size_t(K));
      for (int64_t j = 0; j < K; ++j) s[size_t(j)] = kv[size_t((j / D) / rep * D + j % D)];
    } else {
      s = draw(K);
    }
    Tensor t = Tensor::empty(DType::F32, {K});
    std::copy(s.begin(), s.end(), t.mutable_data<float>());
    const PackedWeight p = dynamic_cast<const QuantizedLinear&>(op.inner()).packed();
    *slot.op = make_awq_linear(p, op.bias(), t);
  }
}

/// max |a − b| / max |a|.
double rel_max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
    m = std::max(m, std::fabs(double(a[i])));
  }
  return d / m;
}

// AutoAWQ's WQLinear_GEMM.from_linear, written from its published loop: intweight [K, N] (codes transposed),
// for each column block c and i in 0..7: qweight[:, c] |= intweight[:, 8c + order[i]] << 4i, order =
// {0, 2, 4, 6, 1, 3, 5, 7}; qzeros the same over [G, N]; scales [G, N] FP16. Compared byte for byte with
// pack_awq_gemm, asymmetric and symmetric, with and without row divisors.
TEST(AwqExport, PackedTensorsMatchAutoAwqGemmLayout) {
  constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  for (const char* mode : {"int4-g32-asym", "int4-g64", "int4-g32"}) {
    for (const bool divide : {false, true}) {
      SCOPED_TRACE(std::string(mode) + (divide ? " divided" : ""));
      const int64_t N = 24, K = 128;
      Tensor w = Tensor::empty(DType::F32, {N, K});
      for (int64_t i = 0; i < N * K; ++i)
        w.mutable_data<float>()[i] = 0.05f * std::sin(0.37f * float(i)) + (i % 4 == 0 ? -0.08f : 0.01f);
      const PackedWeight p = quantize_weight(w, parse_quant_mode(mode));
      const int64_t G = K / p.block;
      std::vector<float> div(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; ++n) div[size_t(n)] = divide ? 0.3f + 0.11f * float(n) : 1.0f;
      // The unpacked matrices as AutoAWQ holds them before packing.
      std::vector<uint32_t> intweight(size_t(K * N)), zeros(size_t(G * N));
      std::vector<uint16_t> scales(size_t(G * N));
      std::vector<float> row(static_cast<size_t>(G));
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = 0; k < K; ++k) intweight[size_t(k * N + n)] = formats::get_nibble(p.row_codes(n), k);
        p.row_scales(n, row.data());
        for (int64_t g = 0; g < G; ++g) {
          zeros[size_t(g * N + n)] = p.spec.symmetric ? 8u : p.zero(n, g);
          scales[size_t(g * N + n)] = f32_to_f16(row[size_t(g)] / div[size_t(n)]);
        }
      }
      std::vector<int32_t> qweight(size_t(K * N / 8), 0), qzeros(size_t(G * N / 8), 0);
      for (int64_t c = 0; c < N / 8; ++c)
        for (int i = 0; i < 8; ++i) {
          for (int64_t k = 0; k < K; ++k)
            qweight[size_t(k * (N / 8) + c)] |= int32_t(intweight[size_t(k * N + 8 * c + kOrder[i])] << (4 * i));
          for (int64_t g = 0; g < G; ++g)
            qzeros[size_t(g * (N / 8) + c)] |= int32_t(zeros[size_t(g * N + 8 * c + kOrder[i])] << (4 * i));
        }
      const AwqGemmTensors t = divide ? pack_awq_gemm(p, "l", div) : pack_awq_gemm(p, "l");
      ASSERT_EQ(t.qweight.dtype(), DType::I32);
      ASSERT_EQ(t.qweight.shape(), (Shape{K, N / 8}));
      ASSERT_EQ(t.qzeros.shape(), (Shape{G, N / 8}));
      ASSERT_EQ(t.scales.dtype(), DType::F16);
      ASSERT_EQ(t.scales.shape(), (Shape{G, N}));
      EXPECT_EQ(std::memcmp(t.qweight.raw(), qweight.data(), t.qweight.nbytes()), 0);
      EXPECT_EQ(std::memcmp(t.qzeros.raw(), qzeros.data(), t.qzeros.nbytes()), 0);
      EXPECT_EQ(std::memcmp(t.scales.raw(), scales.data(), t.scales.nbytes()), 0);
    }
  }
  // What AutoAWQ's layout cannot hold: K not a multiple of the group, N not a multiple of 8, a scale beyond
  // FP16, a divisor that is not finite and > 0.
  Tensor tail = Tensor::empty(DType::F32, {8, 48});
  for (int64_t i = 0; i < tail.numel(); ++i) tail.mutable_data<float>()[i] = 0.01f * float(i % 7);
  const std::string k48 =
      error_of<InvalidArgument>([&] { pack_awq_gemm(quantize_weight(tail, parse_quant_mode("int4-g32")), "t"); });
  EXPECT_TRUE(has(k48, "'t'") && has(k48, "multiple of the group size 32")) << k48;
  Tensor n12 = Tensor::empty(DType::F32, {12, 32});
  for (int64_t i = 0; i < n12.numel(); ++i) n12.mutable_data<float>()[i] = 0.01f * float(i % 7);
  const std::string e12 =
      error_of<InvalidArgument>([&] { pack_awq_gemm(quantize_weight(n12, parse_quant_mode("int4-g32")), "n"); });
  EXPECT_TRUE(has(e12, "out_features") && has(e12, "multiple of 8")) << e12;
  Tensor w32 = Tensor::empty(DType::F32, {8, 32});
  for (int64_t i = 0; i < w32.numel(); ++i) w32.mutable_data<float>()[i] = 0.01f * float(i % 7 + 1);
  const PackedWeight p32 = quantize_weight(w32, parse_quant_mode("int4-g32"));
  std::vector<float> tiny(8, 1.0f);
  tiny[3] = 1e-9f;  // scale / 1e-9 overflows FP16
  const std::string over = error_of<InvalidArgument>([&] { pack_awq_gemm(p32, "o", tiny); });
  EXPECT_TRUE(has(over, "'o'") && has(over, "output channel 3") && has(over, "65504")) << over;
  tiny[3] = 0.0f;
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { pack_awq_gemm(p32, "o", tiny); }), "not finite and > 0"));
}

// A grouped-query tiny Llama (4 query heads, 2 kv heads; F16, so the unquantized tensors are written as they
// are) quantized with AWQ (o_proj's s fixed at 1: awq_unit_scale_layers), exported and read back: codes, zero
// points and scales as expect_same_layers says, the norms folded, config.json's AutoAWQ keys, and logits within
// 0.5 % of the largest logit of the kq model's. The tolerance: the export rounds kq's F32 group scales and the
// folded norm gains to FP16 (relative error up to 2^-11 = 4.9e-4 each, in every layer), and kq then computes in
// F32 from those; the measured difference is printed (4e-4 to 1e-3 here), the bound about 5 times that.
TEST(AwqExport, GroupedQueryRoundTripThroughKqsAwqImporter) {
  for (const char* mode : {"awq-g32", "awq-g64", "awq-g32-sym"}) {
    SCOPED_TRACE(mode);
    testing::TempDir tmp;
    const fs::path src = testing::write_folder(tmp.path / "src", {false, DType::F16, false});
    const QuantizeOptions o = awq_options(mode, src);
    ASSERT_EQ(o.awq_unit_scale_layers.size(), 2u);  // both layers' o_proj
    auto m = Model::load(src);
    const QuantizeReport rep = quantize_model(*m, o);
    for (const LayerQuantization& l : rep.layers) {
      EXPECT_EQ(l.awq_unit_scale, l.name.ends_with("o_proj")) << l.name;
      if (l.name.ends_with("o_proj")) {
        const Tensor& s = awq_op(m->linear_layers()[size_t(&l - rep.layers.data())]).scales();
        for (int64_t k = 0; k < s.numel(); ++k) ASSERT_EQ(s.data<float>()[k], 1.0f) << l.name;
      }
    }
    save_awq_model(*m, o, tmp.path / "awq");
    auto back = Model::load(tmp.path / "awq");
    expect_same_layers(*m, *back);
    expect_folded_norms(*m, src, tmp.path / "awq");
    // Scales away from 1 everywhere, o_proj's equal over the query heads of a kv head: still foldable.
    set_scales(*m);
    save_awq_model(*m, o, tmp.path / "awq", /*overwrite=*/true);
    back = Model::load(tmp.path / "awq");
    expect_same_layers(*m, *back);
    expect_folded_norms(*m, src, tmp.path / "awq");

    const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(tmp.path / "awq/config.json"));
    const nlohmann::json& q = cfg.at("quantization_config");
    EXPECT_EQ(q.at("quant_method"), "awq");
    EXPECT_EQ(q.at("bits"), 4);
    EXPECT_EQ(q.at("group_size"), o.spec.block_size);
    EXPECT_EQ(q.at("zero_point"), true);
    EXPECT_EQ(q.at("version"), "gemm");
    EXPECT_EQ(cfg.at("torch_dtype"), "float16");
    const TensorStore st = TensorStore::open_dir(tmp.path / "awq");
    EXPECT_FALSE(st.contains("model.layers.0.self_attn.q_proj.weight"));
    EXPECT_FALSE(st.contains("model.layers.0.self_attn.q_proj.awq_scales"));
    EXPECT_EQ(st.get("model.layers.0.self_attn.q_proj.qweight").shape(), (Shape{64, 64 / 8}));
    EXPECT_EQ(st.get("lm_head.weight").dtype(), DType::F16);

    const std::vector<int32_t> ids = token_ids(testing::kVocab, 24, 99);
    const std::vector<float> a = testing::prefill_logits(*m, ids), b = testing::prefill_logits(*back, ids);
    const double d = rel_max_diff(a, b);
    std::printf("%s tiny GQA Llama: max |logit difference| / max |logit| = %.3e\n", mode, d);
    EXPECT_LT(d, 5e-3);
  }
}

// Multi-head attention (4 kv heads): o_proj's s is searched and folded into v_proj's rows, down_proj's into
// up_proj's; a Gemma folder folds into its (1 + w) gains as (1 + w) / s − 1.
TEST(AwqExport, MultiHeadAndGemmaFoldEveryScale) {
  for (const bool gemma : {false, true}) {
    const char* type = gemma ? "gemma" : "llama";
    SCOPED_TRACE(type);
    testing::TempDir tmp;
    testing::TinyFolder f{false, DType::F16, true};
    f.kv_heads = 4;
    f.gemma = gemma;
    const fs::path src = testing::write_folder(tmp.path / "src", f);
    const QuantizeOptions o = awq_options("awq-g32", src);
    EXPECT_TRUE(o.awq_unit_scale_layers.empty());
    auto m = Model::load(src);
    (void)quantize_model(*m, o);
    set_scales(*m);  // every fold tested, o_proj's s its own per query head
    save_awq_model(*m, o, tmp.path / "awq");
    auto back = Model::load(tmp.path / "awq");
    expect_same_layers(*m, *back);
    expect_folded_norms(*m, src, tmp.path / "awq");
    const std::vector<int32_t> ids = token_ids(testing::kVocab, 24, 5);
    const double d = rel_max_diff(testing::prefill_logits(*m, ids), testing::prefill_logits(*back, ids));
    std::printf("%s tiny MHA: max |logit difference| / max |logit| = %.3e\n", type, d);
    EXPECT_LT(d, 5e-3);
  }
}

// Grouped-query attention without awq_unit_scale_layers: o_proj's searched s differs over the query heads of a
// kv head, so it cannot be folded into v_proj: refused, naming the layer and the remedy; nothing written.
TEST(AwqExport, GroupedQueryWithSearchedOProjScalesIsRefused) {
  testing::TempDir tmp;
  const fs::path src = testing::write_folder(tmp.path / "src", {false, DType::F16, true});
  const QuantizeOptions o = awq_options("awq-g32", src, /*unit_scales=*/false);
  auto m = Model::load(src);
  (void)quantize_model(*m, o);
  const std::string e = error_of<InvalidArgument>([&] { save_awq_model(*m, o, tmp.path / "awq"); });
  EXPECT_TRUE(has(e, "model.layers.0.self_attn.o_proj") && has(e, "awq_unit_scale_layers") && has(e, "kv head"))
      << e;
  EXPECT_FALSE(fs::exists(tmp.path / "awq"));

  QuantizeOptions bad = o;
  bad.awq_unit_scale_layers = {"model.layers.0.attn.o_proj"};
  auto m2 = Model::load(src);
  const std::string n = error_of<InvalidArgument>([&] { quantize_model(*m2, bad); });
  EXPECT_TRUE(has(n, "awq_unit_scale_layers") && has(n, "model.layers.0.attn.o_proj")) << n;
}

// Options and models AutoAWQ cannot hold are refused before anything is read or written.
TEST(AwqExport, UnsupportedOptionsAndModelsAreRefusedBeforeAnyWork) {
  for (const char* mode : {"nf4", "int4-g128", "int4-g64-asym", "int8", "fp8", "fp4"}) {
    QuantizeOptions o;
    o.spec = parse_quant_mode(mode);
    const std::string e = error_of<InvalidArgument>([&] { check_awq_options(o); });
    EXPECT_TRUE(has(e, parse_quant_mode(mode).name()) && has(e, "AWQ mode") && has(e, "no AWQ scales")) << e;
  }
  QuantizeOptions o;
  for (const char* mode : {"awq", "awq-g32", "awq-g64-sym", "awq-bf16"}) {
    o.spec = parse_quant_mode(mode);
    EXPECT_NO_THROW(check_awq_options(o)) << mode;
  }
  o.quantize_lm_head = true;
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_awq_options(o); }), "quantize_lm_head"));
  o.quantize_lm_head = false;
  o.keep_patterns = {"down_proj"};
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_awq_options(o); }), "keep_patterns ('down_proj')"));
  o.keep_patterns.clear();
  o.layer_specs["model.layers.0.mlp.down_proj"] = parse_quant_mode("int8");
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_awq_options(o); }), "layer_specs"));

  // Models: GPT-2 (a GELU before c_proj), Phi-3 (fused), widths that are no multiple of 8 or of the group.
  ModelConfig g = load_model_config(testing::demo_model());
  const std::string gpt2 = error_of<InvalidArgument>([&] { check_awq_model_config(g, "m", 128); });
  EXPECT_TRUE(has(gpt2, "GPT-2") && has(gpt2, "GELU")) << gpt2;
  testing::TempDir tmp;
  const fs::path src = testing::write_folder(tmp.path / "src", {false, DType::F16, true});
  ModelConfig c = load_model_config(src);
  EXPECT_NO_THROW(check_awq_model_config(c, "m", 64));
  const std::string g128 = error_of<InvalidArgument>([&] { check_awq_model_config(c, "m", 128); });
  EXPECT_TRUE(has(g128, "hidden_size is 64, not a multiple of 128") && has(g128, "group size")) << g128;
  c.arch = Arch::Phi3;
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { check_awq_model_config(c, "m", 32); }), "Phi-3"));
  c.arch = Arch::Llama;
  c.intermediate_size = 100;
  const std::string ffn = error_of<InvalidArgument>([&] { check_awq_model_config(c, "m", 32); });
  EXPECT_TRUE(has(ffn, "intermediate_size is 100") && has(ffn, "multiple of 8")) << ffn;
  EXPECT_EQ(awq_unit_scale_layers(load_model_config(src)),
            (std::vector<std::string>{"model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj"}));

  // save_awq_model checks them first: nothing is written.
  QuantizeOptions nf4;
  nf4.spec = parse_quant_mode("nf4");
  auto m = load_quantized(src, nf4);
  const std::string e = error_of<InvalidArgument>([&] { save_awq_model(*m, nf4, tmp.path / "out"); });
  EXPECT_TRUE(has(e, "nf4")) << e;
  EXPECT_FALSE(fs::exists(tmp.path / "out"));
  const QuantizeOptions a = awq_options("awq-g128", src);
  const std::string w = error_of<InvalidArgument>([&] { save_awq_model(*m, a, tmp.path / "out"); });
  EXPECT_TRUE(has(w, "multiple of 128")) << w;
  EXPECT_FALSE(fs::exists(tmp.path / "out"));
}

// llama-small's intermediate_size 688 is a multiple of no AWQ group size (32..256), so AutoAWQ (whose layers
// hold K / group_size whole groups) cannot hold its down_proj: refused from the config, before any work.
TEST(AwqExport, LlamaSmallIsRefusedForItsIntermediateSize) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const fs::path llama = testing::shared_dir() / "models/llama-small";
  const ModelConfig c = load_model_config(llama);
  for (const int64_t g : {32, 64, 128, 256}) {
    const std::string e = error_of<InvalidArgument>([&] { check_awq_model_config(c, llama, g); });
    EXPECT_TRUE(has(e, "intermediate_size is 688") && has(e, "llama-small")) << e;
  }
}

// A folder save_awq_model wrote may be replaced with overwrite = true; one without kq's tag may not.
TEST(AwqExport, OverwriteReplacesOnlyAFolderKqWrote) {
  testing::TempDir tmp;
  const fs::path src = testing::write_folder(tmp.path / "src", {false, DType::F16, true});
  const QuantizeOptions o = awq_options("awq-g64", src);
  auto m = load_quantized(src, o);
  const fs::path out = tmp.path / "awq";
  save_awq_model(*m, o, out);
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { save_awq_model(*m, o, out); }), "not empty"));
  EXPECT_NO_THROW(save_awq_model(*m, o, out, /*overwrite=*/true));
  nlohmann::json cfg = nlohmann::json::parse(testing::read_all(out / "config.json"));
  cfg["quantization_config"].erase("meta");  // as AutoAWQ writes it
  testing::write_text(out / "config.json", cfg.dump());
  EXPECT_TRUE(has(error_of<InvalidArgument>([&] { save_awq_model(*m, o, out, true); }), "not a folder written by kq"));
}

}  // namespace
}  // namespace kq
