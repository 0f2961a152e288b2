// AWQ (Lin et al., MLSys 2024): mode names, the AwqLinear op against a
// higher-precision recomputation, its folder round trip, the scale search
// against plain round-to-nearest, and whole models (the shipped demo model;
// gpt2-small / llama-small with WikiText-2 valid as calibration when the shared
// data is there) against the INT4 baseline AWQ improves on.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "api/awq.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kernels/awq_linear.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"
#include "quant/packed_weight.hpp"

using namespace kq;

namespace {

using kq::testing::read_all;

Tensor random_matrix(int64_t R, int64_t C, uint32_t seed, float sigma = 0.05f) {
  Tensor t = Tensor::empty(DType::F32, {R, C});
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  float* p = t.mutable_data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(g);
  return t;
}

/// Activations with a few salient input channels (10-50x the others), as LLM activations have.
awq::ActivationStats outlier_stats(int64_t S, int64_t K, uint32_t seed) {
  awq::ActivationStats st;
  st.sum_abs.assign(size_t(K), 0.0);
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t r = 0; r < S; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const float gain = k % 37 == 5 ? 30.0f : 1.0f;
      const float v = d(g) * gain;
      st.samples.push_back(v);
      st.sum_abs[size_t(k)] += std::fabs(double(v));
    }
  st.rows = st.sample_rows = S;
  return st;
}

/// ||X·(W − Ŵ)ᵀ||² / ||X·Wᵀ||² in double, Ŵ = op's dequantized weight.
double output_error(const Tensor& w, const Linear& op, const awq::ActivationStats& st) {
  const Tensor wq = op.dequantized_weight();
  const int64_t N = w.dim(0), K = w.dim(1);
  double num = 0, den = 0;
  for (int64_t r = 0; r < st.sample_rows; ++r)
    for (int64_t n = 0; n < N; ++n) {
      double a = 0, b = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double x = st.samples[size_t(r * K + k)];
        a += x * w.data<float>()[n * K + k];
        b += x * wq.data<float>()[n * K + k];
      }
      num += (a - b) * (a - b);
      den += a * a;
    }
  return num / den;
}

/// awq (calibrated on `calib`) and the round-to-nearest INT4 it improves on (same groups, zero points).
std::pair<QuantizeOptions, QuantizeOptions> awq_and_baseline(const std::vector<int32_t>& calib) {
  QuantizeOptions rtn;
  rtn.spec = parse_quant_mode("int4-g128-asym");
  QuantizeOptions awq = rtn;
  awq.spec = parse_quant_mode("awq");
  awq.calibration.tokens = calib;
  return {awq, rtn};
}

}  // namespace

TEST(AwqMode, NamesThresholdAndBytes) {
  const QuantSpec s = parse_quant_mode("awq");
  EXPECT_TRUE(s.awq);
  EXPECT_EQ(s.format, PrecisionFormat::INT4);
  EXPECT_EQ(s.block_size, 128);
  EXPECT_FALSE(s.symmetric);  // AWQ's default: zero points
  EXPECT_EQ(s.name(), "awq-g128");
  EXPECT_EQ(parse_quant_mode("awq-g64-sym").name(), "awq-g64-sym");
  EXPECT_EQ(parse_quant_mode(s.name()), s);
  EXPECT_DOUBLE_EQ(max_ppl_increase_pct(s), 3.0);  // the specification's AWQ bar
  // The int4 group layout plus the F32 [K] input scales.
  QuantSpec base = s;
  base.awq = false;
  EXPECT_EQ(quantized_weight_bytes(s, 64, 256), quantized_weight_bytes(base, 64, 256) + 4 * 256);
  EXPECT_THROW(parse_quant_mode("awq-b64-nodq"), InvalidArgument);
  QuantSpec bad = parse_quant_mode("nf4");
  bad.awq = true;
  EXPECT_THROW(validate_quant_spec(bad), InvalidArgument);
  // Plain round-to-nearest cannot make an AWQ weight: it needs calibration.
  EXPECT_THROW(quantize_weight(random_matrix(4, 128, 1), s), InvalidArgument);
}

TEST(AwqLinear, ForwardMatchesDoublePrecisionAndRoundTrips) {
  const int64_t N = 24, K = 200;  // K not a multiple of the group
  const Tensor w = random_matrix(N, K, 2);
  Tensor s = Tensor::empty(DType::F32, {K});
  for (int64_t k = 0; k < K; ++k) s.mutable_data<float>()[k] = 0.25f + 0.01f * float(k % 97);
  Tensor scaled = w.clone();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) scaled.mutable_data<float>()[n * K + k] *= s.data<float>()[k];
  Tensor bias = random_matrix(1, N, 3).reshaped({N});
  const QuantSpec spec = parse_quant_mode("awq-g64");
  auto op = make_awq_linear(quantize_weight(scaled, awq_base_spec(spec)), bias, s);
  EXPECT_EQ(op->format(), "awq-g64");
  ASSERT_NE(quantized_linear_spec(*op), nullptr);
  EXPECT_TRUE(quantized_linear_spec(*op)->awq);

  // y = Ŵ·x + b with Ŵ = dequantized_weight() (= Q(W·diag(s))·diag(1/s)), in double.
  const int64_t M = 3;
  const Tensor x = random_matrix(M, K, 4, 1.0f);
  std::vector<float> y(size_t(M * N));
  op->forward(x.data<float>(), M, y.data(), {});
  const Tensor wq = op->dequantized_weight();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double ref = bias.data<float>()[n];
      for (int64_t k = 0; k < K; ++k) ref += double(x.data<float>()[m * K + k]) * wq.data<float>()[n * K + k];
      EXPECT_NEAR(y[size_t(m * N + n)], ref, 1e-4 * (1 + std::fabs(ref)));
    }

  // Export -> load: bit-identical outputs; bad scales are FormatErrors naming the tensor.
  std::map<std::string, Tensor> parts;
  op->export_tensors("layer", parts);
  ASSERT_TRUE(parts.count("layer.awq_scales"));
  auto get = [&](const std::string& n) { return parts.count(n) ? parts.at(n) : Tensor(); };
  auto back = load_quantized_linear(get, "layer", spec, N, K);
  std::vector<float> y2(size_t(M * N));
  back->forward(x.data<float>(), M, y2.data(), {});
  EXPECT_EQ(y, y2);
  EXPECT_EQ(back->weight_bytes(), op->weight_bytes());

  Tensor zero = s.clone();
  zero.mutable_data<float>()[7] = 0.0f;
  parts["layer.awq_scales"] = zero;
  try {
    load_quantized_linear(get, "layer", spec, N, K);
    FAIL() << "a zero scale was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("layer.awq_scales"), std::string::npos) << e.what();
  }
  parts.erase("layer.awq_scales");
  EXPECT_THROW(load_quantized_linear(get, "layer", spec, N, K), FormatError);
}

TEST(AwqSearch, BeatsRoundToNearestWithSalientChannels) {
  const int64_t N = 48, K = 256, S = 64;
  const Tensor w = random_matrix(N, K, 5);
  const awq::ActivationStats st = outlier_stats(S, K, 6);
  const QuantSpec spec = parse_quant_mode("awq-g128");
  const awq::ScaleSearch r = awq::search_scales(w, Tensor(), st, spec, 20);
  // α = 0 is plain round-to-nearest of int4-g128-asym: recompute that error independently.
  QuantSpec rtn = spec;
  rtn.awq = false;
  const double rtn_err = output_error(w, *quantize_linear(w, Tensor(), rtn), st);
  EXPECT_NEAR(r.rtn_error, rtn_err, 1e-3 * rtn_err);
  // The chosen op's error, recomputed in double, is the reported one, and
  // protecting the salient channels cuts it well below round-to-nearest.
  EXPECT_NEAR(output_error(w, *r.op, st), r.error, 1e-3 * r.error);
  EXPECT_GT(r.alpha, 0.0f);
  EXPECT_LT(r.error, 0.7 * r.rtn_error) << "alpha " << r.alpha;
}

// AutoAWQ's duo scaling (s_k = mean|x_k|^α / w_k^(1−α)) is searched too. With
// every input channel of the same mean |x| the paper's s is 1 for every α (plain
// round-to-nearest), so a gain can only come from the weight side: here 7 of
// every 8 columns are 20x smaller than the rest, and round-to-nearest with the
// group's absmax set by the large ones wipes them out.
TEST(AwqSearch, DuoScalingEvensOutColumnMagnitudes) {
  const int64_t N = 48, K = 256, S = 64;
  Tensor w = random_matrix(N, K, 21, 1.0f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      if (k % 8 != 0) w.mutable_data<float>()[n * K + k] *= 0.05f;
  awq::ActivationStats st = outlier_stats(S, K, 22);
  st.sum_abs.assign(size_t(K), 0.8 * double(S));  // the same mean |x| for every channel
  const QuantSpec spec = parse_quant_mode("awq-g128");
  const awq::ScaleSearch r = awq::search_scales(w, Tensor(), st, spec, 20);
  EXPECT_TRUE(r.duo) << "alpha " << r.alpha;
  EXPECT_NEAR(output_error(w, *r.op, st), r.error, 1e-3 * r.error);
  EXPECT_LT(r.error, 0.5 * r.rtn_error) << "alpha " << r.alpha << " error " << r.error << " rtn " << r.rtn_error;
}

// Linears that read one input get one s (AWQ's reference code scales q/k/v
// and gate/up together): every member holds the group's scales, each op is
// its rows of the group's result, and the group's reported error is that of
// all members' outputs together; a group of one is search_scales.
TEST(AwqSearch, GroupSharesOneScaleVector) {
  const int64_t K = 256, S = 64;
  const Tensor w[] = {random_matrix(32, K, 11), random_matrix(16, K, 12), random_matrix(48, K, 13)};
  const Tensor b1 = random_matrix(1, 16, 14).reshaped({16});
  const Tensor b[] = {Tensor(), b1, Tensor()};
  const awq::ActivationStats st = outlier_stats(S, K, 15);
  const QuantSpec spec = parse_quant_mode("awq-g128");
  const std::vector<awq::ScaleSearch> r = awq::search_group_scales(w, b, st, spec, 10);
  ASSERT_EQ(r.size(), 3u);
  const auto& s0 = dynamic_cast<const AwqLinear&>(*r[0].op).scales();
  double num = 0, den = 0;
  for (size_t i = 0; i < 3; ++i) {
    const auto& op = dynamic_cast<const AwqLinear&>(*r[i].op);
    EXPECT_EQ(op.out_features(), w[i].dim(0));
    EXPECT_EQ(op.bias().defined(), b[i].defined());
    for (int64_t k = 0; k < K; ++k) ASSERT_EQ(op.scales().data<float>()[k], s0.data<float>()[k]) << i << " " << k;
    EXPECT_EQ(r[i].alpha, r[0].alpha);
    EXPECT_EQ(r[i].error, r[0].error);
    const double e = output_error(w[i], op, st);
    // Recombine the group's relative error from the members' (weighted by their output energy).
    double energy = 0;
    for (int64_t row = 0; row < S; ++row)
      for (int64_t n = 0; n < w[i].dim(0); ++n) {
        double a = 0;
        for (int64_t k = 0; k < K; ++k) a += double(st.samples[size_t(row * K + k)]) * w[i].data<float>()[n * K + k];
        energy += a * a;
      }
    num += e * energy;
    den += energy;
  }
  EXPECT_NEAR(num / den, r[0].error, 1e-3 * r[0].error);
  EXPECT_GT(r[0].alpha, 0.0f);
  EXPECT_LT(r[0].error, r[0].rtn_error);
  // A group of one is the single-layer search, bit for bit.
  const awq::ScaleSearch one = awq::search_scales(w[1], b1, st, spec, 10);
  const Tensor wa = one.op->dequantized_weight();
  const Tensor wb = awq::search_group_scales(std::span(w + 1, 1), std::span(b + 1, 1), st, spec, 10)[0].op->dequantized_weight();
  ASSERT_EQ(wa.numel(), wb.numel());
  for (int64_t i = 0; i < wa.numel(); ++i) ASSERT_EQ(wa.data<float>()[i], wb.data<float>()[i]);
  // Members of different K are refused.
  const Tensor bad[] = {random_matrix(8, K, 16), random_matrix(8, 128, 17)};
  const Tensor nob[] = {Tensor(), Tensor()};
  EXPECT_THROW(awq::search_group_scales(bad, nob, st, spec, 10), InvalidArgument);
}

// quantize_model gives each fusion group of a Llama (q/k/v, gate/up) one s,
// and the other layers (o, down) their own.
TEST(AwqModel, LlamaGroupsShareScales) {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.vocab_size = 300;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.max_positions = 64;
  c.tie_word_embeddings = false;
  c.activation = "silu";
  auto m = Model::random(c, 31);
  const auto groups = m->fusion_groups();
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0], (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                                                 "model.layers.0.self_attn.v_proj"}));
  QuantizeOptions o;
  o.spec = parse_quant_mode("awq");
  for (int i = 0; i < 400; ++i) o.calibration.tokens.push_back(int32_t((i * 37 + 11) % 300));
  o.calibration.window = 32;
  (void)quantize_model(*m, o);
  std::map<std::string, const AwqLinear*> ops;
  for (const LinearSlot& s : m->linear_layers())
    if (const auto* a = dynamic_cast<const AwqLinear*>(s.op->get())) ops[s.name] = a;
  ASSERT_EQ(ops.size(), 14u);
  auto same = [&](const std::string& a, const std::string& b) {
    const Tensor& sa = ops.at(a)->scales();
    const Tensor& sb = ops.at(b)->scales();
    return std::equal(sa.data<float>(), sa.data<float>() + sa.numel(), sb.data<float>());
  };
  for (const auto& g : groups)
    for (const std::string& n : g) EXPECT_TRUE(same(g.front(), n)) << n;
  EXPECT_FALSE(same("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj"));
  EXPECT_FALSE(same("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.gate_proj"));
}

TEST(AwqModel, NeedsCalibrationTokens) {
  const auto dir = kq::testing::demo_model();
  auto m = Model::load(dir);
  QuantizeOptions o;
  o.spec = parse_quant_mode("awq");
  EXPECT_THROW(quantize_model(*m, o), InvalidArgument);
}

// The shipped demo model, calibrated on its own calibration text (not the
// evaluation text): AWQ beats round-to-nearest INT4 with the same groups, and
// the saved folder reloads to the same logits.
TEST(AwqModel, DemoModelBeatsRoundToNearestAndRoundTrips) {
  const auto dir = kq::testing::demo_model();
  const Tokenizer tok = Tokenizer::load(dir);
  const auto calib = tok.encode(read_all(dir / "demo-calibration.txt"));
  const auto eval = tok.encode(read_all(dir / "demo-eval.txt"));
  ASSERT_GT(calib.size(), 1000u);

  auto ref = Model::load(dir);
  const auto [awq, rtn] = awq_and_baseline(calib);
  QuantizeReport rep;
  auto q_awq = load_quantized(dir, awq, {}, &rep);
  auto q_rtn = load_quantized(dir, rtn);
  for (const LayerQuantization& l : rep.layers) {
    if (!l.quantized) continue;
    EXPECT_EQ(l.format, "awq-g128");
    EXPECT_LE(l.awq_error, l.awq_rtn_error) << l.name;
  }
  const ComparisonResult a = compare_models(*ref, *q_awq, eval);
  const ComparisonResult r = compare_models(*ref, *q_rtn, eval);
  RecordProperty("ppl_fp32", std::to_string(a.ppl_ref));
  RecordProperty("ppl_awq", std::to_string(a.ppl_cand));
  RecordProperty("ppl_int4_g128_asym", std::to_string(r.ppl_cand));
  EXPECT_LT(a.ppl_cand, r.ppl_cand);
  EXPECT_LT(a.mean_kl, r.mean_kl);

  kq::testing::TempDir tmp;
  save_quantized_model(*q_awq, awq, tmp.path / "awq");
  auto back = Model::load(tmp.path / "awq");
  const ComparisonResult same = compare_models(*q_awq, *back, eval);
  EXPECT_EQ(same.nll_ref, same.nll_cand);
  EXPECT_EQ(back->weight_bytes(), q_awq->weight_bytes());
}

// gpt2-small and llama-small: calibration on WikiText-2 valid (which the models
// saw in training, as data/README.md prescribes for calibration), quality on
// WikiText-2 test (the first KQ_QUALITY_WINDOWS windows, default 16).
class AwqShared : public ::testing::TestWithParam<const char*> {};

TEST_P(AwqShared, BeatsRoundToNearestOnWikiText) {
  const std::string model = std::string("models/") + GetParam();
  KQ_REQUIRE_SHARED(model);
  KQ_REQUIRE_SHARED("data/text/wikitext-2-valid.txt");
  KQ_REQUIRE_SHARED("data/text/wikitext-2-test.txt");
  const auto dir = kq::testing::shared_dir() / model;
  const Tokenizer tok = Tokenizer::load(dir);
  const auto calib = tok.encode(read_all(kq::testing::shared_dir() / "data/text/wikitext-2-valid.txt"));
  const auto test = tok.encode(read_all(kq::testing::shared_dir() / "data/text/wikitext-2-test.txt"));
  const char* e = std::getenv("KQ_QUALITY_WINDOWS");
  const int windows = e ? std::atoi(e) : 16;

  auto ref = Model::load(dir);
  const auto [awq, rtn] = awq_and_baseline(calib);
  auto q_awq = load_quantized(dir, awq);
  auto q_rtn = load_quantized(dir, rtn);
  const ComparisonResult a = compare_models(*ref, *q_awq, test, 0, windows);
  const ComparisonResult r = compare_models(*ref, *q_rtn, test, 0, windows);
  const double da = (a.ppl_cand / a.ppl_ref - 1) * 100, dr = (r.ppl_cand / r.ppl_ref - 1) * 100;
  RecordProperty("awq_ppl_delta_pct", std::to_string(da));
  RecordProperty("rtn_ppl_delta_pct", std::to_string(dr));
  std::printf("%s: fp32 %.4f  awq-g128 %.4f (%+.2f %%)  int4-g128-asym %.4f (%+.2f %%)\n", GetParam(), a.ppl_ref,
              a.ppl_cand, da, r.ppl_cand, dr);
  EXPECT_LT(da, dr);
  EXPECT_LT(a.mean_kl, r.mean_kl);
}

INSTANTIATE_TEST_SUITE_P(Models, AwqShared, ::testing::Values("gpt2-small", "llama-small"));
